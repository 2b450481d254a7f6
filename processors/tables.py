"""The processors' tables: faust global tables that every worker holds whole, without echo.

What it owns: `SharedTable`, the faust `GlobalTable` class the app uses (`App(GlobalTable=...)`),
and `shared_table()`, which declares one with the settings every processors table needs.

Why global tables: the cross-references are read by records of other keys than the ones that
write them (an order, keyed by Opportunity ID, reads the customer cross-reference written by
customer.v1 records keyed by ARDivisionNo-CustomerNo), and the input topics are written by other
producers, whose partitioners need not agree with faust's; so no table can be co-partitioned with
all its readers. A global table gives each worker every entry: more workers add failover, not
write throughput (the whole state must fit one worker's memory: ~1 KB per held or in-flight
order, ~100 bytes per customer, item and stock level).

How it works: each table has one changelog partition and writes pick it by key
(`use_partitioner`), so writes are allowed from timers and recovery replays each key's writes in
order. faust then also follows that partition as a standby on the writing worker, which re-applies
the worker's own writes a moment later, briefly reverting a key to an older value after a quick
second write (measured: seconds behind under a burst). `SharedTable` drops those echoes: it
counts its own writes in flight per key and remembers the offset of its latest acknowledged one,
and skips changelog records of that key up to that offset; records written by other workers are
applied. After a restart nothing is skipped: the table is rebuilt from the changelog. Listeners
(`add_listener`) hear every key that changed, by this worker or another.

Limits: two workers writing the same key at the same moment may each keep their own value until
the next write of that key (last writer wins per worker); the processors' writes are idempotent
per key, so this only delays convergence.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import faust

__all__ = ["SharedTable", "shared_table"]

Listener = Callable[[Any], None]


class SharedTable(faust.GlobalTable):  # faust is untyped: Any
    """A global table that ignores the changelog echo of its own writes (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight: dict[Any, int] = {}
        self._written: dict[Any, int] = {}
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _notify(self, key: Any) -> None:
        for listener in self._listeners:
            listener(key)

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        fut.add_done_callback(functools.partial(self._write_done, key))
        self._notify(key)
        return fut

    def _write_done(self, key: Any, fut: Any) -> None:
        left = self._in_flight.get(key, 1) - 1
        if left > 0:
            self._in_flight[key] = left
        else:
            self._in_flight.pop(key, None)
        if fut.cancelled() or fut.exception() is not None:
            return
        offset = getattr(fut.result(), "offset", None)
        if isinstance(offset, int) and offset > self._written.get(key, -1):
            self._written[key] = offset

    def _is_echo(self, event: Any) -> bool:
        key = self._to_key(event.key)
        return key in self._in_flight or event.message.offset <= self._written.get(key, -1)

    def apply_changelog_batch(self, batch: Iterable[Any]) -> None:
        fresh = [event for event in batch if not self._is_echo(event)]
        if fresh:
            super().apply_changelog_batch(fresh)
            for event in fresh:
                self._notify(self._to_key(event.key))


def shared_table(app: Any, name: str, help: str) -> Any:
    """Declare a SharedTable on `app` (one partition, keys str, values JSON)."""
    return app.GlobalTable(
        name,
        key_type=str,
        partitions=1,
        use_partitioner=True,
        recovery_buffer_size=1,
        help=help,
    )
