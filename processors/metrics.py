"""Prometheus metrics of the processors (names `sagesf_processor_*`), defined once here.

Label values are bounded: stage (orders, customers, items, results, status, inventory), outcome
(commanded, held, failed, skipped, ...), topic names and result labels; never record IDs. The
core's `sagesf_records_in_total` and `sagesf_dead_letters_total` (sagesf.metrics) are counted too,
so the shared dashboards see the processors like any other stage.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

__all__ = [
    "COMMANDS",
    "HELD_ORDERS",
    "INVENTORY_PENDING",
    "MAPPING_RELOADS",
    "ORDERS_RESENT",
    "ORDERS_UNANSWERED",
    "RECORDS",
    "RECORD_SECONDS",
    "RETRIES",
    "SHADOW_DIFFERENCES",
    "SHADOW_FAILURES",
    "SHADOW_RECORDS",
]

RECORDS = Counter(
    "sagesf_processor_records_total", "Records and timer ticks handled, by outcome", ["stage", "outcome"]
)
COMMANDS = Counter("sagesf_processor_commands_total", "Commands acknowledged by Kafka", ["stage", "topic"])
RETRIES = Counter("sagesf_processor_retries_total", "Retriable failures retried", ["stage"])
RECORD_SECONDS = Histogram(
    "sagesf_processor_record_seconds", "Time to handle one record, produce included", ["stage"]
)
HELD_ORDERS = Gauge("sagesf_processor_held_orders", "Orders waiting for their customer to exist in Sage")
INVENTORY_PENDING = Gauge(
    "sagesf_processor_inventory_pending_items", "Items with stock changes not yet flushed to Salesforce"
)
MAPPING_RELOADS = Counter(
    "sagesf_processor_mapping_reloads_total", "Mapping file reloads after an edit", ["result"]
)
ORDERS_RESENT = Counter(
    "sagesf_processor_orders_resent_total",
    "Orders commanded again because Sage's result had not come back within resend_after",
)
ORDERS_UNANSWERED = Counter(
    "sagesf_processor_orders_unanswered_total",
    "Orders given up after order_resend_limit re-sends without a Sage result (Error in Salesforce, "
    "dead-lettered for replay)",
)
# shadow mode (processors/shadow.py): a candidate mapping beside the one in use, nothing produced
SHADOW_RECORDS = Counter(
    "sagesf_processor_shadow_records_total",
    "Records mapped under the shadow (candidate) mapping too",
    ["entity", "direction"],
)
SHADOW_DIFFERENCES = Counter(
    "sagesf_processor_shadow_differences_total",
    "Records the candidate mapping would send differently (or fail, or map where the current fails)",
    ["entity", "direction"],
)
SHADOW_FAILURES = Counter(
    "sagesf_processor_shadow_failures_total",
    "Records the candidate mapping would fail (dead-letter)",
    ["entity", "direction"],
)
