"""The names of sagesf's Kafka topics, as topics.yaml declares them: code names a topic only here.

A deployment can write to other names (a tenant prefix, a test's own topics) through each
component's topic settings; these are the defaults those settings start from.
tests/unit/test_topics_file.py checks that every name here is declared in topics.yaml.
"""

from __future__ import annotations

__all__ = [
    "CREDIT_REPLIES",
    "CREDIT_REQUESTS",
    "CUSTOMERS",
    "INVENTORY",
    "ITEMS",
    "LINK_STATE",
    "ORDER_STATUS",
    "POSITIONS",
    "SAGE_COMMANDS",
    "SAGE_RESULTS",
    "SALESFORCE_COMMANDS",
    "SALESFORCE_RESULTS",
    "SALES_ORDERS",
    "dead_letter_topic",
]

# canonical state, compacted (latest record per key)
CUSTOMERS = "customer.v1"
ITEMS = "item.v1"
INVENTORY = "inventory.v1"
# canonical events
SALES_ORDERS = "salesorder.v1"
ORDER_STATUS = "orderstatus.v1"
# commands to a target system, and what it answered
SAGE_COMMANDS = "sage.commands.v1"
SAGE_RESULTS = "sage.results.v1"
SALESFORCE_COMMANDS = "salesforce.commands.v1"
SALESFORCE_RESULTS = "salesforce.results.v1"
# the credit check's request and reply
CREDIT_REQUESTS = "credit.requests.v1"
CREDIT_REPLIES = "credit.replies.v1"
# where sources remember how far they got, and dead-letter replay markers
POSITIONS = "positions.v1"
# what record linking suggested and decided (sagesf/link_state.py)
LINK_STATE = "link.state.v1"


def dead_letter_topic(stage: str) -> str:
    """The dead-letter topic of a pipeline stage (`dlq.<stage>.v1`)."""
    return f"dlq.{stage}.v1"
