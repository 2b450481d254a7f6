"""Reconciling a Kafka cluster with topics.yaml: what differs (`plan`) and making it so (`apply`).

Owns the comparison with a live cluster (confluent_kafka AdminClient) and the changes apply
makes. `sagesf topics diff|apply` (sagesf/cli/topics.py) is the command line.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # public names, re-exported without __all__
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from sagesf.topics_file import ResolvedTopic, TopicsFile, format_ms

__all__ = ["Change", "ChangeKind", "Outcome", "Plan", "apply", "plan"]


class ChangeKind(StrEnum):
    CREATE = "create"
    ADD_PARTITIONS = "add partitions"
    SET_CONFIG = "set config"
    DELETE = "delete"
    # differences apply does not fix
    MORE_PARTITIONS = "more partitions"
    REPLICATION = "replication factor"
    STRAY = "not in file"


_ACTIONS = {ChangeKind.CREATE, ChangeKind.ADD_PARTITIONS, ChangeKind.SET_CONFIG, ChangeKind.DELETE}


@dataclass(frozen=True)
class Change:
    """One difference between the file and the broker."""

    topic: str
    kind: ChangeKind
    detail: str
    broker: str | None = None  # what the broker has ...
    wanted: str | None = None  # ... and what the file says
    config: str | None = None  # the config name, for SET_CONFIG

    @property
    def actionable(self) -> bool:
        """True when `apply` makes this change."""
        return self.kind in _ACTIONS


@dataclass
class Plan:
    """What differs, from the file's point of view; `apply` carries out the actionable part."""

    topics: list[ResolvedTopic]
    changes: list[Change] = field(default_factory=list)
    in_sync: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    prune: bool = False

    @property
    def actions(self) -> list[Change]:
        return [c for c in self.changes if c.actionable]

    @property
    def drift(self) -> bool:
        """The broker does not match the file (strays count only when pruning was asked for)."""
        return any(c.kind is not ChangeKind.STRAY for c in self.changes)


def _topic_metadata(admin: AdminClient, timeout: float) -> dict[str, tuple[int, int]]:
    """topic -> (partition count, replication factor) for every topic on the cluster."""
    metadata = admin.list_topics(timeout=timeout)
    out = {}
    for name, topic in metadata.topics.items():
        if topic.error is not None:
            continue
        partitions = topic.partitions
        replicas = len(partitions[min(partitions)].replicas) if partitions else 0
        out[name] = (len(partitions), replicas)
    return out


def _describe_configs(admin: AdminClient, names: Iterable[str], timeout: float) -> dict[str, dict[str, str]]:
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in names]
    if not resources:
        return {}
    futures = admin.describe_configs(resources, request_timeout=timeout)
    out: dict[str, dict[str, str]] = {}
    for resource, future in futures.items():
        entries = future.result(timeout=timeout)
        out[resource.name] = {name: entry.value for name, entry in entries.items() if entry.value is not None}
    return out


def _summary(topic: ResolvedTopic) -> str:
    """`6 partitions, replication 3, compact` / `..., delete after 14d` for reports."""
    parts = [
        f"{topic.partitions} partition{'s' if topic.partitions > 1 else ''}",
        f"replication {topic.replication_factor}",
    ]
    policy = topic.configs["cleanup.policy"]
    if "compact" in policy:
        parts.append("compact")
    if "delete" in policy:
        retention = topic.configs.get("retention.ms")
        if retention is None:
            parts.append("delete after the broker's default retention")
        else:
            parts.append("kept forever" if retention == "-1" else f"delete after {format_ms(int(retention))}")
    return ", ".join(parts)


def _same_value(key: str, broker: str | None, wanted: str) -> bool:
    if broker is None:
        return False
    if key == "cleanup.policy":
        return sorted(p.strip() for p in broker.split(",")) == sorted(p.strip() for p in wanted.split(","))
    return broker.strip().lower() == wanted.strip().lower()


def _differences(
    topic: ResolvedTopic, shape: tuple[int, int], broker_configs: dict[str, str]
) -> list[Change]:
    """How an existing topic (its partition count and replication factor, its configs) differs
    from the file."""
    changes: list[Change] = []
    partitions, replicas = shape
    if partitions < topic.partitions:
        changes.append(
            Change(
                topic.name,
                ChangeKind.ADD_PARTITIONS,
                f"partitions {partitions} -> {topic.partitions}",
                str(partitions),
                str(topic.partitions),
            )
        )
    elif partitions > topic.partitions:
        changes.append(
            Change(
                topic.name,
                ChangeKind.MORE_PARTITIONS,
                f"broker has {partitions} partitions, file says {topic.partitions}; Kafka cannot shrink "
                "a topic: raise the count in the file",
                str(partitions),
                str(topic.partitions),
            )
        )
    if replicas != topic.replication_factor:
        changes.append(
            Change(
                topic.name,
                ChangeKind.REPLICATION,
                f"broker has replication factor {replicas}, file says {topic.replication_factor}; "
                "change it with a partition reassignment (or pass --replication-factor)",
                str(replicas),
                str(topic.replication_factor),
            )
        )
    for key, wanted in topic.configs.items():
        current = broker_configs.get(key)
        if not _same_value(key, current, wanted):
            changes.append(
                Change(
                    topic.name,
                    ChangeKind.SET_CONFIG,
                    f"{key}: {current} -> {wanted}",
                    broker=current,
                    wanted=wanted,
                    config=key,
                )
            )
    return changes


def plan(
    admin: AdminClient,
    topics: TopicsFile,
    *,
    replication_factor: int | None = None,
    prune: bool = False,
    timeout: float = 30.0,
) -> Plan:
    """Compare the broker with the file. Read-only: nothing on the broker changes.

    Asks the broker for topic metadata and describe_configs and lists the differences as
    `Change`s: missing topics, too few partitions, configs that differ from the file, plus what
    apply cannot or will not fix (more partitions than declared, another replication factor,
    topics in the file's scope that the file does not declare). Only configs the file declares
    are compared; the others are the broker's business. Strays are looked for only in the file's
    `scope` (by default the domains the file declares, `customer.*`, `dlq.*`, ...) and never among
    internal topics (`_schemas`, `__consumer_offsets`), so pruning cannot touch other teams'
    topics outside those domains.
    """
    resolved = topics.resolved(replication_factor)
    result = Plan(topics=resolved, prune=prune)
    result.notes = [f"{t.name}: {note}" for t in resolved for note in t.notes]
    existing = _topic_metadata(admin, timeout)
    declared = {t.name for t in resolved}
    configs = _describe_configs(admin, [t.name for t in resolved if t.name in existing], timeout)

    for topic in resolved:
        if topic.name not in existing:
            result.changes.append(Change(topic.name, ChangeKind.CREATE, _summary(topic)))
            continue
        differences = _differences(topic, existing[topic.name], configs.get(topic.name, {}))
        if differences:
            result.changes += differences
        else:
            result.in_sync.append(topic.name)

    for name in sorted(existing):
        if name in declared or not topics.in_scope(name):
            continue
        if prune:
            result.changes.append(Change(name, ChangeKind.DELETE, "not in the file: deleted by --prune"))
        else:
            result.changes.append(
                Change(name, ChangeKind.STRAY, "on the broker but not in the file (apply --prune deletes it)")
            )
    return result


@dataclass(frozen=True)
class Outcome:
    change: Change
    error: str | None = None
    note: str | None = None  # e.g. that another apply created the topic meanwhile

    @property
    def ok(self) -> bool:
        return self.error is None


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, KafkaException) and exc.args:
        error = exc.args[0]
        text = str(getattr(error, "str", lambda: error)())
        if "replication factor" in text.lower():
            text += " (a smaller cluster? pass --replication-factor)"
        return text
    return f"{type(exc).__name__}: {exc}"


def apply(admin: AdminClient, planned: Plan, *, timeout: float = 30.0) -> list[Outcome]:
    """Carry out the plan's actionable changes; return one Outcome per change.

    Creates missing topics, raises partition counts, sets drifted configs with
    incremental_alter_configs and deletes strays only when the plan was made with `prune=True`.
    Waits (up to `timeout`) until the broker reports the created, grown, reconfigured and deleted
    topics, so a plan made right after this one shows no change.

    A topic to create that another apply created since the plan was made (two `sagesf sandbox up`
    at once, a retried deployment job) counts as created, with a note; its partitions and configs
    are then compared with the file and brought in line like any other drift (`_settle_raced`).

    Limits: partitions can only grow (Kafka cannot shrink a topic, and growing one moves keys to
    other partitions, breaking per-key order for keys already written: choose counts up front).
    Replication factor changes need a partition reassignment, which is reported, not done.
    Configs removed from the file are left as they are on the broker.
    """
    by_name = {t.name: t for t in planned.topics}
    outcomes: list[Outcome] = []
    raced: list[str] = []

    def collect(futures: dict[Any, Any], changes: dict[str, list[Change]]) -> None:
        for key, future in futures.items():
            name = key if isinstance(key, str) else key.name
            error, note = None, None
            try:
                future.result(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - each topic's failure is reported, the rest go on
                if _already_exists(exc) and changes[name][0].kind is ChangeKind.CREATE:
                    raced.append(name)
                    note = "created meanwhile by another apply"
                else:
                    error = _error_text(exc)
            outcomes.extend(Outcome(change, error, note) for change in changes[name])

    grouped: dict[ChangeKind, dict[str, list[Change]]] = {}
    for change in planned.actions:
        grouped.setdefault(change.kind, {}).setdefault(change.topic, []).append(change)

    if creates := grouped.get(ChangeKind.CREATE):
        new_topics = [
            NewTopic(
                name,
                num_partitions=by_name[name].partitions,
                replication_factor=by_name[name].replication_factor,
                config=by_name[name].configs,
            )
            for name in creates
        ]
        collect(admin.create_topics(new_topics, request_timeout=timeout), creates)
    if grows := grouped.get(ChangeKind.ADD_PARTITIONS):
        requests = [NewPartitions(name, by_name[name].partitions) for name in grows]
        collect(admin.create_partitions(requests, request_timeout=timeout), grows)
    if settings := grouped.get(ChangeKind.SET_CONFIG):
        resources = [
            ConfigResource(
                ResourceType.TOPIC,
                name,
                incremental_configs=[
                    ConfigEntry(str(c.config), c.wanted, incremental_operation=AlterConfigOpType.SET)
                    for c in changes
                ],
            )
            for name, changes in settings.items()
        ]
        collect(admin.incremental_alter_configs(resources, request_timeout=timeout), settings)
    if deletes := grouped.get(ChangeKind.DELETE):
        collect(admin.delete_topics(list(deletes), request_timeout=timeout), deletes)

    _wait_until_visible(admin, planned, [o.change for o in outcomes if o.ok and not o.note], timeout)
    if raced:
        outcomes += _settle_raced(admin, [by_name[name] for name in raced], timeout)
    return outcomes


def _already_exists(exc: BaseException) -> bool:
    error = exc.args[0] if isinstance(exc, KafkaException) and exc.args else None
    return isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS


def _settle_raced(admin: AdminClient, topics: list[ResolvedTopic], timeout: float) -> list[Outcome]:
    """Topics another apply created meanwhile, made as the file says: what it can change (more
    partitions, configs) is applied; what it cannot (fewer partitions wanted, another replication
    factor) is a failed outcome, since this apply promised a topic as declared."""
    deadline = time.monotonic() + timeout
    existing = _topic_metadata(admin, timeout)
    while any(t.name not in existing for t in topics) and time.monotonic() < deadline:
        time.sleep(0.2)  # the other creator's topic reaches this broker's metadata a little later
        existing = _topic_metadata(admin, timeout)
    present = [t for t in topics if t.name in existing]
    configs = _describe_configs(admin, [t.name for t in present], timeout)
    differences = [c for t in present for c in _differences(t, existing[t.name], configs.get(t.name, {}))]
    fixable = Plan(topics=topics, changes=[c for c in differences if c.actionable])
    outcomes = apply(admin, fixable, timeout=timeout) if fixable.changes else []
    outcomes += [
        Outcome(c, f"created meanwhile by another apply, differently: {c.detail}")
        for c in differences
        if not c.actionable
    ]
    outcomes += [
        Outcome(Change(t.name, ChangeKind.CREATE, _summary(t)), "created meanwhile, yet not on the broker")
        for t in topics
        if t.name not in existing
    ]
    return outcomes


def _wait_until_visible(admin: AdminClient, planned: Plan, done: list[Change], timeout: float) -> None:
    """Metadata and configs reach every broker a little after the admin call returns."""
    if not done:
        return
    deadline = time.monotonic() + timeout
    wanted = {t.name: t for t in planned.topics}
    while time.monotonic() < deadline:
        existing = _topic_metadata(admin, timeout)
        pending = False
        for change in done:
            if change.kind is ChangeKind.DELETE:
                pending |= change.topic in existing
            elif change.kind in {ChangeKind.CREATE, ChangeKind.ADD_PARTITIONS}:
                pending |= existing.get(change.topic, (0, 0))[0] < wanted[change.topic].partitions
        if not pending:
            config_topics = {c.topic for c in done if c.kind is ChangeKind.SET_CONFIG}
            configs = _describe_configs(admin, sorted(config_topics), timeout)
            pending = any(
                not _same_value(key, configs.get(name, {}).get(key), value)
                for name in config_topics
                for key, value in wanted[name].configs.items()
            )
        if not pending:
            return
        time.sleep(0.2)
