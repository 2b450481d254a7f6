"""The pipeline stages: name, consumer group, input and output topics, dead-letter topic.

What it owns: one table saying, for every stage of the pipeline, which Kafka consumer group it
commits its offsets under, which topics it reads and writes, and where its dead letters go. The
operator commands (`sagesf dlq`, `sagesf replay`, `sagesf trace`) read it; connectors and
processors should take their group ids from here (or be configured to the same values) so that
`sagesf replay <stage>` resets the offsets the running stage really uses.

| stage | kind | consumer group | reads | dead letters |
|---|---|---|---|---|
| salesforce-source | source | (none: reads Salesforce) | | dlq.salesforce-source.v1 |
| sage-source | source | (none: reads Sage 100 over ODBC) | | dlq.sage-source.v1 |
| orders | processor | sagesf-processors | salesorder.v1, sage.results.v1, item.v1 | dlq.orders.v1 |
| customers | processor | sagesf-processors | customer.v1, link.state.v1 | dlq.customers.v1 |
| inventory | processor | sagesf-processors | inventory.v1 | dlq.inventory.v1 |
| status | processor | sagesf-processors | orderstatus.v1 | dlq.status.v1 |
| credit | connector | sagesf-sage-credit | credit.requests.v1 | dlq.credit.v1 |
| sage-sink | connector | sagesf-sage-sink | sage.commands.v1 | dlq.sage-sink.v1 |
| salesforce-sink | connector | sagesf-salesforce-sink | salesforce.commands.v1 | dlq.salesforce-sink.v1 |

How it works: the defaults above are code (`DEFAULT_STAGES`); any of them can be overridden per
deployment through the settings, with the usual prefix and `__` nesting, a stage's `-` written as
`_` in variable names: `SAGESF_STAGES__SAGE_SINK__GROUP_ID=acme-sage-sink`,
`SAGESF_STAGES__ORDERS__INPUT_TOPICS='["salesorder.v1","sage.results.v1"]'`, or the whole map
as JSON in `SAGESF_STAGES`. Overriding a stage that does not exist is a ConfigError (a typo would
otherwise silently reset nothing).

Limits: the faust processors are one application, so the four processor stages share one consumer
group (faust's app id); each stage's input topics say which of the group's offsets belong to it.
A topic read by two agents of the same app has one committed offset per partition, so replaying
it re-runs both agents. Sources have no consumer group: they are re-read by resetting their
position in positions.v1, not with `sagesf replay`. Output topics are descriptive (used by
`sagesf trace` to name who wrote a record); nothing enforces them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from sagesf.config import ConfigError, Settings, load_settings
from sagesf.topic_names import (
    CREDIT_REPLIES,
    CREDIT_REQUESTS,
    CUSTOMERS,
    INVENTORY,
    ITEMS,
    LINK_STATE,
    ORDER_STATUS,
    SAGE_COMMANDS,
    SAGE_RESULTS,
    SALES_ORDERS,
    SALESFORCE_COMMANDS,
    SALESFORCE_RESULTS,
    dead_letter_topic,
)

__all__ = [
    "DEFAULT_STAGES",
    "PROCESSORS_GROUP_ID",
    "Stage",
    "StageKind",
    "StageOverride",
    "StageSettings",
    "load_stages",
    "resolve_stages",
]

# faust's app id: every processor agent commits under it
PROCESSORS_GROUP_ID = "sagesf-processors"


class StageKind(StrEnum):
    SOURCE = "source"  # reads an external system, writes Kafka; no consumer group
    PROCESSOR = "processor"  # an agent of the faust app
    CONNECTOR = "connector"  # a connector's SinkLoop (sinks, the credit responder)


@dataclass(frozen=True)
class Stage:
    """One pipeline stage as the operator commands see it."""

    name: str
    kind: StageKind
    group_id: str | None
    input_topics: tuple[str, ...]
    output_topics: tuple[str, ...]
    dlq_topic: str
    description: str

    @property
    def replayable(self) -> bool:
        """True when the stage reads Kafka through a consumer group (so offsets can be reset)."""
        return self.group_id is not None and bool(self.input_topics)


def _stage(
    name: str,
    kind: StageKind,
    group_id: str | None,
    reads: tuple[str, ...],
    writes: tuple[str, ...],
    description: str,
) -> Stage:
    return Stage(name, kind, group_id, reads, writes, dead_letter_topic(name), description)


DEFAULT_STAGES: tuple[Stage, ...] = (
    _stage(
        "salesforce-source",
        StageKind.SOURCE,
        None,
        (),
        (SALES_ORDERS, CUSTOMERS, CREDIT_REQUESTS),
        "Salesforce CDC and platform events -> canonical records",
    ),
    _stage(
        "sage-source",
        StageKind.SOURCE,
        None,
        (),
        (CUSTOMERS, ITEMS, INVENTORY, ORDER_STATUS),
        "Sage 100 rows polled over ODBC -> canonical records",
    ),
    _stage(
        "orders",
        StageKind.PROCESSOR,
        PROCESSORS_GROUP_ID,
        (SALES_ORDERS, SAGE_RESULTS, ITEMS),
        (SAGE_COMMANDS, SALESFORCE_COMMANDS),
        "Closed Won orders -> Sage order commands; Sage results -> Salesforce write-backs",
    ),
    _stage(
        "customers",
        StageKind.PROCESSOR,
        PROCESSORS_GROUP_ID,
        (CUSTOMERS, LINK_STATE),
        (SAGE_COMMANDS, SALESFORCE_COMMANDS),
        "Account <-> AR_Customer sync; record linking's decisions (`sagesf link`)",
    ),
    _stage(
        "inventory",
        StageKind.PROCESSOR,
        PROCESSORS_GROUP_ID,
        (INVENTORY,),
        (SALESFORCE_COMMANDS,),
        "Sage stock levels -> Product2 stock fields",
    ),
    _stage(
        "status",
        StageKind.PROCESSOR,
        PROCESSORS_GROUP_ID,
        (ORDER_STATUS,),
        (SALESFORCE_COMMANDS,),
        "Sage order status changes -> Opportunity/Order status fields",
    ),
    _stage(
        "credit",
        StageKind.CONNECTOR,
        "sagesf-sage-credit",
        (CREDIT_REQUESTS,),
        (CREDIT_REPLIES,),
        "Credit-limit checks answered by the Sage 100 connector",
    ),
    _stage(
        "sage-sink",
        StageKind.CONNECTOR,
        "sagesf-sage-sink",
        (SAGE_COMMANDS,),
        (SAGE_RESULTS,),
        "Commands written to Sage 100 (BOI or ODBC/SQL)",
    ),
    _stage(
        "salesforce-sink",
        StageKind.CONNECTOR,
        "sagesf-salesforce-sink",
        (SALESFORCE_COMMANDS,),
        (SALESFORCE_RESULTS,),
        "Commands written to Salesforce (sObject Collections, Bulk API 2.0)",
    ),
)


class StageOverride(BaseModel):
    """Deployment-specific values for one stage; fields left out keep the default."""

    model_config = ConfigDict(extra="forbid")

    group_id: str | None = None
    input_topics: list[str] | None = None
    output_topics: list[str] | None = None
    dlq_topic: str | None = None


class StageSettings(Settings):
    """The shared settings plus `stages` (SAGESF_STAGES__<STAGE>__<FIELD>)."""

    stages: dict[str, StageOverride] = Field(default_factory=dict)


def resolve_stages(overrides: dict[str, StageOverride]) -> dict[str, Stage]:
    """The default stages with `overrides` applied, by name, in pipeline order."""
    stages = {stage.name: stage for stage in DEFAULT_STAGES}
    for raw_name, override in overrides.items():
        name = raw_name.strip().lower().replace("_", "-")  # env var names cannot hold '-'
        stage = stages.get(name)
        if stage is None:
            known = ", ".join(stages)
            raise ConfigError(f"SAGESF_STAGES: unknown stage {raw_name!r} (known: {known})")
        stages[name] = replace(
            stage,
            group_id=override.group_id if override.group_id is not None else stage.group_id,
            input_topics=tuple(override.input_topics)
            if override.input_topics is not None
            else stage.input_topics,
            output_topics=tuple(override.output_topics)
            if override.output_topics is not None
            else stage.output_topics,
            dlq_topic=override.dlq_topic or stage.dlq_topic,
        )
    return stages


def load_stages(settings: StageSettings | None = None) -> dict[str, Stage]:
    """Every stage by name, with the overrides from the environment applied."""
    loaded: StageSettings = settings if settings is not None else load_settings(StageSettings)
    return resolve_stages(loaded.stages)
