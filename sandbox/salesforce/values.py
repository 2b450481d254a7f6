"""Field values as Salesforce accepts and returns them, and Salesforce's error bodies.

What it owns: `ApiError` (one `{"message", "errorCode", "fields"}` entry) and `coerce`, which turns
an incoming JSON or CSV value into the stored form of its field type, with Salesforce's error codes:
STRING_TOO_LONG, INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST, INVALID_EMAIL_ADDRESS,
NUMBER_OUTSIDE_VALID_RANGE, MALFORMED_ID, JSON_PARSER_ERROR (a JSON value of the wrong kind) and
INVALID_TYPE_ON_FIELD_IN_RECORD (a CSV value of the wrong kind). Stored forms: text as str,
numbers as int/float rounded to the field's scale, dates `YYYY-MM-DD`, datetimes in UTC as
`YYYY-MM-DDTHH:MM:SS.sss+0000` (the REST API's own format), IDs in their 18-character form.

Limits: no locale-specific number or date formats in CSV; URL and phone values are not checked;
emails are checked with a simple pattern, not Salesforce's exact rules.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from sandbox.salesforce import ids
from sandbox.salesforce.metadata import NUMBER_TYPES, STRING_TYPES, FieldDef

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?\s*(Z|[+-]\d{2}:?\d{2})?$"
)
CSV_NULL = "#N/A"


@dataclass
class ApiError(Exception):
    """One Salesforce error; raised alone or collected into a `RecordError`."""

    error_code: str
    message: str
    fields: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.error_code}: {self.message}"

    def rest(self) -> dict[str, Any]:
        """The entry of a REST error body: `[{"message", "errorCode", "fields"}]`."""
        return {"message": self.message, "errorCode": self.error_code, "fields": self.fields}

    def result(self) -> dict[str, Any]:
        """The entry of a per-record result (Collections, upsert): `{"statusCode", ...}`."""
        return {"statusCode": self.error_code, "message": self.message, "fields": self.fields}


class RecordError(Exception):
    """A record failed validation or a DML rule; carries every error found for it."""

    def __init__(self, errors: list[ApiError], status: int = 400, matches: list[str] | None = None) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors
        self.status = status
        self.matches = matches or []  # the records an upsert matched when it answers 300


def now_utc() -> datetime:
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def format_datetime(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_datetime(text: str) -> datetime | None:
    """A datetime from ISO 8601 (`Z`, `+hh:mm`, `+hhmm` or no zone meaning UTC), or None."""
    found = _DATETIME.match(text.strip())
    if found is None:
        if _DATE.match(text.strip()):
            try:
                return datetime.fromisoformat(text.strip()).replace(tzinfo=UTC)
            except ValueError:
                return None
        return None
    day, hour, minute, second, fraction, zone = found.groups()
    try:
        base = datetime.fromisoformat(f"{day}T{hour}:{minute}:{second or '00'}")
    except ValueError:
        return None
    if fraction:
        base = base.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    offset = timedelta(0)
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        digits = zone[1:].replace(":", "")
        offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return (base - offset).replace(tzinfo=UTC)


def parse_date(text: str) -> date | None:
    if not _DATE.match(text.strip()):
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        return None


def _wrong_kind(f: FieldDef, value: Any, csv: bool, kind: str) -> ApiError:
    if csv:
        return ApiError(
            "INVALID_TYPE_ON_FIELD_IN_RECORD", f"{f.label}: value not of required type: {value}", [f.name]
        )
    source = (
        "VALUE_STRING"
        if isinstance(value, str)
        else "VALUE_NUMBER"
        if not isinstance(value, bool)
        else "VALUE_TRUE"
    )
    return ApiError(
        "JSON_PARSER_ERROR",
        f"Cannot deserialize instance of {kind} from {source} value {value} or request may be missing a "
        f"required field at [line:1, column:1]",
    )


def _number(f: FieldDef, value: Any, csv: bool) -> int | float:
    if isinstance(value, bool):
        raise _wrong_kind(f, value, csv, "double")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise _wrong_kind(f, value, csv, "double") from None
    else:
        raise _wrong_kind(f, value, csv, "double")
    if math.isnan(number) or math.isinf(number):
        raise _wrong_kind(f, value, csv, "double")
    if f.type == "int":
        if number != int(number):
            raise _wrong_kind(f, value, csv, "int")
        whole = int(number)
        if len(str(abs(whole))) > (f.precision or 9):
            raise ApiError(
                "NUMBER_OUTSIDE_VALID_RANGE",
                f"{f.label}: value outside of valid range on numeric field: {value}",
                [f.name],
            )
        return whole
    # Salesforce rounds half up; Python's round() would round half to even
    rounded = float(Decimal(repr(number)).quantize(Decimal(1).scaleb(-f.scale), rounding=ROUND_HALF_UP))
    integer_digits = len(str(int(abs(rounded)))) if abs(rounded) >= 1 else 0
    if f.precision and integer_digits > f.precision - f.scale:
        raise ApiError(
            "NUMBER_OUTSIDE_VALID_RANGE",
            f"{f.label}: value outside of valid range on numeric field: {value}",
            [f.name],
        )
    return rounded


def coerce(f: FieldDef, value: Any, csv: bool = False) -> Any:
    """The stored form of `value` for field `f`; raises ApiError. None stays None (null)."""
    if value is None:
        return None
    if isinstance(value, dict | list):
        start = "START_OBJECT" if isinstance(value, dict) else "START_ARRAY"
        raise ApiError(
            "JSON_PARSER_ERROR",
            f"Cannot deserialize instance of {f.type} from {start} value or request may be missing a "
            "required field at [line:1, column:1]",
        )
    if f.type in STRING_TYPES:
        text = value if isinstance(value, str) else _scalar_text(value)
        if text == "":
            return None  # Salesforce stores an empty text value as null
        if f.type == "picklist" and f.restricted and text not in f.values:
            raise ApiError(
                "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                f"{f.label}: bad value for restricted picklist field: {text}",
                [f.name],
            )
        if len(text) > f.length:
            raise ApiError(
                "STRING_TOO_LONG",
                f"{f.label}: data value too large: {text} (max length={f.length})",
                [f.name],
            )
        if f.type == "email" and text and not _EMAIL.match(text):
            raise ApiError("INVALID_EMAIL_ADDRESS", f"{f.label}: invalid email address: {text}", [f.name])
        return text
    if f.type in NUMBER_TYPES:
        return _number(f, value, csv)
    if f.type == "boolean":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise _wrong_kind(f, value, csv, "boolean")
    if f.type == "date":
        if isinstance(value, str):
            parsed_date = parse_date(value)
            if parsed_date is not None:
                return parsed_date.isoformat()
        raise _wrong_kind(f, value, csv, "date")
    if f.type == "datetime":
        if isinstance(value, str):
            parsed = parse_datetime(value)
            if parsed is not None:
                return format_datetime(parsed)
        raise _wrong_kind(f, value, csv, "datetime")
    if f.type in ("id", "reference"):
        if not isinstance(value, str):
            raise _wrong_kind(f, value, csv, "id")
        if value == "":
            return None
        normal = ids.normalize(value)
        if normal is None:
            raise ApiError("MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
        return normal
    raise ApiError("INVALID_FIELD", f"field type {f.type} is not supported", [f.name])


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_csv_text(value: Any) -> str:
    """A stored value as Bulk API result CSVs show it."""
    if value is None:
        return ""
    return _scalar_text(value)
