"""Prometheus metrics of the Salesforce CDC source (`sagesf_salesforce_*`), beside the client's.

What it owns: the source's metrics, served with /healthz by sagesf.metrics.MetricsServer. Label
values are bounded: channels and object names come from the configuration and the mapping,
change types and outcomes from fixed lists; never record IDs.

- `sagesf_salesforce_events_received_total{channel, change_type}`: every delivered event
  (platform events count with change_type `EVENT`);
- `sagesf_salesforce_echoes_dropped_total{channel}`: change events our own writes caused
  (changeOrigin `;client=<our id>` and commitUser the integration user), dropped;
- `sagesf_salesforce_events_skipped_total{channel, reason}`: events not turned into records:
  `before_start` (committed before the stream's starting time), `unmapped` (an object without
  mapping on /data/ChangeEvents);
- `sagesf_salesforce_source_records_total{entity, outcome}`: records read and their fate:
  produced, not_in_state (e.g. an Opportunity not Closed Won), deleted_since (deleted before the
  read: its DELETE event produces it), not_visible (the event names it, neither query nor
  queryAll returns it: the integration user cannot see it, or it was hard-deleted; dead-lettered),
  dead_letter (cannot be mapped);
- `sagesf_salesforce_read_refusals_total{entity, error_code}`: reads Salesforce refused for
  permission or a missing field (INSUFFICIENT_ACCESS, INVALID_FIELD, INVALID_TYPE, OTHER): the
  source waits and retries, the alert SagesfSalesforceReadRefused says so;
- `sagesf_salesforce_gap_events_total{entity, change_type}`: GAP_* events (records re-read);
- `sagesf_salesforce_catchup_reads_total{channel, reason}` and
  `sagesf_salesforce_catchup_records_total{entity}`: reads by modification time after a stored
  replay ID fell out of retention (`replay_id_invalid`) or a GAP_OVERFLOW (`gap_overflow`);
- `sagesf_salesforce_soql_queries_total{entity, purpose}`: the source's SOQL calls (read,
  deleted, parents, catchup, check, and `access` on UserRecordAccess for credit requests);
- `sagesf_salesforce_credit_requests_not_visible_total`: credit requests whose requester may not
  read the Account they name, published without the Account (answered CUSTOMER_NOT_FOUND);
- `sagesf_salesforce_replay_position_age_seconds{channel}`: now minus the commit time of the
  last event whose records Kafka acknowledged and whose replay ID is stored (refreshed every
  second while the source runs);
- `sagesf_salesforce_source_batch_seconds`: one batch from first event to stored position.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_RECEIVED = Counter(
    "sagesf_salesforce_events_received_total",
    "Streaming events delivered to the CDC source",
    ["channel", "change_type"],
)
ECHOES_DROPPED = Counter(
    "sagesf_salesforce_echoes_dropped_total",
    "Change events caused by the integration's own writes (changeOrigin client), dropped",
    ["channel"],
)
EVENTS_SKIPPED = Counter(
    "sagesf_salesforce_events_skipped_total",
    "Events the source did not turn into records, by reason",
    ["channel", "reason"],
)
SOURCE_RECORDS = Counter(
    "sagesf_salesforce_source_records_total",
    "Salesforce records the CDC source handled, by outcome",
    ["entity", "outcome"],
)
READ_REFUSALS = Counter(
    "sagesf_salesforce_read_refusals_total",
    "Reads Salesforce refused for permission or a missing field (retried, never dead-lettered)",
    ["entity", "error_code"],
)
GAP_EVENTS = Counter(
    "sagesf_salesforce_gap_events_total",
    "GAP_* change events (their records are re-read)",
    ["entity", "change_type"],
)
CATCHUP_READS = Counter(
    "sagesf_salesforce_catchup_reads_total",
    "Reads of records modified since a time, instead of replaying events",
    ["channel", "reason"],
)
CATCHUP_RECORDS = Counter(
    "sagesf_salesforce_catchup_records_total",
    "Records found by catch-up reads",
    ["entity"],
)
SOQL_QUERIES = Counter(
    "sagesf_salesforce_soql_queries_total",
    "SOQL queries the CDC source ran",
    ["entity", "purpose"],
)
CREDIT_REQUESTS_NOT_VISIBLE = Counter(
    "sagesf_salesforce_credit_requests_not_visible_total",
    "Credit requests naming an Account their requester may not read, published without it",
)
REPLAY_POSITION_AGE = Gauge(
    "sagesf_salesforce_replay_position_age_seconds",
    "Seconds since the commit of the last event whose replay ID is stored",
    ["channel"],
)
BATCH_SECONDS = Histogram(
    "sagesf_salesforce_source_batch_seconds",
    "One batch of events: read, map, produce, acknowledge, store the replay IDs",
)
