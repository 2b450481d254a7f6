"""SOQL execution: resolve a parsed query against the schema, filter, sort and shape the records.

What it owns: `QueryEngine.run(text, include_deleted, version, hidden=...)`, which returns the total size and
every matching record in the REST API's shape (`attributes`, selected fields in the declared
case, parent paths as nested objects or null, child subqueries as `{"totalSize", "done",
"records"}` or null). The REST layer pages the list (nextRecordsUrl).

Semantics follow Salesforce's where they are observable:
- names are case-insensitive; unknown object: INVALID_TYPE; unknown field or relationship:
  INVALID_FIELD; a field selected twice: MALFORMED_QUERY "duplicate field selected";
- a literal of the wrong kind for its field (a quoted number, a quoted date, a string on a boolean,
  a date on a datetime field, a malformed ID) is INVALID_QUERY_FILTER_OPERATOR, as Salesforce
  answers "value of filter criterion for field ... must be of type ...";
- text comparisons (=, !=, <, >, IN, LIKE) are case-insensitive, IDs compare exactly and accept
  15- or 18-character forms; `!=` and NOT IN also match null values, other operators never do;
- TODAY, YESTERDAY, TOMORROW, LAST_N_DAYS:n (today and the n days before), NEXT_N_DAYS:n
  (the n days after today) are day ranges in UTC;
- ORDER BY sorts nulls first ascending and last descending unless NULLS FIRST/LAST says otherwise;
  without ORDER BY records come in creation order;
- `query` skips deleted records, `queryAll` includes them (IsDeleted = true), also in subqueries;
- OFFSET above 2000: NUMBER_OUTSIDE_VALID_RANGE; FIELDS(ALL|CUSTOM) needs LIMIT <= 200;
- `hidden` record IDs (records the caller may not see: the admin API's hide-records fault, a
  stand-in for sharing) are left out of the top-level rows, before LIMIT and counting.

Limits: no GROUP BY/HAVING, polymorphic TYPEOF, SOSL, multi-currency or user time zones (date
literals use UTC). Aggregates work only over the whole result. Child subqueries return all their
rows in one response (Salesforce may page large child sets separately).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.salesforce import ids
from sandbox.salesforce.metadata import NUMBER_TYPES, STRING_TYPES, FieldDef, ObjectDef, OrgSchema
from sandbox.salesforce.records import Record, RecordStore
from sandbox.salesforce.soql import (
    BoolOp,
    Comparison,
    Condition,
    FieldRef,
    FunctionCall,
    Literal,
    Not,
    OrderItem,
    Select,
    SoqlSyntaxError,
    SubQuery,
    parse,
)
from sandbox.salesforce.values import ApiError, parse_date, parse_datetime

MAX_OFFSET = 2000
FIELDS_FUNCTION_LIMIT = 200
AGGREGATES = frozenset({"COUNT", "COUNT_DISTINCT", "MIN", "MAX", "SUM", "AVG"})
Predicate = Callable[[Record], bool]

_TYPE_WORD = {
    "string": "string",
    "textarea": "string",
    "email": "string",
    "phone": "string",
    "url": "string",
    "picklist": "string",
    "boolean": "boolean",
    "int": "int",
    "double": "double",
    "currency": "double",
    "percent": "double",
    "date": "date",
    "datetime": "dateTime",
    "id": "id",
    "reference": "id",
}


_RELATIONSHIP_HINT = (
    "If you are attempting to use a custom relationship, be sure to append the '__r' after the custom "
    "relationship name. Please reference your WSDL or the describe call for the appropriate names."
)


def invalid_field(name: str, obj: ObjectDef) -> ApiError:
    return ApiError(
        "INVALID_FIELD",
        f"No such column '{name}' on entity '{obj.name}'. If you are attempting to use a custom field, be "
        "sure to append the '__c' after the custom field name. Please reference your WSDL or the describe "
        "call for the appropriate names.",
    )


def _invalid_type(name: str) -> ApiError:
    return ApiError(
        "INVALID_TYPE",
        f"sObject type '{name}' is not supported. If you are attempting to use a custom object, be sure to "
        "append the '__c' after the entity name. Please reference your WSDL or the describe call for the "
        "appropriate names.",
    )


def _filter_error(f: FieldDef, quoted: bool) -> ApiError:
    word = _TYPE_WORD.get(f.type, f.type)
    how = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
    return ApiError(
        "INVALID_QUERY_FILTER_OPERATOR",
        f"value of filter criterion for field '{f.name}' must be of type {word} and {how}",
    )


def _day_range(fn: str, today: date) -> tuple[date, date]:
    """[start, end) of a date literal such as TODAY or LAST_N_DAYS:7."""
    if fn == "TODAY":
        return today, today + timedelta(days=1)
    if fn == "YESTERDAY":
        return today - timedelta(days=1), today
    if fn == "TOMORROW":
        return today + timedelta(days=1), today + timedelta(days=2)
    name, _, count = fn.partition(":")
    n = int(count)
    if name == "LAST_N_DAYS":
        return today - timedelta(days=n), today + timedelta(days=1)
    if name == "NEXT_N_DAYS":
        return today + timedelta(days=1), today + timedelta(days=n + 1)
    raise ApiError("MALFORMED_QUERY", f"unsupported date literal {fn}")


class _Path:
    """A resolved field path: the reference fields to follow, then the final field."""

    def __init__(self, hops: list[FieldDef], objects: list[ObjectDef], final: FieldDef) -> None:
        self.hops = hops
        self.objects = objects  # objects[0] is the queried object, objects[i+1] the target of hops[i]
        self.final = final

    def value(self, rec: Record, store: RecordStore) -> Any:
        current: Record | None = rec
        for hop in self.hops:
            target = current.get(hop.name) if current is not None else None
            current = store.get(target) if target is not None else None
            if current is None:
                return None
        return current.get(self.final.name) if current is not None else None


class QueryEngine:
    def __init__(self, store: RecordStore) -> None:
        self.store = store
        self.schema: OrgSchema = store.schema

    # ---- entry -------------------------------------------------------------------------------
    def run(
        self, text: str, include_deleted: bool, version: str, hidden: Collection[str] = ()
    ) -> tuple[int, list[dict[str, Any]]]:
        """(totalSize, records) of a SOQL query; ApiError for an invalid one."""
        select = self._parse(text)
        obj = self._object(select.sobject)
        self._check_clauses(select)
        items = self._expand(select, obj)
        predicate = self._condition(select.where, obj, include_deleted) if select.where else None
        rows = self._rows(obj, select.where, predicate, include_deleted)
        if hidden:
            rows = [rec for rec in rows if rec["Id"] not in hidden]
        aggregates = [i for i in items if isinstance(i, FunctionCall)]
        if aggregates:
            return self._aggregate(select, obj, items, rows)
        rows = self._sort(rows, select.order, obj)
        rows = self._slice(rows, select)
        shaper = self._shaper(obj, items, include_deleted, version)
        return len(rows), [shaper(rec) for rec in rows]

    def sobject(self, text: str) -> ObjectDef:
        """The object a query selects FROM; ApiError when the query is malformed or the object unknown."""
        return self._object(self._parse(text).sobject)

    def flat_columns(self, text: str) -> list[tuple[str, FieldDef]]:
        """The columns of a query whose rows are flat (a Bulk API 2.0 query job): each selected
        field's canonical dotted path (`Account.Name`) and its field, in the order selected.
        ApiError for what such a job refuses: parent-to-child subqueries, aggregate functions,
        FIELDS() and OFFSET."""
        select = self._parse(text)
        obj = self._object(select.sobject)
        if select.offset is not None:
            raise ApiError("MALFORMED_QUERY", "OFFSET is not supported by Bulk API 2.0 query jobs")
        if any(isinstance(i, FunctionCall) and i.name == "FIELDS" for i in select.items):
            raise ApiError("MALFORMED_QUERY", "FIELDS() is not supported by Bulk API 2.0 query jobs")
        columns: list[tuple[str, FieldDef]] = []
        for item in self._expand(select, obj):
            if isinstance(item, SubQuery):
                raise ApiError(
                    "MALFORMED_QUERY",
                    "parent-to-child relationship queries are not supported by Bulk API 2.0 query jobs",
                )
            if isinstance(item, FunctionCall):
                raise ApiError("MALFORMED_QUERY", "aggregate functions are not supported by Bulk API 2.0")
            columns.append((".".join(self._canonical(item, obj)), self._path(item, obj).final))
        return columns

    @staticmethod
    def _parse(text: str) -> Select:
        try:
            return parse(text)
        except SoqlSyntaxError as err:
            raise ApiError("MALFORMED_QUERY", str(err)) from None

    def _object(self, name: str) -> ObjectDef:
        obj = self.schema.get(name)
        if obj is None or obj.is_event:
            raise _invalid_type(name)
        return obj

    def _check_clauses(self, select: Select) -> None:
        if select.offset is not None and select.offset > MAX_OFFSET:
            raise ApiError("NUMBER_OUTSIDE_VALID_RANGE", f"Maximum SOQL offset allowed is {MAX_OFFSET}")

    # ---- names -------------------------------------------------------------------------------
    def _path(self, ref: FieldRef, obj: ObjectDef) -> _Path:
        current = obj
        hops: list[FieldDef] = []
        objects = [obj]
        for part in ref.path[:-1]:
            hop = current.parent_field(part)
            if hop is None or hop.reference_to is None:
                raise ApiError(
                    "INVALID_FIELD",
                    f"Didn't understand relationship '{part}' in field path. {_RELATIONSHIP_HINT}",
                )
            hops.append(hop)
            current = self.schema.objects[hop.reference_to]
            objects.append(current)
        final = current.find_field(ref.path[-1])
        if final is None:
            raise invalid_field(ref.path[-1], current)
        return _Path(hops, objects, final)

    def _expand(self, select: Select, obj: ObjectDef) -> list[FieldRef | FunctionCall | SubQuery]:
        items: list[FieldRef | FunctionCall | SubQuery] = []
        seen: set[str] = set()
        for item in select.items:
            if isinstance(item, FunctionCall) and item.name == "FIELDS":
                kind = item.argument.text.upper() if item.argument is not None else ""
                if kind not in ("ALL", "STANDARD", "CUSTOM"):
                    raise ApiError(
                        "MALFORMED_QUERY", f"FIELDS({kind}) is not supported: use ALL, STANDARD or CUSTOM"
                    )
                if kind != "STANDARD" and (select.limit is None or select.limit > FIELDS_FUNCTION_LIMIT):
                    raise ApiError(
                        "MALFORMED_QUERY",
                        f"The SOQL FIELDS function must have a LIMIT of at most {FIELDS_FUNCTION_LIMIT}",
                    )
                for f in obj.fields.values():
                    if (kind == "ALL" or (kind == "CUSTOM") == f.custom) and f.name.lower() not in seen:
                        seen.add(f.name.lower())
                        items.append(FieldRef((f.name,)))
                continue
            if isinstance(item, FunctionCall):
                if item.name not in AGGREGATES:
                    raise ApiError("MALFORMED_QUERY", f"unknown function {item.name}")
                if item.argument is not None:
                    self._path(item.argument, obj)
                items.append(item)
                continue
            if isinstance(item, SubQuery):
                rel = obj.child(item.select.sobject)
                if rel is None:
                    raise ApiError(
                        "INVALID_TYPE",
                        f"Didn't understand relationship '{item.select.sobject}' in FROM part of query call. "
                        f"{_RELATIONSHIP_HINT}",
                    )
                key = rel.name.lower()
            else:
                key = ".".join(p.lower() for p in self._canonical(item, obj))
            if key in seen:
                shown = item.select.sobject if isinstance(item, SubQuery) else item.text
                raise ApiError("MALFORMED_QUERY", f"duplicate field selected: {shown}")
            seen.add(key)
            items.append(item)
        plain = [i for i in items if not isinstance(i, FunctionCall)]
        calls = [i for i in items if isinstance(i, FunctionCall)]
        if calls and plain:
            first = plain[0]
            name = first.text if isinstance(first, FieldRef) else first.select.sobject
            raise ApiError("MALFORMED_QUERY", f"Field must be grouped or aggregated: {name}")
        if any(c.name == "COUNT" and c.argument is None for c in calls) and len(calls) > 1:
            raise ApiError("MALFORMED_QUERY", "COUNT() must be the only element in the SELECT list")
        return items

    def _canonical(self, ref: FieldRef, obj: ObjectDef) -> list[str]:
        path = self._path(ref, obj)
        names = [hop.relationship_name or hop.name for hop in path.hops]
        return [*names, path.final.name]

    # ---- WHERE -------------------------------------------------------------------------------
    def _condition(self, cond: Condition, obj: ObjectDef, include_deleted: bool) -> Predicate:
        if isinstance(cond, BoolOp):
            parts = [self._condition(c, obj, include_deleted) for c in cond.operands]
            if cond.op == "AND":
                return lambda rec: all(p(rec) for p in parts)
            return lambda rec: any(p(rec) for p in parts)
        if isinstance(cond, Not):
            inner = self._condition(cond.operand, obj, include_deleted)
            return lambda rec: not inner(rec)
        return self._comparison(cond, obj, include_deleted)

    def _literal(self, f: FieldDef, lit: Literal, op: str) -> Any:
        """The literal converted to the field's comparable form; errors like Salesforce's."""
        if lit.kind == "null":
            if op not in ("=", "!=", "IN", "NOT IN"):
                raise ApiError("MALFORMED_QUERY", f"invalid operator {op} for null on field '{f.name}'")
            return None
        t = f.type
        if t in STRING_TYPES:
            if lit.kind != "string":
                raise _filter_error(f, quoted=True)
            return lit.value.lower()
        if t in ("id", "reference"):
            if lit.kind != "string":
                raise _filter_error(f, quoted=True)
            normal = ids.normalize(lit.value)
            if normal is None:
                raise ApiError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}")
            return normal
        if t == "boolean":
            if lit.kind != "boolean":
                raise _filter_error(f, quoted=False)
            return lit.value
        if t in NUMBER_TYPES:
            if lit.kind != "number":
                raise _filter_error(f, quoted=False)
            return float(lit.value)
        if t == "date":
            if lit.kind == "date_fn":
                return _day_range(lit.value, datetime.now(UTC).date())
            if lit.kind != "date":
                raise _filter_error(f, quoted=False)
            parsed = parse_date(lit.value)
            if parsed is None:
                raise ApiError("MALFORMED_QUERY", f"invalid date: {lit.raw}")
            return parsed
        if t == "datetime":
            if lit.kind == "date_fn":
                start, end = _day_range(lit.value, datetime.now(UTC).date())
                return (
                    datetime(start.year, start.month, start.day, tzinfo=UTC),
                    datetime(end.year, end.month, end.day, tzinfo=UTC),
                )
            if lit.kind != "datetime":
                raise _filter_error(f, quoted=False)
            moment = parse_datetime(lit.value)
            if moment is None:
                raise ApiError("MALFORMED_QUERY", f"invalid datetime: {lit.raw}")
            return moment
        raise _filter_error(f, quoted=False)

    @staticmethod
    def _comparable(f: FieldDef, value: Any) -> Any:
        if value is None:
            return None
        if f.type in STRING_TYPES:
            return str(value).lower()
        if f.type in NUMBER_TYPES:
            return float(value)
        if f.type == "date":
            return parse_date(value)
        if f.type == "datetime":
            return parse_datetime(value)
        return value

    def _comparison(self, cmp: Comparison, obj: ObjectDef, include_deleted: bool) -> Predicate:
        path = self._path(cmp.field, obj)
        f = path.final
        if f.type == "textarea" and f.length > 255:
            raise ApiError("INVALID_FIELD", f"field '{f.name}' can not be filtered in a query call")
        store = self.store
        comparable = self._comparable

        def current(rec: Record) -> Any:
            return comparable(f, path.value(rec, store))

        op = cmp.op
        if op == "LIKE":
            if f.type not in STRING_TYPES and f.type not in ("id", "reference"):
                raise ApiError(
                    "INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on {_TYPE_WORD[f.type]} field: LIKE"
                )
            assert isinstance(cmp.value, Literal)
            regex = re.compile(f"^{cmp.value.like_regex}$", re.IGNORECASE | re.DOTALL)

            def like(rec: Record) -> bool:
                value = path.value(rec, store)
                return value is not None and regex.match(str(value)) is not None

            return like
        if op in ("IN", "NOT IN"):
            if isinstance(cmp.value, Select):
                wanted: set[Any] = self._semi_join(cmp.value, f, include_deleted)
            else:
                assert isinstance(cmp.value, list)
                wanted = {self._literal(f, lit, op) for lit in cmp.value}
            if op == "IN":
                return lambda rec: current(rec) in wanted
            return lambda rec: current(rec) not in wanted
        assert isinstance(cmp.value, Literal)
        target = self._literal(f, cmp.value, op)
        if isinstance(target, tuple):
            start, end = target
            ranges: dict[str, Callable[[Any], bool]] = {
                "=": lambda v: start <= v < end,
                "!=": lambda v: not start <= v < end,
                "<": lambda v: v < start,
                "<=": lambda v: v < end,
                ">": lambda v: v >= end,
                ">=": lambda v: v >= start,
            }
            test = ranges[op]

            def in_range(rec: Record) -> bool:
                value = current(rec)
                if value is None:
                    return op == "!="
                return test(value)

            return in_range
        if target is None:
            if op == "=":
                return lambda rec: path.value(rec, store) is None
            return lambda rec: path.value(rec, store) is not None
        if op == "=":
            return lambda rec: current(rec) == target
        if op == "!=":
            return lambda rec: current(rec) != target
        ordering: dict[str, Callable[[Any], bool]] = {
            "<": lambda v: v < target,
            "<=": lambda v: v <= target,
            ">": lambda v: v > target,
            ">=": lambda v: v >= target,
        }
        check = ordering[op]

        def ordered(rec: Record) -> bool:
            value = current(rec)
            return value is not None and check(value)

        return ordered

    def _semi_join(self, select: Select, outer: FieldDef, include_deleted: bool) -> set[Any]:
        if outer.type not in ("id", "reference"):
            raise ApiError(
                "INVALID_FIELD", f"semi join sub-selects are only supported on ID fields, not {outer.name}"
            )
        obj = self._object(select.sobject)
        if len(select.items) != 1 or not isinstance(select.items[0], FieldRef):
            raise ApiError("MALFORMED_QUERY", "a semi join sub-select selects exactly one ID field")
        path = self._path(select.items[0], obj)
        if path.final.type not in ("id", "reference"):
            raise ApiError(
                "INVALID_FIELD", f"semi join sub-selects must select an ID field, not {path.final.name}"
            )
        predicate = self._condition(select.where, obj, include_deleted) if select.where else None
        rows = self._rows(obj, select.where, predicate, include_deleted=False)
        rows = self._slice(self._sort(rows, select.order, obj), select)
        return {value for rec in rows if (value := path.value(rec, self.store)) is not None}

    def _rows(
        self, obj: ObjectDef, where: Condition | None, predicate: Predicate | None, include_deleted: bool
    ) -> list[Record]:
        candidates = self._candidates(obj, where)
        return [
            rec
            for rec in candidates
            if (include_deleted or not rec.get("IsDeleted")) and (predicate is None or predicate(rec))
        ]

    def _candidates(self, obj: ObjectDef, where: Condition | None) -> Iterable[Record]:
        """All records of the object, or only those an `Id = / Id IN` filter can match."""
        comparisons: list[Comparison] = []
        if isinstance(where, Comparison):
            comparisons = [where]
        elif isinstance(where, BoolOp) and where.op == "AND":
            comparisons = [c for c in where.operands if isinstance(c, Comparison)]
        for cmp in comparisons:
            if len(cmp.field.path) != 1 or cmp.field.path[0].lower() != "id":
                continue
            literals: list[Literal] = []
            if cmp.op == "=" and isinstance(cmp.value, Literal):
                literals = [cmp.value]
            elif cmp.op == "IN" and isinstance(cmp.value, list):
                literals = cmp.value
            else:
                continue
            wanted = []
            for lit in literals:
                normal = ids.normalize(lit.value) if lit.kind == "string" else None
                rec = self.store.get(normal) if normal else None
                if rec is not None and rec.get("attributes_type") == obj.name:
                    wanted.append(rec)
            return sorted(wanted, key=lambda r: str(r["Id"]))
        return list(self.store.of_type(obj.name))

    # ---- ORDER BY, LIMIT, OFFSET ---------------------------------------------------------------
    def _sort(self, rows: list[Record], order: list[OrderItem], obj: ObjectDef) -> list[Record]:
        for item in reversed(order):  # stable sorts, last key first
            path = self._path(item.field, obj)
            # sorted() ascends and `reverse` flips everything, nulls included: choose the null flag
            # so that nulls end up where NULLS FIRST/LAST asks after the flip
            nulls_high = item.nulls_last != item.descending

            def key(rec: Record, path: _Path = path, nulls_high: bool = nulls_high) -> tuple[bool, Any]:
                value = self._comparable(path.final, path.value(rec, self.store))
                return (value is None, value) if nulls_high else (value is not None, value)

            rows = sorted(rows, key=key, reverse=item.descending)
        return rows

    @staticmethod
    def _slice(rows: list[Record], select: Select) -> list[Record]:
        start = select.offset or 0
        end = start + select.limit if select.limit is not None else None
        return rows[start:end]

    # ---- aggregates ------------------------------------------------------------------------------
    def _aggregate(
        self,
        select: Select,
        obj: ObjectDef,
        items: list[FieldRef | FunctionCall | SubQuery],
        rows: list[Record],
    ) -> tuple[int, list[dict[str, Any]]]:
        calls = [i for i in items if isinstance(i, FunctionCall)]
        if len(calls) == 1 and calls[0].name == "COUNT" and calls[0].argument is None:
            total = len(rows)
            if select.limit is not None:
                total = min(total, select.limit)
            return total, []
        out: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        unnamed = 0
        for call in calls:
            if call.alias:
                name = call.alias
            else:
                name = f"expr{unnamed}"
                unnamed += 1
            assert call.argument is not None
            path = self._path(call.argument, obj)
            f = path.final
            values = [v for rec in rows if (v := path.value(rec, self.store)) is not None]
            if call.name in ("SUM", "AVG") and f.type not in NUMBER_TYPES:
                raise ApiError(
                    "MALFORMED_QUERY", f"field {f.name} does not support aggregate operator {call.name}"
                )
            result: Any
            if call.name == "COUNT":
                result = len(values)
            elif call.name == "COUNT_DISTINCT":
                result = len({self._comparable(f, v) for v in values})
            elif not values:
                result = None
            elif call.name == "SUM":
                result = sum(values)
            elif call.name == "AVG":
                result = sum(values) / len(values)
            else:
                pick = min if call.name == "MIN" else max
                result = pick(values, key=lambda v: self._comparable(f, v))
            out[name] = result
        return 1, [out]

    # ---- shaping -----------------------------------------------------------------------------
    def _shaper(
        self,
        obj: ObjectDef,
        items: list[FieldRef | FunctionCall | SubQuery],
        include_deleted: bool,
        version: str,
    ) -> Callable[[Record], dict[str, Any]]:
        plan: list[Callable[[Record, dict[str, Any]], None]] = []
        for item in items:
            if isinstance(item, FieldRef):
                plan.append(self._field_writer(self._path(item, obj), version))
            elif isinstance(item, SubQuery):
                plan.append(self._child_writer(obj, item, include_deleted, version))

        def shape(rec: Record) -> dict[str, Any]:
            out: dict[str, Any] = {"attributes": _attributes(obj.name, rec["Id"], version)}
            for write in plan:
                write(rec, out)
            return out

        return shape

    def _field_writer(self, path: _Path, version: str) -> Callable[[Record, dict[str, Any]], None]:
        store = self.store

        def write(rec: Record, out: dict[str, Any]) -> None:
            container = out
            current: Record | None = rec
            for hop, target_obj in zip(path.hops, path.objects[1:], strict=True):
                name = hop.relationship_name or hop.name
                parent_id = current.get(hop.name) if current is not None else None
                parent = store.get(parent_id) if parent_id is not None else None
                if parent is None:
                    container.setdefault(name, None)
                    return
                nested = container.get(name)
                if nested is None:
                    nested = {"attributes": _attributes(target_obj.name, parent["Id"], version)}
                    container[name] = nested
                container = nested
                current = parent
            assert current is not None
            container[path.final.name] = current.get(path.final.name)

        return write

    def _child_writer(
        self, obj: ObjectDef, sub: SubQuery, include_deleted: bool, version: str
    ) -> Callable[[Record, dict[str, Any]], None]:
        rel = obj.child(sub.select.sobject)
        assert rel is not None
        child = self.schema.objects[rel.child]
        items = self._expand(sub.select, child)
        if any(isinstance(i, FunctionCall | SubQuery) for i in items):
            raise ApiError("MALFORMED_QUERY", "a child subquery selects fields only")
        predicate = self._condition(sub.select.where, child, include_deleted) if sub.select.where else None
        shaper = self._shaper(child, items, include_deleted, version)
        groups: dict[str, list[Record]] | None = None

        def write(rec: Record, out: dict[str, Any]) -> None:
            nonlocal groups
            if groups is None:
                groups = {}
                for row in self.store.of_type(child.name):
                    parent_id = row.get(rel.field)
                    live = include_deleted or not row.get("IsDeleted")
                    if parent_id is not None and live and (predicate is None or predicate(row)):
                        groups.setdefault(parent_id, []).append(row)
            rows = self._slice(self._sort(groups.get(rec["Id"], []), sub.select.order, child), sub.select)
            out[rel.name] = (
                {"totalSize": len(rows), "done": True, "records": [shaper(r) for r in rows]} if rows else None
            )

        return write


def _attributes(sobject: str, record_id: str, version: str) -> dict[str, str]:
    return {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/{record_id}"}
