"""Avro serialisation of canonical records in the Confluent wire format, lean enough for hot loops.

What it owns: turning one canonical record (or a string key) into the bytes of a Kafka message and
back. Bytes are Confluent's wire format, so any Confluent-compatible consumer (Java, Kafka
Connect, confluent-kafka's own AvroDeserializer) reads them: magic byte 0, the 4-byte big-endian
schema id of the writer schema in the registry, then the Avro binary body.

How it works: an `AvroSerde` serves one subject (TopicNameStrategy: `<topic>-value` or
`<topic>-key`) and one schema. On first encode it gets its schema id from the registry, once:
`auto_register=True` (the sandbox) registers the schema; otherwise (production, the default in
`RegistrySettings`) it looks the schema up and, if missing, fails with an error telling the user
to run `sagesf schemas register`. Encode is the 5-byte header plus `fastavro.schemaless_writer`.
Decode reads the id, fetches that writer schema once per id (`client.get_schema`, parsed once),
and decodes with `schemaless_reader(writer, reader)`, so records written with an older or newer
compatible schema are resolved to this serde's schema (schema evolution); when the writer schema
is this serde's own, resolution is skipped.

Why not confluent-kafka's AvroSerializer/AvroDeserializer: they work with these bytes (the tests
prove interop both ways), but the deserializer runs subject lookups, rule and migration hooks on
every message and decodes at about 0.41x raw fastavro (shared/reference/kafka.md); the project
needs at least 0.8x. bench/serde.py measures ours.

Errors, for the error taxonomy in sagesf.errors:
- `SerdeError` (a `Permanent` and a `ValueError`): these bytes or this record can never be
  (de)serialised: no magic byte, truncated or trailing bytes, a schema id the registry does not
  know, a record that does not fit the schema. A consumer loop dead-letters the message.
- `SchemaRegistrationError`: our schema has no id under its subject (not registered, or refused
  as incompatible): a deployment problem, fatal at start, never per message.
- `Retriable`: the registry did not answer (network, 5xx); the same call may work later.

Limits: Avro only, no schema references (`sagesf.schemas.schema_json` gives self-contained
schemas), no Confluent rules/metadata/encryption, no GUID-framed (magic byte 1) messages. Caches
grow with the number of distinct writer ids seen, which the registry keeps small. Safe to share
between threads (the caches only ever gain equal entries).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from decimal import Decimal
from io import BytesIO
from typing import Any, overload
from urllib.parse import urlsplit, urlunsplit

import fastavro
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx  # the client's HTTP library
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException

from sagesf.errors import AuthenticationError, Permanent, Retriable, SchemaRegistrationError
from sagesf.schemas import PRIMITIVE_TYPES, load_schema, schema_json

__all__ = [
    "MAGIC_BYTE",
    "AvroSerde",
    "SchemaRegistrationError",
    "SerdeError",
    "decimal_bytes",
    "decimal_fields",
    "topic_subject",
]

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")  # magic byte, schema id
_HEADER_SIZE = _HEADER.size
# what fastavro raises on bytes that do not decode, or a record that does not encode
_AVRO_ERRORS = (
    EOFError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    StopIteration,
    OverflowError,
    struct.error,
    SchemaResolutionError,  # the writer schema cannot be read as ours (another record on the topic)
)


class SerdeError(Permanent, ValueError):
    """These bytes (or this record) can never be (de)serialised: dead-letter the message."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)


def _refused_credentials(exc: SchemaRegistryError, where: str) -> None:
    """401/403: our registry credentials are wrong; waiting will not make them right."""
    if exc.http_status_code in (401, 403):
        raise AuthenticationError(
            f"SAGESF_REGISTRY__BASIC_AUTH_USER / __BASIC_AUTH_PASSWORD: {where} refused our credentials "
            f"(HTTP {exc.http_status_code})"
        ) from None


def topic_subject(topic: str, is_key: bool = False) -> str:
    """Confluent's TopicNameStrategy: `<topic>-key` for keys, `<topic>-value` for values."""
    return f"{topic}-{'key' if is_key else 'value'}"


def _safe_url(client: SchemaRegistryClient) -> str:
    """The registry URL(s) for messages, without any user:password part."""
    urls = []
    conf = client.config()  # type: ignore[no-untyped-call]  # untyped in confluent-kafka
    for url in str(conf.get("url", "?")).split(","):
        parts = urlsplit(url.strip())
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        urls.append(urlunsplit((parts.scheme, netloc, parts.path, "", "")))
    return ",".join(urls)


def decimal_fields(schema: Any) -> dict[str, int]:
    """Top-level fields of a parsed record schema that are Avro bytes decimals, with their scale."""
    found: dict[str, int] = {}
    for fld in schema.get("fields", []) if isinstance(schema, dict) else []:
        branches = fld["type"] if isinstance(fld["type"], list) else [fld["type"]]
        for branch in branches:
            if (
                isinstance(branch, dict)
                and branch.get("logicalType") == "decimal"
                and branch.get("type") == "bytes"
            ):
                found[fld["name"]] = int(branch.get("scale", 0))
    return found


_DECIMAL_BYTES: dict[tuple[Decimal, int], bytes] = {}


def decimal_bytes(value: Decimal, scale: int) -> bytes:
    """The Avro encoding of a decimal: the unscaled value, two's-complement big-endian, exactly.

    What fastavro computes for a Decimal datum, done here in a third of the time (and remembered:
    quantities repeat), because records such as an InventoryLevel carry several; a value with more
    decimals than `scale` is a SerdeError, as fastavro's own check makes it.
    """
    found = _DECIMAL_BYTES.get((value, scale))
    if found is not None:
        return found
    try:
        scaled = value.scaleb(scale)
        unscaled = int(scaled)
    except (ArithmeticError, ValueError) as exc:  # NaN, infinity
        raise SerdeError(f"{value} is not a decimal Avro can hold: {exc}") from None
    if unscaled != scaled:
        raise SerdeError(f"{value} has more than {scale} decimals")
    found = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    if len(_DECIMAL_BYTES) > 50_000:
        _DECIMAL_BYTES.clear()
    _DECIMAL_BYTES[(value, scale)] = found
    return found


class AvroSerde:
    """Encode/decode one subject's records: Confluent framing + fastavro schemaless Avro.

    `schema` is the self-contained schema text, exactly what `sagesf schemas register` registers
    (`sagesf.schemas.schema_json(name)`): a lookup must send the same text. `parsed` is the same
    schema parsed by fastavro (`sagesf.schemas.load_schema(name)`, cached there); it is parsed
    from `schema` when not given.
    """

    def __init__(
        self,
        registry: SchemaRegistryClient,
        schema: str,
        subject: str,
        *,
        auto_register: bool,
        parsed: Any = None,
    ) -> None:
        self.registry = registry
        self.schema = schema
        self.subject = subject
        self.auto_register = auto_register
        self.parsed: Any = parsed if parsed is not None else fastavro.parse_schema(json.loads(schema))
        self._header: bytes | None = None
        self._schema_id: int | None = None
        self._decimals = tuple(decimal_fields(self.parsed).items())
        # writer schema id -> (writer schema, reader schema or None when they are the same)
        self._readers: dict[int, tuple[Any, Any]] = {}

    @classmethod
    def canonical(
        cls,
        registry: SchemaRegistryClient,
        name: str,
        topic: str,
        *,
        auto_register: bool,
        is_key: bool = False,
    ) -> AvroSerde:
        """The serde of canonical schema `name` (schemas/<name>.avsc, or a primitive such as `string`)."""
        parsed = None if name in PRIMITIVE_TYPES else load_schema(name)
        return cls(
            registry,
            schema_json(name),
            topic_subject(topic, is_key),
            auto_register=auto_register,
            parsed=parsed,
        )

    @classmethod
    def string_key(cls, registry: SchemaRegistryClient, topic: str, *, auto_register: bool) -> AvroSerde:
        """The serde of a topic's string keys (Avro `"string"`, subject `<topic>-key`)."""
        return cls(registry, '"string"', topic_subject(topic, is_key=True), auto_register=auto_register)

    # --- the schema id -----------------------------------------------------------------------

    @property
    def schema_id(self) -> int:
        """This serde's schema id in the registry (registered or looked up on first use)."""
        if self._schema_id is None:
            self._schema_id = self._fetch_id()
            self._header = _HEADER.pack(MAGIC_BYTE, self._schema_id)
            self._readers.setdefault(self._schema_id, (self.parsed, None))
        return self._schema_id

    def _fetch_id(self) -> int:
        schema = Schema(self.schema, "AVRO")
        where = f"subject '{self.subject}' of the schema registry at {_safe_url(self.registry)}"
        try:
            if self.auto_register:
                return int(self.registry.register_schema(self.subject, schema))
            found = self.registry.lookup_schema(self.subject, schema).schema_id
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise SchemaRegistrationError(
                    f"the schema is not registered under {where}: run `sagesf schemas register` "
                    f"(registry answered: {exc.error_message})"
                ) from None
            _refused_credentials(exc, where)
            if exc.http_status_code in (409, 422):
                raise SchemaRegistrationError(
                    f"the registry refused the schema for {where}: {exc.error_message}"
                ) from None
            raise Retriable(f"schema registry error for {where}: {exc}") from exc
        except httpx.TransportError as exc:
            raise Retriable(f"schema registry unreachable for {where}: {exc}") from exc
        if found is None:
            raise SchemaRegistrationError(f"the registry answered a lookup under {where} without a schema id")
        return found

    # --- encode ------------------------------------------------------------------------------

    @overload
    def encode(self, record: None) -> None: ...
    @overload
    def encode(self, record: Any) -> bytes: ...

    def encode(self, record: Any) -> bytes | None:
        """Confluent-framed Avro bytes of `record`; None stays None (a tombstone)."""
        if record is None:
            return None
        header = self._header
        if header is None:
            self.schema_id  # noqa: B018 - resolves the id and the header once
            header = self._header
            assert header is not None
        if self._decimals and isinstance(record, dict):
            record = self._with_decimal_bytes(record)
        out = BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, self.parsed, record)
        except _AVRO_ERRORS as exc:
            raise SerdeError(f"record does not fit the schema of subject '{self.subject}': {exc!r}") from exc
        return out.getvalue()

    def _with_decimal_bytes(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record (a copy) with its top-level Decimal fields already in their Avro bytes."""
        record = dict(record)
        for name, scale in self._decimals:
            number = record.get(name)
            if isinstance(number, Decimal):
                record[name] = decimal_bytes(number, scale)
        return record

    # --- decode ------------------------------------------------------------------------------

    @overload
    def decode(self, data: None) -> None: ...
    @overload
    def decode(self, data: bytes) -> Any: ...

    def decode(self, data: bytes | None) -> Any:
        """The record in Confluent-framed Avro `data`, read with this serde's schema; None stays None."""
        if data is None:
            return None
        try:
            magic, schema_id = _HEADER.unpack_from(data)
        except struct.error:
            raise SerdeError(
                f"{len(data)} bytes are too short for the Confluent wire format (5-byte header)"
            ) from None
        if magic != MAGIC_BYTE:
            raise SerdeError(f"not Confluent wire format: magic byte {magic}, expected {MAGIC_BYTE}")
        schemas = self._readers.get(schema_id)
        if schemas is None:
            schemas = self._reader_for(schema_id)
        body = BytesIO(data)
        body.seek(_HEADER_SIZE)
        try:
            record = schemaless_reader(body, schemas[0], schemas[1])
        except _AVRO_ERRORS as exc:
            raise SerdeError(
                f"bytes do not decode with schema id {schema_id} (subject '{self.subject}'): {exc!r}"
            ) from exc
        if body.tell() != len(data):
            raise SerdeError(
                f"{len(data) - body.tell()} trailing bytes after the record with schema id {schema_id}"
            )
        return record

    def _reader_for(self, schema_id: int) -> tuple[Any, Any]:
        """Fetch and parse writer schema `schema_id` once; pair it with this serde's schema."""
        try:
            writer = self.registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            _refused_credentials(exc, f"the schema registry at {_safe_url(self.registry)}")
            if exc.http_status_code == 404:
                raise SerdeError(
                    f"schema id {schema_id} is unknown to the registry at {_safe_url(self.registry)}"
                ) from None
            raise Retriable(f"schema registry error fetching schema id {schema_id}: {exc}") from exc
        except httpx.TransportError as exc:
            raise Retriable(f"schema registry unreachable fetching schema id {schema_id}: {exc}") from exc
        if (writer.schema_type or "AVRO") != "AVRO" or writer.references:
            raise SerdeError(
                f"schema id {schema_id} is a {writer.schema_type} schema"
                f"{' with references' if writer.references else ''}; this serde reads self-contained Avro"
            )
        try:
            parsed = fastavro.parse_schema(json.loads(writer.schema_str or ""))
        except (ValueError, TypeError, KeyError, SchemaParseException) as exc:
            raise SerdeError(f"schema id {schema_id} is not a valid Avro schema: {exc}") from exc
        schemas = (parsed, None) if parsed == self.parsed else (parsed, self.parsed)
        self._readers[schema_id] = schemas
        return schemas


class AvroDecoder:
    """A `SinkLoop` decoder for one topic's Avro key and value.

    Fills `rec.key` and `rec.value` (the value passed through `parse`, e.g. into a command type);
    a tombstone (null value) is Permanent unless `allow_tombstones`. Bad bytes raise SerdeError,
    which is Permanent: the loop dead-letters the record with stage VALUE_CONVERTER.
    """

    def __init__(
        self,
        key_serde: AvroSerde,
        value_serde: AvroSerde,
        parse: Callable[[Any], Any] | None = None,
        *,
        allow_tombstones: bool = False,
    ) -> None:
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.parse = parse
        self.allow_tombstones = allow_tombstones

    @classmethod
    def for_topic(
        cls,
        registry: SchemaRegistryClient,
        topic: str,
        value_schema: str,
        *,
        auto_register: bool,
        parse: Callable[[Any], Any] | None = None,
    ) -> AvroDecoder:
        """String keys and canonical `value_schema` values of `topic`."""
        return cls(
            AvroSerde.string_key(registry, topic, auto_register=auto_register),
            AvroSerde.canonical(registry, value_schema, topic, auto_register=auto_register),
            parse,
        )

    def __call__(self, rec: Any) -> None:
        rec.key = self.key_serde.decode(rec.key_bytes) if rec.key_bytes is not None else None
        if rec.value_bytes is None:
            if not self.allow_tombstones:
                raise Permanent(
                    "a tombstone (null value) is not a record this stage can handle", field="value"
                )
            rec.value = None
            return
        value = self.value_serde.decode(rec.value_bytes)
        rec.value = self.parse(value) if self.parse is not None else value
