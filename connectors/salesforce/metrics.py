"""Prometheus metrics of the Salesforce connector (`sagesf_salesforce_*`), served by sagesf.metrics.

What it owns: the metrics the client and the sink export; the CDC source adds its own (events per
channel, echoes dropped, replay position age) next to these. Label values are bounded: API
resource families, HTTP status codes, auth flows, sObject names from the commands, Salesforce's
error codes; never record IDs.

- API calls: `sagesf_salesforce_api_calls_total{resource, status}` counts every REST and Bulk
  request the process made (logins not included; they are `sagesf_salesforce_logins_total`).
- Records per call: `sagesf_salesforce_records_per_call{api}` (collections, bulk).
- API usage versus limit: `sagesf_salesforce_api_usage_used` / `_limit` from the last
  `Sforce-Limit-Info` header, `sagesf_salesforce_api_budget` = the share the integration may use.
- Backpressure: `sagesf_salesforce_backpressure_total{reason}` and
  `sagesf_salesforce_backpressure_seconds_total{reason}` (reason: rate_limit, budget); the
  consumer loop's `sagesf_backpressure_seconds_total{stage}` is the time actually paused.
- Dead letters: `sagesf_salesforce_dead_letters_total{sobject, status_code}` for records
  Salesforce (or the sink) refused for good.
- Token refreshes after a 401: `sagesf_salesforce_token_refreshes_total{flow}`.
- Old commands: `sagesf_salesforce_stale_checked_total{sobject}` compared with their record,
  `sagesf_salesforce_stale_commands_total{sobject, compared_with}` not written (stale_guard.py).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

API_CALLS = Counter(
    "sagesf_salesforce_api_calls_total",
    "REST and Bulk API requests made to Salesforce",
    ["resource", "status"],
)
LOGINS = Counter("sagesf_salesforce_logins_total", "OAuth token requests", ["flow", "outcome"])
TOKEN_REFRESHES = Counter(
    "sagesf_salesforce_token_refreshes_total",
    "Logins re-run because Salesforce answered 401 INVALID_SESSION_ID",
    ["flow"],
)
RECORDS_PER_CALL = Histogram(
    "sagesf_salesforce_records_per_call",
    "Records written per API call (Bulk: per job)",
    ["api"],
    buckets=(1, 5, 10, 25, 50, 100, 150, 200, 500, 1000, 2000, 5000, 10000, 50000),
)
RECORDS_WRITTEN = Counter(
    "sagesf_salesforce_records_written_total", "Records Salesforce accepted", ["api", "sobject"]
)
API_USAGE_USED = Gauge(
    "sagesf_salesforce_api_usage_used", "Org API requests used in the rolling 24 h (Sforce-Limit-Info)"
)
API_USAGE_LIMIT = Gauge(
    "sagesf_salesforce_api_usage_limit", "Org daily API request limit (Sforce-Limit-Info)"
)
API_BUDGET = Gauge(
    "sagesf_salesforce_api_budget", "Org API usage at which the integration stops calling (share x limit)"
)
BACKPRESSURE = Counter(
    "sagesf_salesforce_backpressure_total", "Times the sink paused for Salesforce's limits", ["reason"]
)
BACKPRESSURE_SECONDS = Counter(
    "sagesf_salesforce_backpressure_seconds_total",
    "Pause time the sink asked for, by reason",
    ["reason"],
)
DEAD_LETTERS = Counter(
    "sagesf_salesforce_dead_letters_total",
    "Commands dead-lettered because Salesforce (or the sink) refused them for good",
    ["sobject", "status_code"],
)
COALESCED = Counter(
    "sagesf_salesforce_commands_coalesced_total",
    "Commands merged into another command's write for the same record",
)
STALE_CHECKED = Counter(
    "sagesf_salesforce_stale_checked_total",
    "Commands compared with their record before writing (old or replayed ones of guarded objects)",
    ["sobject"],
)
STALE_COMMANDS = Counter(
    "sagesf_salesforce_stale_commands_total",
    "Commands not written because the record held a newer change, by the field that was newer",
    ["sobject", "compared_with"],
)
