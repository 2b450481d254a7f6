"""Dead-letter topics: a record that can never succeed goes here with the reason, unchanged.

The dead-letter record keeps the original key, value and headers byte for byte and adds Kafka
Connect's error headers (`__connect.errors.topic`, `.partition`, `.offset`, `.connector.name`,
`.stage`, `.class.name`, `.exception.class.name`, `.exception.message`,
`.exception.stacktrace`), so tools that read Connect's dead-letter queues read ours. sagesf adds
`__sagesf.errors.field` and `__sagesf.errors.value` when the error names the offending field.

`DeadLetterWriter.send` returns only after Kafka acknowledged the dead letter: the caller commits
the original offset after that, so a crash in between redelivers the record rather than losing it.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from sagesf import topic_names
from sagesf.errors import Permanent
from sagesf.metrics import DEAD_LETTERS
from sagesf.producer import ConfirmedProducer, Headers

HEADER_PREFIX = "__connect.errors."
# a dead letter's value is cut here, below Kafka's default 1 MB record limit with room for headers
MAX_VALUE_BYTES = 512 * 1024
TRUNCATED_HEADER = "__sagesf.errors.value.truncated"  # the original's size in bytes

# Kafka Connect's stage names, for the `stage` header
STAGE_KEY_CONVERTER = "KEY_CONVERTER"
STAGE_VALUE_CONVERTER = "VALUE_CONVERTER"
STAGE_TRANSFORMATION = "TRANSFORMATION"
STAGE_TASK_PUT = "TASK_PUT"
STAGE_TASK_POLL = "TASK_POLL"


@dataclass(frozen=True)
class FailedRecord:
    """Where a failed record came from, and its original bytes."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None = None


def error_headers(
    failed: FailedRecord, error: BaseException, *, pipeline: str, step: str, where: str
) -> list[tuple[str, bytes]]:
    """Connect-style error headers describing `error` for `failed`."""
    trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))[-8000:]
    values = {
        "topic": failed.topic,
        "partition": str(failed.partition),
        "offset": str(failed.offset),
        "connector.name": pipeline,
        "task.id": "0",
        "stage": step,
        "class.name": where,
        "exception.class.name": f"{type(error).__module__}.{type(error).__qualname__}",
        "exception.message": str(error),
        "exception.stacktrace": trace,
    }
    headers = [(HEADER_PREFIX + k, v.encode()) for k, v in values.items()]
    if isinstance(error, Permanent) and error.field is not None:
        headers.append(("__sagesf.errors.field", error.field.encode()))
        headers.append(("__sagesf.errors.value", repr(error.value)[:500].encode()))
    return headers


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


class DeadLetterWriter:
    """Writes failed records of one pipeline stage to `dlq.<stage>.v1`."""

    def __init__(self, producer: ConfirmedProducer, stage: str, topic: str | None = None) -> None:
        self.producer = producer
        self.stage = stage
        self.topic = topic or topic_names.dead_letter_topic(stage)

    def send(self, items: list[tuple[FailedRecord, BaseException, str, str]]) -> None:
        """Dead-letter (record, error, step, where) items and wait until Kafka has them all."""
        if not items:
            return
        for failed, error, step, where in items:
            original = [
                (k, _as_bytes(v)) for k, v in (failed.headers or []) if not k.startswith(HEADER_PREFIX)
            ]
            headers = original + error_headers(failed, error, pipeline=self.stage, step=step, where=where)
            value = failed.value
            if value is not None and len(value) > MAX_VALUE_BYTES:
                # the original would not fit in Kafka either: keep its start and say so
                headers.append((TRUNCATED_HEADER, str(len(value)).encode()))
                value = value[:MAX_VALUE_BYTES]
            self.producer.send(self.topic, value, failed.key, headers)
        self.producer.confirm()
        for _, error, _, _ in items:
            DEAD_LETTERS.labels(self.stage, type(error).__name__).inc()
