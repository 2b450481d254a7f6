"""Reconciliation: the contract of the snapshot and judge hooks, pairing by link, and the sweep.

`sagesf reconcile` (sagesf/cli/reconcile.py) and the `reconciler` component
(sagesf/reconciler.py) run a `Reconciler`: each source component's snapshot hook reads what its
system holds now, in canonical form (sagesf.runner `Component.snapshot`); the core pairs the two
systems' entities by link; the processors' judge (`Component.judge`) compares each pair through
the mappings and says what drifted and which command would converge it; the core counts, shows,
exports and, when asked, publishes those commands. The core imports no connector.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, Protocol

from prometheus_client import Counter as MetricCounter
from prometheus_client import Gauge

from sagesf.publisher import CanonicalRecord

__all__ = [
    "SAGE",
    "SALESFORCE",
    "Drift",
    "DriftJudge",
    "DriftKind",
    "Entity",
    "Reconciler",
    "Repairs",
    "Snapshot",
    "SnapshotReader",
    "SnapshotRequest",
    "Sweep",
    "pairs",
]

log = logging.getLogger(__name__)

SALESFORCE = "salesforce"
SAGE = "sage"

DRIFT = Gauge("sagesf_reconcile_drift", "Drift the last sweep found, by kind and entity", ["kind", "entity"])
LAST_SWEEP = Gauge("sagesf_reconcile_last_sweep_timestamp_seconds", "When the last sweep ended")
SWEEP_SECONDS = Gauge("sagesf_reconcile_sweep_duration_seconds", "How long the last sweep took")
SWEEP_API_CALLS = Gauge(
    "sagesf_reconcile_api_calls", "API calls the last sweep's snapshot of a system used", ["system"]
)
SWEEPS = MetricCounter(
    "sagesf_reconcile_sweeps_total", "Sweeps run, by outcome (clean, drift, failed)", ["outcome"]
)
REPAIRS = MetricCounter(
    "sagesf_reconcile_repairs_total", "Repair commands published, by drift kind", ["kind"]
)


class DriftKind(StrEnum):
    """What is wrong between the two systems."""

    FIELD = "field_mismatch"  # a linked pair differs in a field the mappings carry
    MISSING_IN_SAGE = "missing_in_sage"  # linked in Salesforce, no such Sage row (deleted, never created)
    MISSING_IN_SALESFORCE = "missing_in_salesforce"  # linked in Sage, no such Salesforce record
    ORDER_NOT_IN_SAGE = "order_not_in_sage"  # a won opportunity / activated order Sage has no order for
    ORDER_NUMBER_MISSING = "order_number_missing"  # Sage has the order; Salesforce lacks its number
    ORDER_STATUS = "order_status_mismatch"  # Salesforce shows another status than Sage's


@dataclass(frozen=True)
class Entity:
    """One record of a system as a snapshot reads it.

    `kind` is what it is (customer, item, order), `key` its key in its own system, `record` its
    canonical form (the fields its live source publishes) plus the system's own fields the judge
    asked for, `links` the identifiers it shares with its counterpart on the other side
    (`sage:01-ABF`, `salesforce:001...`, `item:HRDW-1000`), `changed_at` when it last changed in
    its system, and `read_at` when its snapshot began reading (the record held these values then
    or later).
    """

    kind: str
    key: str
    record: Mapping[str, Any]
    links: tuple[str, ...] = ()
    changed_at: datetime | None = None
    read_at: datetime | None = None


@dataclass
class Snapshot:
    system: str
    entities: list[Entity] = field(default_factory=list)
    api_calls: int = 0  # requests the read cost (Salesforce API calls, Sage ODBC queries)


@dataclass(frozen=True)
class SnapshotRequest:
    """What a snapshot reads beyond the canonical records: `wanted`, per object or table, the
    system's own fields the judge compares (Account.Phone, Opportunity.Sage_Order_No__c); and
    `orders_since`, the first day of the orders to compare (None: all of them)."""

    wanted: Mapping[str, Sequence[str]] = field(default_factory=dict)
    orders_since: date | None = None


class SnapshotReader(Protocol):
    """What a source component's snapshot hook builds: `read` reads every entity now."""

    system: str

    def read(self, request: SnapshotRequest) -> Snapshot: ...


@dataclass(frozen=True)
class Drift:
    """One difference; `repair` is the command that converges it, None when only a person can."""

    kind: DriftKind
    entity: str
    key: str
    field: str | None = None
    salesforce: Any = None
    sage: Any = None
    repair: CanonicalRecord | None = None

    def shown(self) -> str:
        what = f"{self.entity} {self.key}" + (f" {self.field}" if self.field else "")
        if self.kind is DriftKind.MISSING_IN_SAGE:
            return f"{what} (Salesforce {self.salesforce})"
        if self.kind is DriftKind.MISSING_IN_SALESFORCE:
            return f"{what} (its Salesforce ID {self.sage})"
        if self.kind is DriftKind.ORDER_NOT_IN_SAGE:
            return f"{what} ({self.salesforce})"
        return f"{what}: Salesforce {self.salesforce!r}, Sage {self.sage!r}"


class DriftJudge(Protocol):
    """What the processors' judge hook builds: the mappings' view of a pair."""

    def wanted(self, system: str) -> dict[str, list[str]]: ...

    def judge(self, kind: str, salesforce: Entity | None, sage: Entity | None) -> list[Drift]: ...


def pairs(salesforce: Snapshot, sage: Snapshot) -> Iterator[tuple[str, Entity | None, Entity | None]]:
    """Every entity of both systems, with its counterpart when one shares a link: (kind, sf, sage).

    A Salesforce entity pairs with the first Sage entity of its kind sharing one of its links, in
    the order of its links (the external ID before the record ID), and each Sage entity pairs once.
    """
    index: dict[tuple[str, str], Entity] = {}
    for entity in sage.entities:
        for link in entity.links:
            index.setdefault((entity.kind, link), entity)
    paired: set[int] = set()
    for entity in salesforce.entities:
        found = next(
            (
                other
                for link in entity.links
                if (other := index.get((entity.kind, link))) is not None and id(other) not in paired
            ),
            None,
        )
        if found is not None:
            paired.add(id(found))
        yield entity.kind, entity, found
    for entity in sage.entities:
        if id(entity) not in paired:
            yield entity.kind, None, entity


@dataclass
class Sweep:
    """What one sweep found."""

    drifts: list[Drift]
    api_calls: dict[str, int]
    compared: Counter[str]  # pairs and singles looked at, by kind
    started: datetime
    seconds: float

    def counts(self) -> Counter[DriftKind]:
        return Counter(d.kind for d in self.drifts)

    def examples(self, kind: DriftKind, limit: int) -> list[Drift]:
        return [d for d in self.drifts if d.kind is kind][:limit]

    def as_json(self, examples: int) -> dict[str, Any]:
        return {
            "started": self.started.isoformat(),
            "seconds": round(self.seconds, 3),
            "api_calls": self.api_calls,
            "compared": dict(self.compared),
            "drift": sum(self.counts().values()),
            "by_kind": {
                kind.value: {
                    "count": count,
                    "repairable": sum(1 for d in self.drifts if d.kind is kind and d.repair is not None),
                    "examples": [_example(d) for d in self.examples(kind, examples)],
                }
                for kind, count in sorted(self.counts().items())
            },
        }


def _example(drift: Drift) -> dict[str, Any]:
    return {
        "entity": drift.entity,
        "key": drift.key,
        "field": drift.field,
        "salesforce": _plain(drift.salesforce),
        "sage": _plain(drift.sage),
    }


def _plain(value: Any) -> Any:
    return value if value is None or isinstance(value, str | int | float | bool) else str(value)


class Repairs(Protocol):
    """Where repair commands go: a publisher of canonical records that confirms them."""

    def send(self, record: CanonicalRecord) -> None: ...

    def confirm(self) -> Any: ...


class Reconciler:
    """Reads both systems, judges every pair, and keeps the metrics (see the module doc)."""

    def __init__(
        self, readers: Mapping[str, SnapshotReader], judge: DriftJudge, *, orders_since: date | None = None
    ) -> None:
        missing = {SALESFORCE, SAGE} - set(readers)
        if missing:
            raise ValueError(f"reconciliation needs a snapshot of {', '.join(sorted(missing))}")
        self.readers = readers
        self.judge = judge
        self.orders_since = orders_since

    def sweep(self) -> Sweep:
        """Both snapshots, one after the other, then every pair judged; the metrics set."""
        started, clock = datetime.now(UTC), time.monotonic()
        try:
            shots = {
                name: self.readers[name].read(SnapshotRequest(self.judge.wanted(name), self.orders_since))
                for name in (SALESFORCE, SAGE)
            }
            drifts: list[Drift] = []
            compared: Counter[str] = Counter()
            for kind, salesforce, sage in pairs(shots[SALESFORCE], shots[SAGE]):
                compared[kind] += 1
                drifts += self.judge.judge(kind, salesforce, sage)
        except Exception:
            SWEEPS.labels("failed").inc()
            raise
        result = Sweep(
            drifts,
            {name: shot.api_calls for name, shot in shots.items()},
            compared,
            started,
            time.monotonic() - clock,
        )
        self._measured(result)
        return result

    @staticmethod
    def _measured(result: Sweep) -> None:
        DRIFT.clear()
        for (kind, entity), count in Counter((d.kind.value, d.entity) for d in result.drifts).items():
            DRIFT.labels(kind, entity).set(count)
        LAST_SWEEP.set(time.time())
        SWEEP_SECONDS.set(result.seconds)
        for system, calls in result.api_calls.items():
            SWEEP_API_CALLS.labels(system).set(calls)
        SWEEPS.labels("drift" if result.drifts else "clean").inc()
        log.info(
            "reconciliation: %d drift(s) in %.1f s (%s)",
            len(result.drifts),
            result.seconds,
            ", ".join(f"{k.value} {n}" for k, n in result.counts().items()) or "none",
        )

    @staticmethod
    def repair(result: Sweep, repairs: Repairs) -> int:
        """Publish every drift's repair command, once per command key, and wait for Kafka's
        acknowledgement; the number published. The sinks then write them: each command is
        idempotent by its key and command ID, and carries the source time of the value it
        brings, so a sink's stale check refuses it when the target changed since."""
        sent: set[tuple[str, str | None]] = set()
        for drift in result.drifts:
            command = drift.repair
            if command is None or (command.topic, command.key) in sent:
                continue
            sent.add((command.topic, command.key))
            repairs.send(command)
            REPAIRS.labels(drift.kind.value).inc()
        repairs.confirm()
        return len(sent)
