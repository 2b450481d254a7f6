"""The error taxonomy that drives what the pipeline does with a failure.

Connectors classify; the core decides:
- `Retriable`: the same call may succeed later (timeout, 5xx, Sage unavailable). The consumer
  loop retries the batch with exponential backoff and jitter and does not commit meanwhile.
- `Backpressure`: the target refuses more work for now (Salesforce REQUEST_LIMIT_EXCEEDED, an API
  budget spent). The loop pauses its partitions for `retry_after` seconds and redelivers; it never
  drops the records.
- `Permanent`: this record can never succeed as it is (validation failure, unknown ItemCode,
  malformed event). It goes to the stage's dead-letter topic with the reason; the pipeline goes on.

Anything else that escapes a connector is a bug; the loop treats it as Permanent for the one
record (so a poison record cannot stall a partition) and counts it separately.
"""

from __future__ import annotations


class SagesfError(Exception):
    """Base of the taxonomy."""


class Retriable(SagesfError):
    """Try the same work again later."""


class Backpressure(SagesfError):
    """The target asks us to slow down; resume after `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = max(0.0, retry_after)


class Permanent(SagesfError):
    """This record will never succeed as it is; dead-letter it with the reason."""

    def __init__(self, reason: str, *, field: str | None = None, value: object = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.field = field
        self.value = value
