"""Avro schema compatibility with messages a person can act on.

Owns one question: can data written with one schema be read with another? `incompatibilities`
answers it with a list of problems (empty = compatible), each naming where in the schema it is
(`SalesOrder.lines[].unit_price`) and why. `backward_incompatibilities(new, old)` is the rule the
project's schemas and registry subjects follow (BACKWARD: consumers on the new schema read
everything written with the old one).

How it works: the verdict comes from the Apache `avro` package's
`avro.compatibility.ReaderWriterCompatibilityChecker` (a port of Avro's Java
`SchemaCompatibility`, the same rules a Confluent registry applies). That checker reports
locations as index pointers (`/fields/3/type`) and merges them into sets, losing which message
belongs to which location, so this module walks reader and writer side by side to name each
problem, asking the checker at every step whether that part is compatible. If the walk ever
finds nothing where the checker found something, the checker's own messages are returned, so a
problem is never hidden.

Limits and additions:
- Stricter than Avro and the registry on logical types, which Avro's rules ignore: a decimal
  whose scale changes, whose precision shrinks, or that gains or loses the decimal logical type,
  and a long that switches between timestamp-millis and timestamp-micros, keep the same bytes
  but change their meaning, so they are reported.
- Default values are not type-checked here (Avro's parser accepts a string default on an int);
  a schema's own validity is the loader's business (sagesf.schemas).
- One reader/writer pair at a time: transitive checks over many versions are the caller's loop.
"""

from __future__ import annotations

import json
from typing import Any

import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityType,
    lookup_writer_field,
    schema_name_equals,
)
from avro.errors import AvroException

__all__ = ["InvalidSchemaError", "backward_incompatibilities", "incompatibilities"]

_NAMED = {"record", "enum", "fixed"}
# Logical types whose meaning changes the reading of the same bytes: switching between them is
# reported even though Avro's rules (which see only the physical type) accept it.
_TIME_LOGICAL_TYPES = {
    "timestamp-millis",
    "timestamp-micros",
    "local-timestamp-millis",
    "local-timestamp-micros",
}


class InvalidSchemaError(ValueError):
    """A schema given for a compatibility check is not valid Avro; the message says which side."""


def incompatibilities(reader_schema: str, writer_schema: str) -> list[str]:
    """Problems reading data written with `writer_schema` using `reader_schema`; empty = compatible.

    Both arguments are Avro schema JSON texts, self-contained (named types defined inline, as
    `sagesf.schemas.schema_json` gives them). Raises InvalidSchemaError if either does not parse.
    """
    reader = _parse(reader_schema, "reader")
    writer = _parse(writer_schema, "writer")
    return _Explainer().explain(reader, writer)


def backward_incompatibilities(new: str, old: str) -> list[str]:
    """Problems with `new` reading data written with `old` (Avro/Confluent BACKWARD); empty = fine."""
    return incompatibilities(reader_schema=new, writer_schema=old)


def _parse(text: str, side: str) -> Any:
    try:
        json.loads(text)
    except (TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"{side} schema is not JSON: {exc}") from None
    try:
        return avro.schema.parse(text)
    except AvroException as exc:
        raise InvalidSchemaError(f"{side} schema is not valid Avro: {exc}") from None


def _describe(schema: Any) -> str:
    """A short name for a schema in messages: `io.sagesf.canonical.Address`, `bytes (decimal 15,2)`."""
    t = schema.type
    if t in _NAMED:
        return f"{t} {schema.fullname}"
    if t == "union":
        return "[" + ", ".join(_describe(b) for b in schema.schemas) + "]"
    if t == "array":
        return f"array<{_describe(schema.items)}>"
    if t == "map":
        return f"map<{_describe(schema.values)}>"
    logical = schema.props.get("logicalType")
    if logical == "decimal":
        return f"{t} (decimal {schema.props.get('precision')},{schema.props.get('scale', 0)})"
    if logical:
        return f"{t} ({logical})"
    return str(t)


class _Explainer:
    """Walks reader and writer together; the Avro checker decides, this names the place and reason."""

    def __init__(self) -> None:
        self._checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
        # pairs being walked, so a recursive type does not loop; a type used in several places
        # (Address as bill_to and ship_to) is explained at each place
        self._in_progress: set[tuple[int, int]] = set()
        self._logical_problems = 0  # found by this module's additions, not by Avro's rules

    def explain(self, reader: Any, writer: Any) -> list[str]:
        verdict = self._checker.get_compatibility(reader, writer)
        root = reader.name if reader.type in _NAMED else ""
        problems = self._walk(reader, writer, root)
        avro_found = verdict.compatibility is SchemaCompatibilityType.incompatible
        if avro_found and len(problems) == self._logical_problems:
            # The walk missed what the checker saw: never hide it, even if less readable.
            where = ", ".join(sorted(verdict.locations))
            problems += [f"{where or '/'}: {msg}" for msg in sorted(verdict.messages)]
        return problems

    def _compatible(self, reader: Any, writer: Any) -> bool:
        result = self._checker.get_compatibility(reader, writer)
        return bool(result.compatibility is not SchemaCompatibilityType.incompatible)

    def _walk(self, reader: Any, writer: Any, path: str) -> list[str]:
        key = (id(reader), id(writer))
        if key in self._in_progress:
            return []  # a recursive type meets itself: its problems are reported at the outer level
        self._in_progress.add(key)
        try:
            return self._walk_pair(reader, writer, path)
        finally:
            self._in_progress.discard(key)

    def _walk_pair(self, reader: Any, writer: Any, path: str) -> list[str]:
        where = path or "(top level)"
        rt, wt = reader.type, writer.type

        if rt == wt == "union":
            problems: list[str] = []
            for branch in writer.schemas:
                problems += self._union_branch(reader, branch, path)
            return problems
        if wt == "union":
            # every value the writer may have written must be readable
            problems = []
            for branch in writer.schemas:
                if not self._compatible(reader, branch) and branch.type != rt:
                    problems.append(
                        f"{where}: written data may hold {_describe(branch)} here, but the reader "
                        f"accepts only {_describe(reader)} (make the reader a union that includes it)"
                    )
                else:
                    problems += self._walk(reader, branch, path)
            return problems
        if rt == "union":
            return self._union_branch(reader, writer, path)

        if rt != wt:
            if self._compatible(reader, writer):  # Avro promotion: int -> long, float, double; ...
                return []
            return [
                f"{where}: type changed from {_describe(writer)} to {_describe(reader)}, which Avro "
                "cannot convert when reading old data"
            ]

        if rt == "record":
            return self._record(reader, writer, path)
        if rt == "enum":
            return self._enum(reader, writer, where)
        if rt == "fixed":
            problems = self._name(reader, writer, where)
            if reader.size != writer.size:
                problems.append(f"{where}: fixed size changed from {writer.size} to {reader.size}")
            return problems + self._logical(reader, writer, where)
        if rt == "array":
            return self._walk(reader.items, writer.items, f"{path}[]")
        if rt == "map":
            return self._walk(reader.values, writer.values, f"{path}{{}}")
        return self._logical(reader, writer, where)

    def _name(self, reader: Any, writer: Any, where: str) -> list[str]:
        if schema_name_equals(reader, writer):
            return []
        return [
            f"{where}: {reader.type} name changed from {writer.fullname} to {reader.fullname} "
            f"(keep the name, or list {writer.fullname!r} in the reader's aliases)"
        ]

    def _record(self, reader: Any, writer: Any, path: str) -> list[str]:
        where = path or "(top level)"
        problems = self._name(reader, writer, where)
        for field in reader.fields:
            writer_field = lookup_writer_field(writer_schema=writer, reader_field=field)
            field_path = f"{path}.{field.name}" if path else field.name
            if writer_field is None:
                if not field.has_default:
                    problems.append(
                        f"{field_path}: field is new and has no default, so data written with the old "
                        "schema has no value for it (give it a default)"
                    )
                continue
            problems += self._walk(field.type, writer_field.type, field_path)
        return problems

    def _enum(self, reader: Any, writer: Any, where: str) -> list[str]:
        problems = self._name(reader, writer, where)
        missing = sorted(set(writer.symbols) - set(reader.symbols))
        default = reader.props.get("default")
        if missing and not (default and default in reader.symbols):
            problems.append(
                f"{where}: enum {reader.fullname} lost symbol(s) {', '.join(missing)} that old data may "
                "hold (keep them, or give the enum a default symbol)"
            )
        return problems

    def _union_branch(self, reader_union: Any, writer: Any, path: str) -> list[str]:
        """Why no branch of the reader union can read `writer` (nothing if one can)."""
        if self._compatible(reader_union, writer):
            # no Avro problem, but a matching branch may still change a logical type
            for branch in reader_union.schemas:
                if self._same_kind(branch, writer) and self._compatible(branch, writer):
                    return self._walk(branch, writer, path)
            return []
        for branch in reader_union.schemas:
            if self._same_kind(branch, writer):
                return self._walk(branch, writer, path)  # the closest branch says what changed
        return [
            f"{path or '(top level)'}: written data may hold {_describe(writer)} here, but the "
            f"reader's union {_describe(reader_union)} has no branch for it"
        ]

    @staticmethod
    def _same_kind(reader: Any, writer: Any) -> bool:
        if reader.type != writer.type:
            return False
        return reader.type not in _NAMED or bool(schema_name_equals(reader, writer))

    def _logical(self, reader: Any, writer: Any, where: str) -> list[str]:
        """Same physical type, different meaning: Avro accepts these, the data would be misread."""
        problems = self._logical_changes(reader, writer, where)
        self._logical_problems += len(problems)
        return problems

    @staticmethod
    def _logical_changes(reader: Any, writer: Any, where: str) -> list[str]:
        r_logical = reader.props.get("logicalType")
        w_logical = writer.props.get("logicalType")
        if "decimal" in (r_logical, w_logical):
            if r_logical != w_logical:
                return [
                    f"{where}: logical type changed from {_describe(writer)} to "
                    f"{_describe(reader)}, so stored values would be read with another meaning"
                ]
            r_scale, w_scale = reader.props.get("scale", 0), writer.props.get("scale", 0)
            r_prec, w_prec = reader.props.get("precision"), writer.props.get("precision")
            if r_scale != w_scale:
                return [
                    f"{where}: decimal scale changed from {w_scale} to {r_scale}, so old "
                    "values would be read off by a power of ten"
                ]
            if isinstance(r_prec, int) and isinstance(w_prec, int) and r_prec < w_prec:
                return [
                    f"{where}: decimal precision lowered from {w_prec} to {r_prec}, so old values may not fit"
                ]
            return []
        if r_logical != w_logical and {r_logical, w_logical} <= _TIME_LOGICAL_TYPES:
            return [
                f"{where}: logical type changed from {w_logical} to {r_logical}, so "
                "old timestamps would be read in the wrong unit"
            ]
        return []
