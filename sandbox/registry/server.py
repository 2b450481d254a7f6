"""A schema registry for the sandbox that speaks Confluent Schema Registry's REST API, kept in Kafka.

What it owns: the subset of Confluent's API (v1, `application/vnd.schemaregistry.v1+json`) that
confluent-kafka's unmodified `SchemaRegistryClient`, `AvroSerializer` and `AvroDeserializer` call,
with Confluent's response shapes and error bodies (`{"error_code": N, "message": "..."}`):

- register `POST /subjects/{s}/versions` -> `{"id": N}`: the same schema again in a subject gives
  its existing id; the same schema in another subject reuses the global id, like Confluent.
- `GET /schemas/ids/{id}` (`{"schema": ...}`, `schemaType` omitted for AVRO), `.../versions`,
  `.../subjects`, `GET /schemas/types`, `GET /subjects`, `GET /subjects/{s}/versions`,
  `GET /subjects/{s}/versions/{v|latest}[/schema]`, lookup `POST /subjects/{s}`.
- `POST /compatibility/subjects/{s}/versions[/{v|latest}]` -> `{"is_compatible": bool}` plus
  `"messages"` with `?verbose=true`; `GET|PUT|DELETE /config[/{s}]`; `GET /mode[/{s}]`.
- soft and permanent `DELETE /subjects/{s}[/versions/{v}]` with Confluent's 4040x rules.
- Anything else, including the `/associations` API newer clients probe before falling back to
  the topic subject-name strategy, answers 404 `{"error_code": 404, "message": "HTTP 404 Not
  Found"}`, exactly as a Confluent registry without that API does.

How it works: state lives in a compacted Kafka topic (`_schemas` by default) in Confluent's own
record layout: key `{"keytype":"SCHEMA","subject":..,"version":..,"magic":1}`, value
`{"subject","version","id","schema","deleted"}`; compatibility settings under keytype CONFIG;
a permanent delete is a tombstone. On start the topic is created if missing (compact,
1 partition) and read to its end with the core's bounded reader (`sagesf.topic_scan`) to rebuild
the in-memory state; only then is the HTTP port opened, so "port open" means "ready". Every write
is produced with acks=all and waited for before the HTTP answer, then applied to memory through
the same code that replays the topic, so a restart rebuilds exactly what clients were told.
Schema ids are global and continue above the highest id found. Compatibility (BACKWARD by
default; NONE, FORWARD, FULL and the _TRANSITIVE forms too) is decided by
`sagesf.avro_compat.incompatibilities`, i.e. Apache Avro's `ReaderWriterCompatibilityChecker`.

Limits:
- Single writer: one process per topic. It does not tail the topic after start, so a second
  instance on the same topic would not see the first one's writes (Confluent elects a leader and
  forwards writes; this emulator has no election).
- AVRO only, no schema references, metadata or rule sets (42201 says so), no contexts, no
  import mode, no `normalize` (accepted, ignored). Schemas are compared by their compact JSON
  text (whitespace removed, key order kept), close to but not exactly Java Avro's canonical
  string that Confluent compares.
- avro_compat is stricter than Confluent on logical types (a decimal scale change is refused
  here, accepted by Confluent): the sandbox may refuse an evolution production would accept,
  never the reverse.
- Incompatible registration answers error_code 409, as Confluent Platform releases do; the
  newest Confluent source uses 40901 (same HTTP status 409, which is what clients test).
- No authentication, plain HTTP. Production points at a real Confluent-compatible registry.
- Ids of permanently deleted schemas may be handed out again after compaction and a restart.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import avro.schema
from aiohttp import web
from avro.errors import AvroException
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # exported at runtime, not in the stubs
    AdminClient,
    ConfigResource,
    NewTopic,
)

from sagesf.avro_compat import InvalidSchemaError, incompatibilities
from sagesf.config import KafkaSettings
from sagesf.topic_scan import PartitionRange, TopicReader

log = logging.getLogger("sandbox.registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
DEFAULT_TOPIC = "_schemas"
DEFAULT_COMPATIBILITY = "BACKWARD"
LEVELS = (
    "NONE",
    "BACKWARD",
    "BACKWARD_TRANSITIVE",
    "FORWARD",
    "FORWARD_TRANSITIVE",
    "FULL",
    "FULL_TRANSITIVE",
)
MAX_VERSION = 2**31 - 1


class RegistryError(Exception):
    """An API error, answered as Confluent does: HTTP status and `{"error_code", "message"}`."""

    def __init__(self, status: int, error_code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_code = error_code
        self.message = message


def subject_not_found(subject: str) -> RegistryError:
    return RegistryError(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(version: int) -> RegistryError:
    return RegistryError(404, 40402, f"Version {version} not found.")


def schema_not_found(schema_id: int | None = None) -> RegistryError:
    return RegistryError(
        404, 40403, "Schema not found" if schema_id is None else f"Schema {schema_id} not found"
    )


def invalid_schema(detail: str) -> RegistryError:
    return RegistryError(422, 42201, f"Invalid schema: {detail}")


def invalid_version(version: str) -> RegistryError:
    return RegistryError(
        422,
        42202,
        f"The specified version '{version}' is not a valid version id. "
        'Allowed values are between [1, 2^31-1] and the string "latest"',
    )


def store_error(detail: str) -> RegistryError:
    return RegistryError(500, 50001, detail)


# --- records: the `_schemas` topic layout -----------------------------------------------------


def _dumps(value: Any) -> bytes:
    # one fixed rendering, so every record of a key has byte-identical keys (compaction needs it)
    return json.dumps(value, separators=(",", ":")).encode()


def schema_key(subject: str, version: int) -> bytes:
    return _dumps({"keytype": "SCHEMA", "subject": subject, "version": version, "magic": 1})


def config_key(subject: str | None) -> bytes:
    return _dumps({"keytype": "CONFIG", "subject": subject, "magic": 0})


@dataclass
class SchemaVersion:
    """One version of a subject, as stored in the topic."""

    subject: str
    version: int
    id: int
    schema: str
    deleted: bool = False

    def value(self) -> bytes:
        return _dumps(
            {
                "subject": self.subject,
                "version": self.version,
                "id": self.id,
                "schema": self.schema,
                "deleted": self.deleted,
            }
        )


@dataclass
class RegistryState:
    """Everything the registry knows, rebuilt from the topic by replaying `apply`."""

    versions: dict[str, dict[int, SchemaVersion]] = field(default_factory=dict)
    global_level: str = DEFAULT_COMPATIBILITY
    subject_levels: dict[str, str] = field(default_factory=dict)
    max_id: int = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """Fold one topic record into the state (unknown or malformed records are skipped)."""
        if key is None:
            return
        try:
            k = json.loads(key)
            v = json.loads(value) if value is not None else None
        except ValueError:
            log.warning("skipping a record that is not JSON in the schemas topic")
            return
        keytype = k.get("keytype")
        if keytype == "SCHEMA":
            subject, version = k["subject"], int(k["version"])
            if v is None:
                self.versions.get(subject, {}).pop(version, None)
                return
            sv = SchemaVersion(
                subject=v["subject"],
                version=int(v["version"]),
                id=int(v["id"]),
                schema=v["schema"],
                deleted=bool(v.get("deleted", False)),
            )
            self.versions.setdefault(subject, {})[version] = sv
            self.max_id = max(self.max_id, sv.id)
        elif keytype == "CONFIG":
            subject = k.get("subject")
            level = v.get("compatibilityLevel") if v else None
            if subject is None:
                self.global_level = level or DEFAULT_COMPATIBILITY
            elif level is None:
                self.subject_levels.pop(subject, None)
            else:
                self.subject_levels[subject] = level
        elif keytype != "NOOP":
            log.warning("ignoring a %s record: this registry understands SCHEMA and CONFIG only", keytype)

    # --- queries -------------------------------------------------------------------------------

    def subject_versions(self, subject: str, deleted: bool = False) -> list[SchemaVersion]:
        found = self.versions.get(subject, {})
        return [found[v] for v in sorted(found) if deleted or not found[v].deleted]

    def latest(self, subject: str) -> SchemaVersion | None:
        live = self.subject_versions(subject)
        return live[-1] if live else None

    def by_id(self, schema_id: int) -> list[SchemaVersion]:
        return [sv for versions in self.versions.values() for sv in versions.values() if sv.id == schema_id]

    def id_of(self, schema: str) -> int | None:
        for versions in self.versions.values():
            for sv in versions.values():
                if sv.schema == schema:
                    return sv.id
        return None

    def level(self, subject: str) -> str:
        return self.subject_levels.get(subject, self.global_level)


# --- the Kafka side -------------------------------------------------------------------------


class KafkaStore:
    """The compacted topic: created if missing, read once at start, written with acks=all."""

    def __init__(
        self, bootstrap: str, topic: str, replication_factor: int = 1, timeout: float = 30.0
    ) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.replication_factor = replication_factor
        self.timeout = timeout
        self._producer: Any = None

    def ensure_topic(self) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        new = NewTopic(
            self.topic,
            num_partitions=1,
            replication_factor=self.replication_factor,
            config={"cleanup.policy": "compact"},
        )
        try:
            admin.create_topics([new], operation_timeout=self.timeout)[self.topic].result(self.timeout)
            log.info("created topic %s (compact, 1 partition, rf %d)", self.topic, self.replication_factor)
            return
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
        # an existing topic must be what the registry needs, as Confluent's registry insists too
        md = admin.list_topics(self.topic, timeout=self.timeout).topics[self.topic]
        if len(md.partitions) != 1:
            raise RuntimeError(f"schemas topic {self.topic} has {len(md.partitions)} partitions; it needs 1")
        resource = ConfigResource(ConfigResource.Type.TOPIC, self.topic)
        configs = admin.describe_configs([resource])[resource].result(self.timeout)
        policy = configs["cleanup.policy"].value
        if policy != "compact":
            raise RuntimeError(f"schemas topic {self.topic} has cleanup.policy={policy}; it needs compact")

    def load(self, state: RegistryState) -> int:
        """Replay the topic from the beginning to its end into `state`; returns the record count."""
        kafka = KafkaSettings(bootstrap_servers=self.bootstrap, client_id="sandbox-registry")
        with TopicReader(kafka, timeout=self.timeout) as reader:
            count = 0
            for record in reader.read(self._whole_topic(reader)):
                state.apply(record.key, record.value)
                count += 1
            return count

    def _whole_topic(self, reader: TopicReader) -> list[PartitionRange]:
        deadline = time.monotonic() + self.timeout
        while True:  # a just-created topic may have no leader for a moment
            try:
                return reader.ranges(self.topic, partitions=[0])
            except KafkaException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def write(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """Produce the records and return once Kafka acknowledged all of them (else raise)."""
        if self._producer is None:
            self._producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "acks": "all",
                    "enable.idempotence": True,
                    "linger.ms": 0,
                    "message.timeout.ms": int(self.timeout * 1000),
                }
            )
        failures: list[str] = []
        delivered: list[int] = []

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))
            else:
                delivered.append(1)

        for key, value in records:
            self._producer.produce(self.topic, key=key, value=value, on_delivery=on_delivery)
        remaining = self._producer.flush(self.timeout)
        if failures or remaining or len(delivered) != len(records):
            # drop what is still queued, so a write we answered 500 for is not delivered later;
            # one already in flight may still land, and a restart would then show it
            self._producer.purge()
            self._producer.flush(0)
            raise store_error(f"writing to the Kafka store {self.topic} failed: {failures or 'timed out'}")

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout)


# --- the registry's rules -------------------------------------------------------------------


def _compact(schema_text: str) -> str:
    """The stored form of a schema: valid JSON and valid Avro, whitespace removed, order kept."""
    try:
        doc = json.loads(schema_text)
    except (TypeError, ValueError) as exc:
        raise invalid_schema(f"not JSON: {exc}") from None
    compact = json.dumps(doc, separators=(",", ":"))
    try:
        avro.schema.parse(compact)
    except AvroException as exc:
        raise invalid_schema(str(exc)) from None
    return compact


def _schema_from_body(body: Any) -> str:
    if not isinstance(body, dict):
        raise RegistryError(400, 400, "Request body must be a JSON object")
    schema_type = body.get("schemaType") or "AVRO"
    if schema_type != "AVRO":
        raise RegistryError(
            422, 42201, f"Invalid schema type {schema_type}: this registry supports AVRO only"
        )
    if body.get("references"):
        raise RegistryError(
            422, 42201, "Invalid schema: schema references are not supported by this registry"
        )
    if body.get("metadata") or body.get("ruleSet"):
        raise RegistryError(
            422, 42201, "Invalid schema: metadata and rule sets are not supported by this registry"
        )
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise invalid_schema("empty schema")
    return _compact(schema)


def _parse_version(text: str) -> int | None:
    """A version path segment: an int in [1, 2^31-1], or None for `latest` (and -1, as Confluent)."""
    if text.lower() == "latest":
        return None
    try:
        number = int(text)
    except ValueError:
        raise invalid_version(text) from None
    if number == -1:
        return None
    if not 1 <= number <= MAX_VERSION:
        raise invalid_version(text)
    return number


def _flag(request: web.Request, name: str) -> bool:
    # the Python client sends both `false` (httpx) and `False` (hand-built query strings)
    return request.query.get(name, "false").lower() == "true"


def _page(request: web.Request, items: list[Any]) -> list[Any]:
    """Confluent's `offset`/`limit` paging (a negative limit means all)."""
    try:
        offset = max(0, int(request.query.get("offset", "0")))
        limit = int(request.query.get("limit", "-1"))
    except ValueError:
        raise RegistryError(400, 400, "offset and limit must be integers") from None
    return items[offset:] if limit < 0 else items[offset : offset + limit]


class Registry:
    """The API's behaviour on top of the state and the store; writes are serialised by a lock."""

    def __init__(self, store: KafkaStore, state: RegistryState | None = None) -> None:
        self.store = store
        self.state = state or RegistryState()
        self._lock = asyncio.Lock()

    async def _write(self, records: list[tuple[bytes, bytes | None]]) -> None:
        await asyncio.to_thread(self.store.write, records)
        for key, value in records:  # the same path a restart takes, so memory == topic
            self.state.apply(key, value)

    # compatibility ---------------------------------------------------------------------------

    def _problems(self, level: str, new: str, old: SchemaVersion) -> list[str]:
        backward = level.startswith(("BACKWARD", "FULL"))
        forward = level.startswith(("FORWARD", "FULL"))
        problems: list[str] = []
        try:
            if backward:
                problems += incompatibilities(reader_schema=new, writer_schema=old.schema)
            if forward:
                problems += [
                    f"(forward) {p}" for p in incompatibilities(reader_schema=old.schema, writer_schema=new)
                ]
        except InvalidSchemaError as exc:
            raise invalid_schema(str(exc)) from None
        if problems:
            problems += [f"{{oldSchemaVersion: {old.version}}}", f"{{compatibility: '{level}'}}"]
        return problems

    def check(self, subject: str, new: str, against: Iterable[SchemaVersion]) -> list[str]:
        """Problems registering `new` in `subject` given the versions the level asks to check."""
        level = self.state.level(subject)
        if level == "NONE":
            return []
        problems: list[str] = []
        for old in against:
            problems += self._problems(level, new, old)
        return problems

    def versions_to_check(self, subject: str) -> list[SchemaVersion]:
        live = self.state.subject_versions(subject)
        if not live:
            return []
        return live if self.state.level(subject).endswith("_TRANSITIVE") else [live[-1]]

    # writes ------------------------------------------------------------------------------------

    async def register(self, subject: str, schema: str) -> int:
        async with self._lock:
            for sv in self.state.subject_versions(subject):
                if sv.schema == schema:
                    return sv.id
            problems = self.check(subject, schema, self.versions_to_check(subject))
            if problems:
                raise RegistryError(
                    409,
                    409,
                    "Schema being registered is incompatible with an earlier schema for subject "
                    f'"{subject}", details: [{", ".join(problems)}]',
                )
            schema_id = self.state.id_of(schema) or self.state.max_id + 1
            every = self.state.subject_versions(subject, deleted=True)
            version = every[-1].version + 1 if every else 1
            sv = SchemaVersion(subject, version, schema_id, schema)
            await self._write([(schema_key(subject, version), sv.value())])
            log.info("registered %s version %d as id %d", subject, version, schema_id)
            return schema_id

    async def set_level(self, subject: str | None, level: str) -> None:
        async with self._lock:
            await self._write([(config_key(subject), _dumps({"compatibilityLevel": level}))])

    async def delete_level(self, subject: str | None) -> None:
        async with self._lock:
            if subject is None:
                await self._write([(config_key(None), _dumps({"compatibilityLevel": DEFAULT_COMPATIBILITY}))])
            else:
                await self._write([(config_key(subject), None)])

    async def delete_version(self, subject: str, version_text: str, permanent: bool) -> int:
        async with self._lock:
            number = _parse_version(version_text)
            every = self.state.subject_versions(subject, deleted=True)
            if not every:
                raise subject_not_found(subject)
            if number is None:
                live = self.state.subject_versions(subject)
                if not live:
                    raise subject_not_found(subject)
                sv = live[-1]
            else:
                found = [s for s in every if s.version == number]
                if not found:
                    raise version_not_found(number)
                sv = found[0]
            if permanent:
                if not sv.deleted:
                    raise RegistryError(
                        404,
                        40407,
                        f"Subject '{subject}' Version {sv.version} was not deleted first before being "
                        "permanently deleted",
                    )
                await self._write([(schema_key(subject, sv.version), None)])
            else:
                if sv.deleted:
                    raise RegistryError(
                        404,
                        40406,
                        f"Subject '{subject}' Version {sv.version} was soft deleted.Set permanent=true to "
                        "delete permanently",
                    )
                gone = SchemaVersion(sv.subject, sv.version, sv.id, sv.schema, deleted=True)
                await self._write([(schema_key(subject, sv.version), gone.value())])
            return sv.version

    async def delete_subject(self, subject: str, permanent: bool) -> list[int]:
        async with self._lock:
            every = self.state.subject_versions(subject, deleted=True)
            if not every:
                raise subject_not_found(subject)
            live = [sv for sv in every if not sv.deleted]
            if permanent:
                if live:
                    raise RegistryError(
                        404,
                        40405,
                        f"Subject '{subject}' was not deleted first before being permanently deleted",
                    )
                records: list[tuple[bytes, bytes | None]] = [
                    (schema_key(subject, sv.version), None) for sv in every
                ]
                records.append((config_key(subject), None))
                await self._write(records)
                return [sv.version for sv in every]
            if not live:
                raise RegistryError(
                    404,
                    40404,
                    f"Subject '{subject}' was soft deleted.Set permanent=true to delete permanently",
                )
            await self._write(
                [
                    (
                        schema_key(subject, sv.version),
                        SchemaVersion(subject, sv.version, sv.id, sv.schema, True).value(),
                    )
                    for sv in live
                ]
            )
            return [sv.version for sv in live]


# --- HTTP -----------------------------------------------------------------------------------


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status, body=json.dumps(data, separators=(",", ":")), content_type=CONTENT_TYPE
    )


def _error(status: int, error_code: int, message: str) -> web.Response:
    return _json({"error_code": error_code, "message": message}, status)


async def _body(request: web.Request) -> Any:
    try:
        return json.loads(await request.read())
    except ValueError as exc:
        raise RegistryError(400, 400, f"Unrecognized JSON in the request body: {exc}") from None


def _version_view(sv: SchemaVersion) -> dict[str, Any]:
    return {"subject": sv.subject, "version": sv.version, "id": sv.id, "schema": sv.schema}


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers with Confluent's error body and content type."""
    try:
        return await handler(request)
    except RegistryError as exc:
        return _error(exc.status, exc.error_code, exc.message)
    except web.HTTPNotFound:
        return _error(404, 404, "HTTP 404 Not Found")
    except web.HTTPMethodNotAllowed:
        return _error(405, 405, "HTTP 405 Method Not Allowed")
    except Exception:  # the registry must answer, not hang up; Confluent's generic 500 body
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return _error(500, 500, "Internal Server Error")


def build_app(registry: Registry) -> web.Application:
    """The aiohttp application serving the Confluent-compatible routes."""
    state = registry.state
    routes = web.RouteTableDef()

    @routes.get("/")
    async def root(_request: web.Request) -> web.Response:
        return _json({})

    @routes.get("/schemas/types")
    async def schema_types(_request: web.Request) -> web.Response:
        return _json(["AVRO"])

    def _schema_id(request: web.Request) -> int:
        try:
            return int(request.match_info["id"])
        except ValueError:
            raise schema_not_found() from None

    @routes.get("/schemas/ids/{id}")
    async def schema_by_id(request: web.Request) -> web.Response:
        schema_id = _schema_id(request)
        found = state.by_id(schema_id)
        if not found:
            raise schema_not_found(schema_id)
        return _json({"schema": found[0].schema})

    @routes.get("/schemas/ids/{id}/schema")
    async def raw_schema_by_id(request: web.Request) -> web.Response:
        schema_id = _schema_id(request)
        found = state.by_id(schema_id)
        if not found:
            raise schema_not_found(schema_id)
        return _json(json.loads(found[0].schema))

    @routes.get("/schemas/ids/{id}/versions")
    async def versions_by_id(request: web.Request) -> web.Response:
        schema_id = _schema_id(request)
        found = state.by_id(schema_id)
        if not found:
            raise schema_not_found(schema_id)
        deleted = _flag(request, "deleted")
        pairs = sorted((sv.subject, sv.version) for sv in found if deleted or not sv.deleted)
        return _json(_page(request, [{"subject": s, "version": v} for s, v in pairs]))

    @routes.get("/schemas/ids/{id}/subjects")
    async def subjects_by_id(request: web.Request) -> web.Response:
        schema_id = _schema_id(request)
        found = state.by_id(schema_id)
        if not found:
            raise schema_not_found(schema_id)
        deleted = _flag(request, "deleted")
        return _json(_page(request, sorted({sv.subject for sv in found if deleted or not sv.deleted})))

    @routes.get("/subjects")
    async def subjects(request: web.Request) -> web.Response:
        deleted_only = _flag(request, "deleted_only") or _flag(request, "deletedOnly")
        deleted = _flag(request, "deleted")
        prefix = request.query.get("subjectPrefix", "")
        names = []
        for subject in sorted(state.versions):
            every = state.subject_versions(subject, deleted=True)
            if not every or not subject.startswith(prefix):
                continue
            has_live = any(not sv.deleted for sv in every)
            if (deleted_only and not has_live) or (not deleted_only and (has_live or deleted)):
                names.append(subject)
        return _json(_page(request, names))

    @routes.get("/subjects/{subject}/versions")
    async def subject_versions(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        deleted = _flag(request, "deleted")
        found = state.subject_versions(subject, deleted=deleted)
        if not found:
            raise subject_not_found(subject)
        return _json([sv.version for sv in found])

    def _get_version(request: web.Request) -> SchemaVersion:
        subject = request.match_info["subject"]
        number = _parse_version(request.match_info["version"])
        deleted = _flag(request, "deleted")
        found = state.subject_versions(subject, deleted=deleted)
        if not found:
            raise subject_not_found(subject)
        if number is None:
            return found[-1]
        for sv in found:
            if sv.version == number:
                return sv
        raise version_not_found(number)

    @routes.get("/subjects/{subject}/versions/{version}")
    async def subject_version(request: web.Request) -> web.Response:
        return _json(_version_view(_get_version(request)))

    @routes.get("/subjects/{subject}/versions/{version}/schema")
    async def subject_version_schema(request: web.Request) -> web.Response:
        return _json(json.loads(_get_version(request).schema))

    @routes.get("/subjects/{subject}/versions/{version}/referencedby")
    async def referenced_by(request: web.Request) -> web.Response:
        _get_version(request)
        return _json([])  # no references in this registry

    @routes.post("/subjects/{subject}/versions")
    async def register(request: web.Request) -> web.Response:
        schema = _schema_from_body(await _body(request))
        schema_id = await registry.register(request.match_info["subject"], schema)
        return _json({"id": schema_id})

    @routes.post("/subjects/{subject}")
    async def lookup(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        schema = _schema_from_body(await _body(request))
        found = state.subject_versions(subject, deleted=_flag(request, "deleted"))
        if not found:
            raise subject_not_found(subject)
        for sv in found:
            if sv.schema == schema:
                return _json(_version_view(sv))
        raise schema_not_found()

    @routes.delete("/subjects/{subject}")
    async def delete_subject(request: web.Request) -> web.Response:
        versions = await registry.delete_subject(request.match_info["subject"], _flag(request, "permanent"))
        return _json(versions)

    @routes.delete("/subjects/{subject}/versions/{version}")
    async def delete_version(request: web.Request) -> web.Response:
        version = await registry.delete_version(
            request.match_info["subject"], request.match_info["version"], _flag(request, "permanent")
        )
        return _json(version)

    def _compat_answer(request: web.Request, problems: list[str]) -> web.Response:
        answer: dict[str, Any] = {"is_compatible": not problems}
        if _flag(request, "verbose"):
            answer["messages"] = problems
        return _json(answer)

    @routes.post("/compatibility/subjects/{subject}/versions/{version}")
    async def compatibility(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        number = _parse_version(request.match_info["version"])
        schema = _schema_from_body(await _body(request))
        live = state.subject_versions(subject)
        if number is None and not live:
            return _compat_answer(request, [])  # nothing registered yet: anything is compatible
        if not live:
            raise subject_not_found(subject)
        against = [live[-1]] if number is None else [sv for sv in live if sv.version == number]
        if not against:
            raise version_not_found(number or 0)
        return _compat_answer(request, registry.check(subject, schema, against))

    @routes.post("/compatibility/subjects/{subject}/versions")
    async def compatibility_all(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        schema = _schema_from_body(await _body(request))
        return _compat_answer(request, registry.check(subject, schema, registry.versions_to_check(subject)))

    def _level_from_body(body: Any) -> str:
        level = body.get("compatibility") if isinstance(body, dict) else None
        if not isinstance(level, str) or level.upper() not in LEVELS:
            raise RegistryError(
                422,
                42203,
                "Invalid compatibility level. Valid values are none, backward, forward, full, "
                "backward_transitive, forward_transitive, and full_transitive",
            )
        return level.upper()

    @routes.get("/config")
    async def get_config(_request: web.Request) -> web.Response:
        return _json({"compatibilityLevel": state.global_level})

    @routes.put("/config")
    async def put_config(request: web.Request) -> web.Response:
        level = _level_from_body(await _body(request))
        await registry.set_level(None, level)
        return _json({"compatibility": level})

    @routes.delete("/config")
    async def delete_config(_request: web.Request) -> web.Response:
        old = state.global_level
        await registry.delete_level(None)
        return _json({"compatibilityLevel": old})

    @routes.get("/config/{subject}")
    async def get_subject_config(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        level = state.subject_levels.get(subject)
        if level is None:
            if not _flag(request, "defaultToGlobal"):
                raise RegistryError(
                    404, 40408, f"Subject '{subject}' does not have subject-level compatibility configured"
                )
            level = state.global_level
        return _json({"compatibilityLevel": level})

    @routes.put("/config/{subject}")
    async def put_subject_config(request: web.Request) -> web.Response:
        level = _level_from_body(await _body(request))
        await registry.set_level(request.match_info["subject"], level)
        return _json({"compatibility": level})

    @routes.delete("/config/{subject}")
    async def delete_subject_config(request: web.Request) -> web.Response:
        subject = request.match_info["subject"]
        old = state.subject_levels.get(subject)
        if old is None:
            raise subject_not_found(subject)
        await registry.delete_level(subject)
        return _json({"compatibilityLevel": old})

    @routes.get("/mode")
    async def get_mode(_request: web.Request) -> web.Response:
        return _json({"mode": "READWRITE"})

    @routes.get("/mode/{subject}")
    async def get_subject_mode(_request: web.Request) -> web.Response:
        return _json({"mode": "READWRITE"})

    app = web.Application(middlewares=[_errors])
    app.add_routes(routes)
    return app


async def serve(
    bootstrap: str,
    port: int,
    host: str = "127.0.0.1",
    topic: str = DEFAULT_TOPIC,
    replication_factor: int = 1,
    stop: asyncio.Event | None = None,
) -> None:
    """Load the topic, then serve HTTP until `stop` is set (or SIGTERM/SIGINT)."""
    store = KafkaStore(bootstrap, topic, replication_factor)
    started = time.monotonic()
    await asyncio.to_thread(store.ensure_topic)
    state = RegistryState()
    count = await asyncio.to_thread(store.load, state)
    log.info(
        "loaded %d records from %s in %.2f s: %d subjects, highest id %d",
        count,
        topic,
        time.monotonic() - started,
        len(state.versions),
        state.max_id,
    )
    registry = Registry(store, state)
    runner = web.AppRunner(build_app(registry), access_log=log)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("schema registry listening on http://%s:%d (topic %s)", host, port, topic)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        store.close()
        log.info("schema registry stopped")
