"""Custom-field values converted between Salesforce and Sage 100, both ways, by their mapping type.

What it owns: `to_sage` and `to_salesforce`, the one place a typed custom field (mapping_model
`CustomField`: text, number, date, datetime, checkbox, picklist, lookup) changes form. They accept
what the sources put into a record's `custom_fields`: the Salesforce source's text
(record_mapper `_text`: `true`/`false`, `12.5`, `2026-03-01`, `2026-03-01T10:00:00.000+0000`) and
the Sage source's text of the column (streams `_text`: `12.50`, `2026-03-01`, `Y`), as well as the
plain Python values (bool, int, Decimal, date, datetime). A value that is not of its type raises
Permanent naming the field and the value: the record is dead-lettered and the pipeline goes on.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sagesf.errors import Permanent

if TYPE_CHECKING:
    from processors.mapping_model import CustomField, ValueMap
    from processors.metadata import SageColumn

__all__ = ["to_sage", "to_salesforce"]

_TRUE = frozenset({"true", "y", "yes", "1"})
_FALSE = frozenset({"false", "n", "no", "0"})
SalesforceValue = bool | int | float | str | None


def to_sage(
    field: CustomField,
    value: Any,
    column: SageColumn | None,
    *,
    values: ValueMap | None = None,
    where: str = "custom field",
) -> str | None:
    """`value` as the text Sage's `column` takes (None: empty). Numbers are plain decimal text at
    the column's scale, dates `YYYY-MM-DD`, checkboxes `Y`/`N`, a datetime goes to a date column
    as its UTC date and to a text column as ISO-8601 (`...Z`); picklist and lookup values go
    through `values` ({Salesforce value: Sage value}). An empty value becomes the field's
    `default` (a Sage value, written as it is). Without `column` (no metadata) text forms are used."""
    if _empty(value):
        return field.default
    where = f"{where} ({field.salesforce or field.sage})"
    if field.type in ("picklist", "lookup"):
        if values is None:
            raise ValueError(f"{where}: a {field.type} field needs its value map")
        text = values.apply(_plain(value), name=field.map or field.lookup or "", where=where)
        return None if text is None else _fits(text, column, where)
    convert = _TO_SAGE[field.type]
    return convert(value, column, where)


def to_salesforce(
    field: CustomField, value: Any, *, values: ValueMap | None = None, where: str = "custom field"
) -> SalesforceValue:
    """`value` (the Sage source's text of the UDF) as a SalesforceCommand field carries it: number
    -> float, checkbox -> bool, date -> `YYYY-MM-DD`, datetime -> ISO-8601 with Z (a date alone is
    its midnight UTC), picklist and lookup through the inverse of `values`, text as it is. None for
    an empty value (the caller leaves it out: Sage never blanks a Salesforce field)."""
    if _empty(value):
        return None
    where = f"{where} ({field.sage or field.salesforce})"
    if field.type in ("picklist", "lookup"):
        if values is None:
            raise ValueError(f"{where}: a {field.type} field needs its value map")
        return values.inverse.apply(_plain(value), name=field.map or field.lookup or "", where=where)
    if field.type == "number":
        return float(_decimal(value, where))
    if field.type == "checkbox":
        return _boolean(value, where)
    if field.type == "date":
        return _date(value, where).isoformat()
    if field.type == "datetime":
        return _datetime(value, where).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _plain(value)


# --- toward Sage, by type -------------------------------------------------------------------


def _text_to_sage(value: Any, column: SageColumn | None, where: str) -> str:
    return _fits(_plain(value), column, where)


def _number_to_sage(value: Any, column: SageColumn | None, where: str) -> str:
    number = _decimal(value, where)
    if column is not None and column.kind == "decimal" and column.scale is not None:
        number = number.quantize(Decimal(1).scaleb(-column.scale), rounding=ROUND_HALF_UP)
        whole = len(str(abs(int(number))))
        if column.precision is not None and whole > column.precision - column.scale:
            raise Permanent(
                f"{where}: {value!r} does not fit {column.name} ({column.describe()})",
                field=where,
                value=str(value),
            )
        return format(number, "f")
    text = format(number.normalize(), "f") if number != 0 else "0"
    return _fits(text, column, where)


def _date_to_sage(value: Any, column: SageColumn | None, where: str) -> str:
    text = _date(value, where).isoformat()
    return text if column is not None and column.kind == "date" else _fits(text, column, where)


def _datetime_to_sage(value: Any, column: SageColumn | None, where: str) -> str:
    moment = _datetime(value, where)
    if column is not None and column.kind == "date":
        return moment.date().isoformat()
    return _fits(moment.strftime("%Y-%m-%dT%H:%M:%SZ"), column, where)


def _checkbox_to_sage(value: Any, column: SageColumn | None, where: str) -> str:
    return _fits("Y" if _boolean(value, where) else "N", column, where)


_TO_SAGE = {
    "text": _text_to_sage,
    "number": _number_to_sage,
    "date": _date_to_sage,
    "datetime": _datetime_to_sage,
    "checkbox": _checkbox_to_sage,
}


# --- reading the forms the sources give -----------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bad(where: str, value: Any, kind: str) -> Permanent:
    return Permanent(f"{where}: {value!r} is not {kind}", field=where, value=str(value))


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool):
        raise _bad(where, value, "a number")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise _bad(where, value, "a number") from None
    if not number.is_finite():
        raise _bad(where, value, "a finite number")
    return number


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise _bad(where, value, "a checkbox value (true/false, Y/N)")


def _date(value: Any, where: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if len(text) > 10 and text[10] not in "T ":
            raise ValueError(text)
        return date.fromisoformat(text[:10])
    except ValueError:
        raise _bad(where, value, "a date (YYYY-MM-DD)") from None


def _datetime(value: Any, where: str) -> datetime:
    """A moment in UTC; a naive one (Sage keeps no zone) is taken as UTC, a date as its midnight."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    else:
        try:
            moment = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise _bad(where, value, "a date-time (ISO-8601)") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _fits(text: str, column: SageColumn | None, where: str) -> str:
    """`text` for a text column (checked against its length); refused for a column of another kind."""
    if column is None:
        return text
    if column.kind != "text":
        raise Permanent(
            f"{where}: {text!r} cannot be written to {column.name} ({column.describe()})",
            field=where,
            value=text,
        )
    if column.length is not None and len(text) > column.length:
        raise Permanent(
            f"{where}: {text!r} is {len(text)} characters; {column.name} holds {column.length}",
            field=where,
            value=text,
        )
    return text
