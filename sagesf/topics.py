"""topics.yaml: the declared Kafka topics, and reconciling a broker with them.

Owns the topics file format, its validation, the comparison with a live cluster and the
rendering as Kubernetes resources. `sagesf topics` (sagesf/topics_cli.py) is the command line.

How it works:
- `load_topics(path)` reads the YAML keeping each node's line number, validates it with pydantic
  models and fails with `TopicsFileError` listing every problem as `file:line: topic 'x': ...`
  (unknown or duplicate keys, a topic declared twice, a name not shaped `<domain>.<what>.v<N>`,
  a compacted topic without key schema, a schema name that is neither a file in schemas/ nor an
  Avro primitive).
- `plan(admin, topics)` asks the broker (confluent_kafka AdminClient: topic metadata and
  describe_configs) and lists the differences as `Change`s: missing topics, too few partitions,
  configs that differ from the file, plus what apply cannot or will not fix (more partitions than
  declared, another replication factor, topics in the file's scope that the file does not
  declare). Only configs the file declares are compared; the others are the broker's business.
- `apply(admin, plan)` creates missing topics, raises partition counts, sets drifted configs with
  incremental_alter_configs, deletes strays only when the plan was made with `prune=True`, then
  waits until the broker reports the new state, so an immediate second plan is empty.
- `render(topics)` writes Strimzi KafkaTopic resources (multi-document YAML).

Limits: partitions can only grow (Kafka cannot shrink a topic, and growing one moves keys to other
partitions, breaking per-key order for keys already written: choose counts up front). Replication
factor changes need a partition reassignment, which this module reports but does not do. Configs
removed from the file are left as they are on the broker. Strays are looked for only in the
file's `scope` (by default the domains the file declares, `customer.*`, `dlq.*`, ...) and never
among internal topics (`_schemas`, `__consumer_offsets`), so pruning cannot touch other teams'
topics outside those domains.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # public names, re-exported without __all__
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from sagesf.schemas import PRIMITIVE_TYPES, SchemaError, schema_names

__all__ = [
    "Change",
    "ChangeKind",
    "Plan",
    "TopicSpec",
    "TopicsFile",
    "TopicsFileError",
    "apply",
    "load_topics",
    "plan",
    "render",
    "schemas_dir_for",
]

# `<domain>.<what>.v<major>` (the `<what>` part may be absent: customer.v1). Lowercase, digits and
# '-': no '_', which Kafka treats like '.' in metric names and warns about.
TOPIC_NAME = re.compile(r"^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)*\.v[1-9][0-9]*$")
CONFIG_NAME = re.compile(r"^[a-z][a-z0-9]*(\.[a-z0-9]+)*$")
_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
# Set through their own keys, so a topic cannot say it twice.
_OWN_KEYS = {"cleanup.policy": "cleanup_policy", "retention.ms": "retention"}


class TopicsFileError(ValueError):
    """topics.yaml is invalid; the message has one `file:line: problem` line per problem."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _config_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_retention(value: str | int) -> str:
    """`14d`, `36h`, `90m`, `1209600000` (ms) or `forever` -> retention.ms as Kafka wants it."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < -1:
            raise ValueError("retention in ms must be >= 0, or -1 for forever")
        return str(value)
    text = str(value).strip().lower()
    if text in {"forever", "-1", "infinite"}:
        return "-1"
    if text.isdigit():
        return text
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"retention {value!r} is not a duration like 14d, 36h, 90m, 500ms or 'forever'")
    return str(int(match.group(1)) * _UNIT_MS[match.group(2)])


class Defaults(BaseModel):
    """Values every topic gets unless it says otherwise."""

    model_config = ConfigDict(extra="forbid")

    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=3, ge=1)
    configs: dict[str, str] = Field(default_factory=dict)

    @field_validator("configs", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        return {str(k): _config_value(v) for k, v in value.items()} if isinstance(value, dict) else value


class TopicSpec(BaseModel):
    """One topic as declared in topics.yaml."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str | None = None
    partitions: int | None = Field(default=None, ge=1)
    replication_factor: int | None = Field(default=None, ge=1)
    cleanup_policy: Literal["delete", "compact", "compact,delete"] = "delete"
    retention: str | None = None
    configs: dict[str, str] = Field(default_factory=dict)
    key_schema: str | None = None
    value_schema: str | None = None
    # avro: Confluent-framed Avro, schemas registered under <topic>-key/-value. json: sagesf's own
    # internal topics (positions.v1) hold UTF-8 keys and JSON values; the schemas named only
    # describe their shape and nothing is registered.
    encoding: Literal["avro", "json"] = "avro"

    @field_validator("cleanup_policy", mode="before")
    @classmethod
    def _policy(cls, value: Any) -> Any:
        if isinstance(value, str):
            return ",".join(sorted(p.strip() for p in value.split(",")))
        return value

    @field_validator("retention", mode="before")
    @classmethod
    def _retention(cls, value: Any) -> Any:
        return None if value is None else parse_retention(value)

    @field_validator("configs", mode="before")
    @classmethod
    def _stringify(cls, value: Any) -> Any:
        return {str(k): _config_value(v) for k, v in value.items()} if isinstance(value, dict) else value

    @property
    def subjects(self) -> dict[str, str]:
        """Registry subject -> schema name (TopicNameStrategy: `<topic>-key`, `<topic>-value`)."""
        out: dict[str, str] = {}
        if self.encoding == "json":
            return out
        if self.key_schema:
            out[f"{self.name}-key"] = self.key_schema
        if self.value_schema:
            out[f"{self.name}-value"] = self.value_schema
        return out


@dataclass(frozen=True)
class ResolvedTopic:
    """A topic with defaults applied: exactly what should exist on the broker."""

    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]
    notes: tuple[str, ...] = ()


class TopicsFile(BaseModel):
    """The whole of topics.yaml."""

    model_config = ConfigDict(extra="forbid")

    defaults: Defaults = Field(default_factory=Defaults)
    scope: list[str] | None = None
    topics: list[TopicSpec]
    _source: str = PrivateAttr(default="topics.yaml")  # the file it came from, for messages

    @property
    def source(self) -> str:
        return self._source

    def topic(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def scope_patterns(self) -> list[str]:
        """Where strays are looked for: the file's `scope`, else `<domain>.*` per declared domain."""
        if self.scope is not None:
            return self.scope
        return sorted({f"{spec.name.split('.', 1)[0]}.*" for spec in self.topics})

    def in_scope(self, topic: str) -> bool:
        if topic.startswith("_"):
            return False  # internal: __consumer_offsets, _schemas, __transaction_state, ...
        return any(fnmatch.fnmatchcase(topic, pattern) for pattern in self.scope_patterns())

    def resolved(self, replication_factor: int | None = None) -> list[ResolvedTopic]:
        """Every topic with defaults applied; `replication_factor` overrides the file (sandbox: 1)."""
        out = []
        for spec in self.topics:
            rf = replication_factor or spec.replication_factor or self.defaults.replication_factor
            configs = {**self.defaults.configs, **spec.configs, "cleanup.policy": spec.cleanup_policy}
            if spec.retention is not None:
                configs["retention.ms"] = spec.retention
            notes = []
            min_isr = configs.get("min.insync.replicas")
            if min_isr is not None and min_isr.isdigit() and int(min_isr) > rf:
                # a min ISR above the replica count makes every acks=all produce fail
                configs["min.insync.replicas"] = str(rf)
                notes.append(
                    f"min.insync.replicas lowered from {min_isr} to {rf} to fit replication factor {rf}"
                )
            out.append(
                ResolvedTopic(
                    name=spec.name,
                    partitions=spec.partitions or self.defaults.partitions,
                    replication_factor=rf,
                    configs=dict(sorted(configs.items())),
                    notes=tuple(notes),
                )
            )
        return out


# ---------------------------------------------------------------------------------------------
# Loading and validation


def _compose(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise TopicsFileError([f"{where}: not valid YAML: {exc.problem}"]) from None
    finally:
        loader.dispose()
    return data, node


NodePath = tuple[str | int, ...]


def _index_lines(
    node: yaml.Node, path: NodePath, lines: dict[NodePath, int], duplicates: list[str], source: str
) -> None:
    """Line of every key and list item by path; duplicate mapping keys are reported."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append(f"{source}:{line}: key {key!r} repeats the one on line {seen[key]}")
            seen[key] = line
            lines[(*path, key)] = line
            _index_lines(value_node, (*path, key), lines, duplicates, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[(*path, i)] = item.start_mark.line + 1
            _index_lines(item, (*path, i), lines, duplicates, source)


def _line(lines: dict[NodePath, int], path: NodePath) -> int:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return 1


def _topic_label(data: Any, path: NodePath) -> str:
    """`topic 'customer.v1': ` for a path inside the topics list (or `topic #3: ` without a name)."""
    if len(path) >= 2 and path[0] == "topics" and isinstance(path[1], int):
        try:
            name = data["topics"][path[1]].get("name")
        except (TypeError, KeyError, IndexError, AttributeError):
            name = None
        return f"topic {name!r}: " if name else f"topic #{path[1] + 1}: "
    return ""


_FIELDS = {
    (): set(TopicsFile.model_fields),
    ("defaults",): set(Defaults.model_fields),
    ("topics",): set(TopicSpec.model_fields),
}


def _describe_error(err: Any, data: Any, lines: dict[NodePath, int], source: str) -> str:
    path: NodePath = tuple(err["loc"])
    where = f"{source}:{_line(lines, path)}: {_topic_label(data, path)}"
    if err["type"] == "extra_forbidden":
        key = str(path[-1])
        parent = tuple(p for p in path[:-1] if not isinstance(p, int))
        hint = difflib.get_close_matches(key, sorted(_FIELDS.get(parent, set())), n=1)
        suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
        known = ", ".join(sorted(_FIELDS.get(parent, set())))
        return f"{where}unknown key {key!r}{suggestion}; known keys: {known}"
    field_name = ".".join(str(p) for p in path if not isinstance(p, int) and p != "topics") or "file"
    message = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}{field_name}: {message}"


def _semantic_problems(
    topics: TopicsFile, data: Any, lines: dict[NodePath, int], source: str, known_schemas: set[str] | None
) -> list[str]:
    problems: list[str] = []
    first_seen: dict[str, int] = {}
    for i, spec in enumerate(topics.topics):
        at = f"{source}:{_line(lines, ('topics', i, 'name'))}: topic {spec.name!r}: "
        if not TOPIC_NAME.match(spec.name):
            problems.append(
                f"{at}name must look like <domain>.<what>.v<major>: lowercase letters, digits and '-' in "
                "dot-separated parts, ending in .v<N> (e.g. salesorder.v1, sage.commands.v1)"
            )
        elif len(spec.name) > 249:
            problems.append(f"{at}name is longer than Kafka's 249 characters")
        line = _line(lines, ("topics", i))
        if spec.name in first_seen:
            problems.append(
                f"{source}:{line}: topic {spec.name!r} is declared twice "
                f"(lines {first_seen[spec.name]} and {line})"
            )
        else:
            first_seen[spec.name] = line
        if "compact" in spec.cleanup_policy and not spec.key_schema:
            problems.append(
                f"{source}:{_line(lines, ('topics', i, 'cleanup_policy'))}: topic {spec.name!r}: "
                f"cleanup_policy {spec.cleanup_policy} needs a key_schema (compaction keeps the latest "
                "record per key, so every record must have one)"
            )
        if spec.retention is not None and spec.cleanup_policy == "compact":
            problems.append(
                f"{source}:{_line(lines, ('topics', i, 'retention'))}: topic {spec.name!r}: retention has "
                "no effect on a compacted topic (use cleanup_policy compact,delete to expire old keys)"
            )
        for key, own in _OWN_KEYS.items():
            if key in spec.configs:
                problems.append(
                    f"{source}:{_line(lines, ('topics', i, 'configs', key))}: topic {spec.name!r}: "
                    f"set {key} with the {own!r} key, not in configs"
                )
        for key in spec.configs:
            if not CONFIG_NAME.match(key):
                problems.append(
                    f"{source}:{_line(lines, ('topics', i, 'configs', key))}: topic {spec.name!r}: "
                    f"{key!r} is not a Kafka topic config name"
                )
        if known_schemas is not None:
            for which in ("key_schema", "value_schema"):
                ref = getattr(spec, which)
                if ref and ref not in known_schemas and ref not in PRIMITIVE_TYPES:
                    hint = difflib.get_close_matches(ref, sorted(known_schemas), n=1)
                    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
                    problems.append(
                        f"{source}:{_line(lines, ('topics', i, which))}: topic {spec.name!r}: unknown "
                        f"{which} {ref!r}{suggestion}: not a file in schemas/ nor an Avro primitive"
                    )
    for key in _OWN_KEYS:
        if key in topics.defaults.configs:
            problems.append(
                f"{source}:{_line(lines, ('defaults', 'configs', key))}: defaults: set {key} per topic "
                f"with the {_OWN_KEYS[key]!r} key"
            )
    return problems


def schemas_dir_for(topics_file: Path, configured: Path) -> Path:
    """The configured schemas dir; a relative one absent from the working directory is taken next
    to the topics file, so `--file /elsewhere/topics.yaml` finds `/elsewhere/schemas`."""
    if configured.is_absolute() or configured.is_dir():
        return configured
    return topics_file.parent / configured


def load_topics(path: Path | str, schemas_dir: Path | None = None) -> TopicsFile:
    """Read and validate a topics file; raise TopicsFileError naming lines and topics.

    Schema names are checked against `schemas_dir` (default: `schemas/` next to the file).
    """
    path = Path(path)
    source = path.name if path.name == str(path) else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopicsFileError([f"{source}: cannot read: {exc.strerror}"]) from None
    data, node = _compose(text, source)
    lines: dict[NodePath, int] = {}
    duplicates: list[str] = []
    if node is not None:
        _index_lines(node, (), lines, duplicates, source)
    if duplicates:
        raise TopicsFileError(duplicates)
    if not isinstance(data, dict):
        raise TopicsFileError([f"{source}:1: expected a mapping with 'defaults' and 'topics'"])
    try:
        topics = TopicsFile.model_validate(data)
    except ValidationError as exc:
        raise TopicsFileError(
            [_describe_error(err, data, lines, source) for err in exc.errors(include_url=False)]
        ) from None
    directory = schemas_dir if schemas_dir is not None else path.parent / "schemas"
    try:
        known: set[str] | None = set(schema_names(directory))
    except SchemaError as exc:
        raise TopicsFileError([f"{source}: cannot check schema names: {exc}"]) from None
    problems = _semantic_problems(topics, data, lines, source, known)
    if problems:
        raise TopicsFileError(problems)
    topics._source = source
    return topics


# ---------------------------------------------------------------------------------------------
# Comparing with a broker


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


def format_ms(ms: int) -> str:
    """1209600000 -> `14d`: the largest of d, h, m, s that divides evenly."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


def _same_value(key: str, broker: str | None, wanted: str) -> bool:
    if broker is None:
        return False
    if key == "cleanup.policy":
        return sorted(p.strip() for p in broker.split(",")) == sorted(p.strip() for p in wanted.split(","))
    return broker.strip().lower() == wanted.strip().lower()


def plan(
    admin: AdminClient,
    topics: TopicsFile,
    *,
    replication_factor: int | None = None,
    prune: bool = False,
    timeout: float = 30.0,
) -> Plan:
    """Compare the broker with the file. Read-only: nothing on the broker changes."""
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
        changes_before = len(result.changes)
        partitions, replicas = existing[topic.name]
        if partitions < topic.partitions:
            result.changes.append(
                Change(
                    topic.name,
                    ChangeKind.ADD_PARTITIONS,
                    f"partitions {partitions} -> {topic.partitions}",
                    str(partitions),
                    str(topic.partitions),
                )
            )
        elif partitions > topic.partitions:
            result.changes.append(
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
            result.changes.append(
                Change(
                    topic.name,
                    ChangeKind.REPLICATION,
                    f"broker has replication factor {replicas}, file says {topic.replication_factor}; "
                    "change it with a partition reassignment (or pass --replication-factor)",
                    str(replicas),
                    str(topic.replication_factor),
                )
            )
        broker_configs = configs.get(topic.name, {})
        for key, wanted in topic.configs.items():
            current = broker_configs.get(key)
            if not _same_value(key, current, wanted):
                result.changes.append(
                    Change(
                        topic.name,
                        ChangeKind.SET_CONFIG,
                        f"{key}: {current} -> {wanted}",
                        broker=current,
                        wanted=wanted,
                        config=key,
                    )
                )
        if len(result.changes) == changes_before:
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

    Waits (up to `timeout`) until the broker reports the created, grown, reconfigured and deleted
    topics, so a plan made right after this one shows no change.
    """
    by_name = {t.name: t for t in planned.topics}
    outcomes: list[Outcome] = []

    def collect(futures: dict[Any, Any], changes: dict[str, list[Change]]) -> None:
        for key, future in futures.items():
            name = key if isinstance(key, str) else key.name
            try:
                future.result(timeout=timeout)
                error = None
            except Exception as exc:  # noqa: BLE001 - each topic's failure is reported, the rest go on
                error = _error_text(exc)
            outcomes.extend(Outcome(change, error) for change in changes[name])

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

    _wait_until_visible(admin, planned, [o.change for o in outcomes if o.ok], timeout)
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


# ---------------------------------------------------------------------------------------------
# Kubernetes


def render(
    topics: TopicsFile,
    format: str = "strimzi",
    *,
    cluster: str = "my-cluster",
    replication_factor: int | None = None,
) -> str:
    """KafkaTopic resources (Strimzi, kafka.strimzi.io/v1beta2) as multi-document YAML."""
    if format != "strimzi":
        raise ValueError(f"unknown format {format!r}; supported: strimzi")
    docs = []
    for topic in topics.resolved(replication_factor):
        spec = topics.topic(topic.name)
        metadata: dict[str, Any] = {
            "name": topic.name,
            "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "sagesf"},
        }
        annotations = {}
        if spec.description:
            annotations["sagesf.io/description"] = spec.description
        for subject, schema in spec.subjects.items():
            annotations[f"sagesf.io/{'key' if subject.endswith('-key') else 'value'}-schema"] = schema
        if annotations:
            metadata["annotations"] = annotations
        docs.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                "metadata": metadata,
                "spec": {
                    "topicName": topic.name,
                    "partitions": topic.partitions,
                    "replicas": topic.replication_factor,
                    "config": topic.configs,
                },
            }
        )
    header = f"# Generated from {topics.source} by `sagesf topics render`; edit that file, not this one.\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True, width=110)
