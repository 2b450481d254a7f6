"""SOQL literals built safely: the one place the connector turns a value into SOQL text.

What it owns: `quote(text)` (a string literal), `quote_like(text, match)` (a LIKE pattern
matching the text literally, with `%`/`_` escaped, exactly or as a prefix, suffix or substring),
`literal(value)` (any Python value the connector compares with: str, bool, int, float, Decimal,
date, datetime, None) and `id_list(values)` (the `(...)` of an IN clause). The sink and the
CDC source build every SOQL value with these; never format a value into SOQL any other way:
an unescaped quote in a name (O'Brien) breaks the query, and a crafted one (`' OR Name != '`)
changes what it selects.

How: Salesforce's string literal escapes (SOQL and SOSL reference, "Quoted String Escape
Sequences"): backslash before `'`, `"` and `\\`; newline, carriage return, tab, backspace and form
feed as `\\n`, `\\r`, `\\t`, `\\b`, `\\f`. In LIKE patterns `\\%` and `\\_` stand for a literal
percent sign and underscore. Datetimes are sent in UTC as `YYYY-MM-DDThh:mm:ssZ` (naive
datetimes are taken as UTC), dates as `YYYY-MM-DD`, both unquoted as SOQL wants them.

Names: field and object names cannot be escaped in SOQL, so every name that reaches a query
(the source's mapping, the sink's command objects and fields) must pass `is_api_name` (one
object, field or relationship name) or `identifier` (a dotted relationship path of them):
letters, digits and single underscores, starting with a letter and not ending with an
underscore, optionally with a namespace prefix (`ns__`) and a suffix (`__c`, `__r`, `__e`, ...),
at most 80 characters a name. `Name FROM Account WHERE Id != null --` is not one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Literal

__all__ = [
    "API_NAME_RULE",
    "id_list",
    "identifier",
    "is_api_name",
    "is_api_path",
    "literal",
    "quote",
    "quote_like",
]

_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
}
_NEEDS_ESCAPE = re.compile("[\\\\'\"\n\r\t\b\f]")
_LIKE = re.compile("[%_]")
# a word: a letter, then letters and digits in runs joined by single underscores
_WORD = r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*"
_API_NAME = re.compile(rf"(?:{_WORD}__)?{_WORD}(?:__[A-Za-z]+)?")
MAX_NAME = 80
API_NAME_RULE = "letters, digits and single underscores, a __c/__r suffix, dotted relationship paths"


def _escape(text: str) -> str:
    return _NEEDS_ESCAPE.sub(lambda m: _ESCAPES[m.group(0)], text)


def quote(text: str) -> str:
    """`text` as a SOQL string literal, quotes included: O'Brien -> 'O\\'Brien'."""
    return f"'{_escape(str(text))}'"


def quote_like(text: str, match: Literal["exact", "prefix", "suffix", "contains"] = "exact") -> str:
    """A LIKE pattern matching `text` literally: exactly, as a prefix, a suffix, or anywhere."""
    body = _LIKE.sub(lambda m: "\\" + m.group(0), _escape(str(text)))
    before = "%" if match in ("suffix", "contains") else ""
    after = "%" if match in ("prefix", "contains") else ""
    return f"'{before}{body}{after}'"


def literal(value: object) -> str:
    """Any supported Python value as a SOQL literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"SOQL has no literal for {value}")
        return format(Decimal(repr(value)), "f")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"SOQL has no literal for {value}")
        return format(value, "f")
    if isinstance(value, datetime):
        moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return quote(value)
    raise TypeError(f"no SOQL literal for {type(value).__name__}")


def id_list(values: Iterable[object]) -> str:
    """`('a', 'b')` for `WHERE Id IN ...`; ValueError when empty (SOQL refuses `IN ()`)."""
    items = [literal(v) for v in values]
    if not items:
        raise ValueError("an IN list needs at least one value")
    return "(" + ", ".join(items) + ")"


def is_api_name(name: object) -> bool:
    """Whether `name` is one object, field or relationship API name (Account, Sage_Item_Code__c)."""
    return isinstance(name, str) and len(name) <= MAX_NAME and _API_NAME.fullmatch(name) is not None


def is_api_path(path: object) -> bool:
    """Whether `path` is an API name or a dotted relationship path of them (Account.ExternalID__c)."""
    return isinstance(path, str) and all(is_api_name(step) for step in path.split("."))


def identifier(name: str) -> str:
    """A field or object API name (or a dotted relationship path), checked, unchanged."""
    if not is_api_path(name):
        raise ValueError(f"{name!r} is not a Salesforce API name ({API_NAME_RULE})")
    return name
