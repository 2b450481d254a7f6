"""topics.yaml: the declared Kafka topics, read and validated with line-numbered errors.

Owns the file's format (pydantic models), its validation and `TopicsFileError`. What a file
means for a cluster is sagesf.topic_plan; as Kubernetes resources, sagesf.topic_render.
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from sagesf.errors import TopicsFileError
from sagesf.schemas import PRIMITIVE_TYPES, SchemaError, schema_names
from sagesf.yaml_lines import NodePath, YamlDocument, YamlSyntaxError, read_yaml

__all__ = [
    "ResolvedTopic",
    "TopicSpec",
    "TopicsFile",
    "TopicsFileError",
    "format_ms",
    "load_topics",
    "parse_retention",
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


def format_ms(ms: int) -> str:
    """1209600000 -> `14d`: the largest of d, h, m, s that divides evenly."""
    for unit in ("d", "h", "m", "s"):
        if ms and ms % _UNIT_MS[unit] == 0:
            return f"{ms // _UNIT_MS[unit]}{unit}"
    return f"{ms}ms"


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


def _line(lines: dict[NodePath, int], path: NodePath) -> int:
    return YamlDocument(None, lines).line(path)


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

    The YAML is read keeping each node's line number, then validated with the pydantic models;
    the error lists every problem as `file:line: topic 'x': ...` (unknown or duplicate keys, a
    topic declared twice, a name not shaped `<domain>.<what>.v<N>`, a compacted topic without key
    schema, a schema name that is neither a file in `schemas_dir` nor an Avro primitive).
    Schema names are checked against `schemas_dir` (default: `schemas/` next to the file).
    """
    path = Path(path)
    source = path.name if path.name == str(path) else str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TopicsFileError([f"{source}: cannot read: {exc.strerror}"]) from None
    try:
        document = read_yaml(text)
    except YamlSyntaxError as exc:
        raise TopicsFileError([f"{source}:{exc.line}: not valid YAML: {exc.problem}"]) from None
    data, lines = (document.data, document.lines) if document is not None else (None, {})
    if document is not None and document.repeated:
        raise TopicsFileError(
            [
                f"{source}:{key.line}: key {str(key.path[-1])!r} repeats the one on line {key.first_line}"
                for key in document.repeated
            ]
        )
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
