"""The error taxonomy that drives what the pipeline does with a failure, and why a process cannot start.

At run time connectors classify and the core decides (sagesf.source, sagesf.sink):
- `Retriable`: the same call may succeed later (timeout, 5xx, Sage unavailable). The consumer
  loop retries the batch with exponential backoff and jitter and does not commit meanwhile.
- `Backpressure`: the target refuses more work for now (Salesforce REQUEST_LIMIT_EXCEEDED, an API
  budget spent). The loop pauses its partitions for `retry_after` seconds and redelivers; it never
  drops the records.
- `Permanent`: this record can never succeed as it is (validation failure, unknown ItemCode,
  malformed event). It goes to the stage's dead-letter topic with the reason; the pipeline goes on.

Anything else that escapes a connector is a bug; the loop treats it as Permanent for the one
record (so a poison record cannot stall a partition) and counts it separately.

At start-up, `StartupError` and its family (configuration, mapping, schema, authentication,
topics file) say the process cannot run as configured: the process runner (sagesf.runner)
prints the message as one line naming the variable or file entry, and exits 2.
"""

from __future__ import annotations

from collections.abc import Iterable


class SagesfError(Exception):
    """Base of the taxonomy."""


class Retriable(SagesfError):
    """Try the same work again later (`retry_after` seconds at the earliest, when the failure knows)."""

    retry_after: float = 0.0


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


class StartupError(SagesfError):
    """The process cannot start as configured: the family of errors the process runner reports.

    `problems` are the things to fix, one line each, each naming a variable or a file entry;
    `line()` is what the runner prints before it exits 2.
    """

    heading = ""

    def __init__(self, problems: str | Iterable[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else [str(p) for p in problems]
        body = "\n  ".join(self.problems)
        super().__init__(f"{self.heading}:\n  {body}" if self.heading else body)

    def line(self) -> str:
        """The first problem on one line, and how many more there are."""
        first = " ".join(self.problems[0].split()) if self.problems else type(self).__name__
        more = len(self.problems) - 1
        return f"{first} (and {more} more)" if more > 0 else first


class ConfigError(StartupError, ValueError):
    """A setting is missing or wrong; each problem names the environment variable to fix."""

    heading = "invalid configuration"


class MappingError(StartupError, ValueError):
    """A mapping file is invalid; each problem is `<file>:<line>: <entry>: <reason>`."""

    heading = "invalid mappings"


class SchemaRegistrationError(StartupError):
    """A canonical schema has no id under its subject: not registered, or refused as incompatible."""


class AuthenticationError(StartupError):
    """A system refused our credentials: fix the configuration, restarting will not help."""


class TopicsFileError(StartupError, ValueError):
    """topics.yaml is invalid; each problem is `<file>:<line>: <problem>`."""
