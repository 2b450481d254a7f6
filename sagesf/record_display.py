"""Decoding any Kafka key or value for a human: Avro through the registry, else text, else hex.

What it owns: turning the bytes of a record from any topic into something an operator can read,
without knowing the topic's schema in advance. The operator commands (`sagesf dlq show`,
`sagesf trace`) use it; pipeline code uses `sagesf.serde.AvroSerde`, which reads with a fixed
reader schema and fails loudly.

How it works: Confluent-framed bytes (magic byte 0 + 4-byte schema id) are decoded with the
*writer* schema fetched from the registry by that id (no reader schema, so no resolution: you see
what was written). Anything else, or framed bytes that do not decode, is shown as UTF-8 text when
it is printable text, else as hex. Writer schemas are fetched once per id. When the registry is
unreachable the decoder stops asking (one note, not one timeout per record) and shows raw bytes.
`to_display_text` renders decoded values as JSON, with decimals, times and UUIDs as strings.

Limits: Avro only (no Protobuf or JSON Schema framing), no schema references; hex is cut at
`max_hex` bytes. A value that happens to start with byte 0 and decode by chance with some
registered schema would be shown as Avro; the whole buffer must be consumed, which makes that
unlikely.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from io import BytesIO
from typing import Any, Literal
from uuid import UUID

import fastavro
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx  # the client's HTTP library
from confluent_kafka.schema_registry.error import SchemaRegistryError
from fastavro import schemaless_reader

__all__ = ["Decoded", "WireDecoder", "to_display_text"]

_HEADER = struct.Struct(">bI")
_PRINTABLE_CONTROL = {"\n", "\r", "\t"}


@dataclass(frozen=True)
class Decoded:
    """One key or value, decoded as far as possible.

    kind: `avro` (value is the decoded record), `text` (value is the string), `hex` (value is the
    hex string, maybe cut), `null` (no bytes at all: a tombstone or no key).
    """

    kind: Literal["avro", "text", "hex", "null"]
    value: Any
    schema_id: int | None = None
    schema_name: str | None = None
    note: str | None = None

    def text(self, *, indent: int | None = 2) -> str:
        """The value as one string for display (JSON for records, `null` for no bytes)."""
        if self.kind == "null":
            return "null"
        if self.kind == "avro":
            if isinstance(self.value, str):
                return self.value
            return to_display_text(self.value, indent=indent)
        return str(self.value)

    def label(self) -> str:
        """How it was decoded, e.g. `avro io.sagesf.canonical.SalesOrder (schema id 3)`."""
        if self.kind == "avro":
            name = f" {self.schema_name}" if self.schema_name else ""
            return f"avro{name} (schema id {self.schema_id})"
        note = f"; {self.note}" if self.note else ""
        return f"{self.kind}{note}"


def _default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return repr(value)


def to_display_text(value: Any, *, indent: int | None = 2) -> str:
    """JSON for a decoded Avro value; decimals, dates, times, UUIDs and bytes become strings."""
    return json.dumps(value, default=_default, indent=indent, ensure_ascii=False)


@dataclass(frozen=True)
class _NoSchema:
    """Why a schema id gave no writer schema (kept apart from primitive schemas, which are str)."""

    reason: str


def _schema_name(parsed: Any) -> str | None:
    if isinstance(parsed, dict):
        name = parsed.get("name")
        return str(name) if name else None
    return parsed if isinstance(parsed, str) else None


class WireDecoder:
    """Decodes bytes of any topic for display; `registry` None means raw text/hex only."""

    def __init__(self, registry: SchemaRegistryClient | None, *, max_hex: int = 256) -> None:
        self.registry = registry
        self.max_hex = max_hex
        self._writers: dict[int, Any] = {}  # schema id -> parsed writer schema, or _NoSchema
        self._registry_down: _NoSchema | None = None  # set once the registry could not be reached

    def decode(self, data: bytes | None) -> Decoded:
        if data is None:
            return Decoded("null", None)
        note = None
        if len(data) >= _HEADER.size and data[0] == 0:
            schema_id = _HEADER.unpack_from(data)[1]
            writer = self._writer(schema_id)
            if isinstance(writer, _NoSchema):
                note = writer.reason
            else:
                body = BytesIO(data)
                body.seek(_HEADER.size)
                try:
                    record = schemaless_reader(body, writer, None)
                except Exception as exc:  # noqa: BLE001 - any Avro failure means "show it raw"
                    note = f"schema id {schema_id} does not decode these bytes: {type(exc).__name__}"
                else:
                    if body.tell() == len(data):
                        return Decoded("avro", record, schema_id, _schema_name(writer))
                    note = f"schema id {schema_id} leaves {len(data) - body.tell()} bytes unread"
        return self._raw(data, note)

    def _raw(self, data: bytes, note: str | None) -> Decoded:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            if all(ch.isprintable() or ch in _PRINTABLE_CONTROL for ch in text):
                return Decoded("text", text, note=note)
        shown = data[: self.max_hex].hex(" ")
        if len(data) > self.max_hex:
            shown += f" ... ({len(data)} bytes)"
        return Decoded("hex", shown, note=note)

    @property
    def registry_error(self) -> str | None:
        """Why the registry could not be used, once it failed (then every record is shown raw)."""
        return self._registry_down.reason if self._registry_down is not None else None

    def _writer(self, schema_id: int) -> Any:
        """The parsed writer schema, or a _NoSchema saying why there is none."""
        if schema_id in self._writers:
            return self._writers[schema_id]
        if self.registry is None:
            return _NoSchema("no schema registry configured")
        if self._registry_down is not None:
            return self._registry_down
        try:
            schema = self.registry.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code != 404:
                self._registry_down = _NoSchema(f"schema registry error: {exc.error_message}")
                return self._registry_down
            found: Any = _NoSchema(f"schema id {schema_id} is unknown to the registry")
        except httpx.TransportError as exc:
            self._registry_down = _NoSchema(f"schema registry unreachable ({type(exc).__name__})")
            return self._registry_down
        else:
            if (schema.schema_type or "AVRO") != "AVRO" or schema.references:
                found = _NoSchema(f"schema id {schema_id} is not a self-contained Avro schema")
            else:
                try:
                    found = fastavro.parse_schema(json.loads(schema.schema_str or ""))
                except Exception as exc:  # noqa: BLE001 - a broken schema is shown as a note
                    found = _NoSchema(f"schema id {schema_id} does not parse: {type(exc).__name__}")
        self._writers[schema_id] = found
        return found
