"""Every conversion between Sage 100 column values and Python values, in one place, exactly.

Owns: decimals (money, quantities, prices), dates, Sage's decimal-hour times ("14.5012" is
14:30:04), the change stamp the source orders rows by, Sage server local time -> UTC, and the
checks a value must pass to fit a Sage column (length, code page, precision, scale).

How it works:
- Decimals never pass through binary floating point. Values read from ODBC arrive as `Decimal`
  (SQL DECIMAL/NUMERIC), `str` (the sandbox stores money as TEXT because the SQLite driver loses
  the scale of DECIMAL columns) or `int`; `to_decimal` makes an exact `Decimal` of each and, given
  the column, quantizes it to the column's scale. A driver that reports a numeric column as a
  double gets `Decimal(repr(x))`: the shortest text that round-trips, exact for Sage's at most 15
  significant digits. Values written go out as `Decimal` quantized to the column's scale
  (`decimal_param`), which pyodbc binds exactly: as text into the sandbox's TEXT columns, as
  DECIMAL into a SQL-backed install.
- Dates: an SQL date over ODBC (`datetime.date`); `to_date` also reads ISO text and Sage's
  stored `YYYYMMDD`.
- Times: TimeCreated/TimeUpdated hold decimal hours as text. `hours_to_time` and `time_to_hours`
  convert; `format_hours` writes the form the database holds (4 decimals, hour zero-padded to two
  digits by default: "09.5012"). `micro_hours` parses the text into an integer count of 1e-6
  hours without Decimal, because the source does it for every row it reads.
- `change_stamp(date, time_text)` is one integer that orders (DateUpdated, TimeUpdated) exactly:
  `date.toordinal() * 24_000_000 + micro_hours`. Comparing ints keeps the poll loop cheap.
- Time zones: Sage stores the server's local wall-clock time. `local_to_utc` uses the configured
  `ZoneInfo`; in the repeated hour when daylight saving time ends the first occurrence is taken
  (fold=0), since the stored value cannot tell the two apart; a time in the skipped hour of the
  spring change (which Sage never writes) is read as if the clock had not moved yet.

Limits: the code page check assumes Windows-1252 (`SAGE_CODEPAGE`; an assumption, see
shared/reference/sage100.md). Decimal-hour precision beyond 1e-6 hours (3.6 ms) is truncated in
change stamps, far below Sage's own resolution (about a third of a second).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from zoneinfo import ZoneInfo

from connectors.sage100.tables import Column, ColumnKind

__all__ = [
    "HOURS_PER_DAY_MICRO",
    "SAGE_CODEPAGE",
    "change_stamp",
    "clock_set_back_start",
    "day_end_stamp",
    "decimal_at",
    "decimal_param",
    "format_hours",
    "hours_to_time",
    "local_to_utc",
    "micro_hours",
    "quantize",
    "stamp_local",
    "stamp_of",
    "stamp_parts",
    "text_value",
    "time_to_hours",
    "to_date",
    "to_decimal",
    "value_problem",
]

SAGE_CODEPAGE = "cp1252"
HOURS_PER_DAY_MICRO = 24_000_000  # change stamps count 1e-6 hours
_MICRO = 1_000_000
_EXPONENTS: dict[int, Decimal] = {s: Decimal(1).scaleb(-s) for s in range(0, 10)}
_DECIMALS: list[dict[str, Decimal]] = [{} for _ in range(10)]  # text -> Decimal, per scale


# --- decimals --------------------------------------------------------------------------------


def to_decimal(value: object, scale: int | None = None) -> Decimal | None:
    """An exact Decimal of a value read from ODBC (None for NULL or blank), at `scale` if given."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, str):
        stripped = value.strip()
        if not stripped:
            return None
        try:
            result = Decimal(stripped)
        except InvalidOperation:
            raise ValueError(f"not a decimal number: {value!r}") from None
    elif isinstance(value, bool):
        raise TypeError("a boolean is not a Sage number")
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest text that reads back as the same double: exact for the at most 15
        # significant digits of a Sage numeric column, which is what the driver rounded from.
        result = Decimal(repr(value))
    else:
        raise TypeError(f"cannot read {type(value).__name__} as a decimal")
    if not result.is_finite():
        raise ValueError(f"not a finite number: {value!r}")
    return result if scale is None else quantize(result, scale)


def decimal_at(value: object, scale: int) -> Decimal | None:
    """`to_decimal(value, scale)`, with a fast path for text already at `scale` ("12.500000").

    The source converts several numbers per row; text the database holds at the column's scale
    (the sandbox, SQL installs) needs no quantize.
    """
    if type(value) is str:
        cache = _DECIMALS[scale] if scale < len(_DECIMALS) else {}
        found = cache.get(value)
        if found is not None:
            return found
        dot = value.find(".")
        if dot >= 0 and len(value) - dot - 1 == scale and "e" not in value and "E" not in value:
            try:
                found = Decimal(value)
            except InvalidOperation:
                raise ValueError(f"not a decimal number: {value!r}") from None
        else:
            found = to_decimal(value, scale)
        if found is not None:
            if len(cache) > 50_000:  # quantities repeat (0, small counts): a bounded memo
                cache.clear()
            cache[value] = found
        return found
    return to_decimal(value, scale)


def quantize(value: Decimal, scale: int) -> Decimal:
    """`value` rounded half-up to `scale` decimals (Sage rounds half away from zero)."""
    exponent = _EXPONENTS.get(scale) or Decimal(1).scaleb(-scale)
    return value.quantize(exponent, rounding=ROUND_HALF_UP)


def decimal_param(value: Decimal | int | str, column: Column) -> Decimal:
    """The parameter to bind for a DECIMAL column: exact, at the column's scale, checked to fit."""
    if column.kind is not ColumnKind.DECIMAL:
        raise TypeError(f"{column.name} is not a decimal column")
    number = to_decimal(value)
    if number is None:
        raise ValueError(f"{column.name}: a number is required")
    problem = value_problem(column, number)
    if problem:
        raise ValueError(problem)
    assert column.scale is not None
    return quantize(number, column.scale)


# --- text ------------------------------------------------------------------------------------


def text_value(value: object) -> str | None:
    """A text column as read: trailing blanks removed (ProvideX pads), '' kept as ''."""
    if value is None:
        return None
    return str(value).rstrip()


def typed_value(column: Column, value: object) -> str | Decimal | date | None:
    """A value read from `column` in the form the sink writes it: a decimal at the column's scale,
    a date, or text with trailing blanks removed (so a read and a write compare equal)."""
    if column.kind is ColumnKind.DECIMAL:
        return to_decimal(value, column.scale)
    if column.kind is ColumnKind.DATE:
        return to_date(value)
    return text_value(value)


def value_problem(column: Column, value: object) -> str | None:
    """Why `value` does not fit `column` (naming the column and value), or None when it fits."""
    if value is None:
        return None
    if column.kind in (ColumnKind.TEXT, ColumnKind.TIME):
        text = str(value)
        assert column.length is not None
        if len(text) > column.length:
            return f"{column.name}={text!r} is {len(text)} characters; Sage allows {column.length}"
        try:
            text.encode(SAGE_CODEPAGE)
        except UnicodeEncodeError as exc:
            bad = text[exc.start : exc.end]
            return f"{column.name}={text!r}: {bad!r} cannot be stored in Sage's code page ({SAGE_CODEPAGE})"
        return None
    if column.kind is ColumnKind.DATE:
        return None if isinstance(value, date) else f"{column.name}={value!r} is not a date"
    try:
        number = to_decimal(value)
    except (TypeError, ValueError) as exc:
        return f"{column.name}={value!r}: {exc}"
    if number is None:
        return None
    assert column.precision is not None
    assert column.scale is not None
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)
    if -exponent > column.scale and number != quantize(number, column.scale):
        return f"{column.name}={number} has more than {column.scale} decimals"
    integer_digits = len(str(abs(int(number)))) if int(number) else 0
    if integer_digits > column.integer_digits:
        return (
            f"{column.name}={number} does not fit N{column.precision}.{column.scale} "
            f"(at most {column.integer_digits} digits before the point)"
        )
    return None


# --- dates and decimal-hour times ----------------------------------------------------------


def to_date(value: object) -> date | None:
    """A date read from ODBC (date, datetime, ISO text or Sage's stored YYYYMMDD); None for blank."""
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text or text == "00000000":
            return None
        if len(text) == 8 and text.isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:]))
        return date.fromisoformat(text[:10])
    raise TypeError(f"cannot read {type(value).__name__} as a date")


def micro_hours(text: str | None) -> int:
    """Decimal-hour text ("14.5012", "9.5", " 9.5012") as an integer count of 1e-6 hours.

    Blank or NULL is 0 (start of day), so a row without a time sorts first within its date.
    """
    if not text:
        return 0
    text = text.strip()
    if not text:
        return 0
    whole, _, frac = text.partition(".")
    try:
        micro = int(whole or "0") * _MICRO + (int(frac[:6].ljust(6, "0")) if frac else 0)
    except ValueError:
        raise ValueError(f"not a decimal-hour time: {text!r}") from None
    if not 0 <= micro < HOURS_PER_DAY_MICRO:
        raise ValueError(f"decimal-hour time outside a day: {text!r}")
    return micro


def hours_to_time(text: str | Decimal | None) -> time:
    """Sage decimal hours as a time of day: "14.5012" -> 14:30:04.320."""
    if text is None:
        return time(0)
    micro = micro_hours(str(text)) if not isinstance(text, Decimal) else int(text * _MICRO)
    microseconds = micro * 3600  # 1e-6 h = 3600 microseconds, exactly
    return (datetime.min + timedelta(microseconds=microseconds)).time()


def time_to_hours(value: time | datetime) -> Decimal:
    """A time of day as exact decimal hours (unrounded: 14:30:04 -> 14.501111...)."""
    seconds = Decimal(value.hour * 3600 + value.minute * 60 + value.second) + Decimal(
        value.microsecond
    ) / Decimal(_MICRO)
    return seconds / Decimal(3600)


def format_hours(value: time | datetime | Decimal, places: int = 4, pad: str = "0") -> str:
    """Decimal-hour text as Sage stores it: `places` decimals, truncated (Sage's clock never
    runs ahead), the hour padded to two characters with `pad` ("0" -> "09.5012", "" -> "9.5012")."""
    hours = value if isinstance(value, Decimal) else time_to_hours(value)
    exponent = _EXPONENTS.get(places) or Decimal(1).scaleb(-places)
    truncated = hours.quantize(exponent, rounding=ROUND_DOWN)
    text = f"{truncated:.{places}f}"
    if pad and text.index(".") == 1:
        text = pad + text
    return text


_MICRO_HOURS: dict[str | None, int] = {}
_ORDINALS: dict[date, int] = {}


def change_stamp(day: date | None, time_text: str | None) -> int:
    """(DateUpdated, TimeUpdated) as one integer that orders exactly; 0 when there is no date."""
    if day is None:
        return 0
    # rows changed together share dates and times: remember the parsed values (bounded)
    micro = _MICRO_HOURS.get(time_text)
    if micro is None:
        if len(_MICRO_HOURS) > 100_000:
            _MICRO_HOURS.clear()
        micro = _MICRO_HOURS[time_text] = micro_hours(time_text)
    ordinal = _ORDINALS.get(day)
    if ordinal is None:
        if len(_ORDINALS) > 10_000:
            _ORDINALS.clear()
        ordinal = _ORDINALS[day] = day.toordinal() * HOURS_PER_DAY_MICRO
    return ordinal + micro


def day_end_stamp(day: object) -> int:
    """The last change stamp of a date (0 for anything that is not one)."""
    if not isinstance(day, date):
        return 0
    return (day.toordinal() + 1) * HOURS_PER_DAY_MICRO - 1


def stamp_parts(stamp: int) -> tuple[date, int]:
    """The date and 1e-6-hour count of a change stamp."""
    ordinal, micro = divmod(stamp, HOURS_PER_DAY_MICRO)
    return date.fromordinal(max(ordinal, 1)), micro


def stamp_local(stamp: int) -> datetime:
    """A change stamp as the naive local datetime it stands for."""
    day, micro = stamp_parts(stamp)
    return datetime.combine(day, time(0)) + timedelta(microseconds=micro * 3600)


def local_to_utc(local: datetime, zone: ZoneInfo) -> datetime:
    """Sage server wall-clock time -> aware UTC (the first occurrence in the repeated DST hour)."""
    return local.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _offset(moment: datetime, zone: ZoneInfo) -> timedelta:
    offset = moment.astimezone(zone).utcoffset()
    assert offset is not None
    return offset


def clock_set_back_start(local: datetime, now_utc: datetime, zone: ZoneInfo) -> datetime | None:
    """Where the repeated local period starts, if the wall clock was set back at or after `local`.

    When daylight saving time ends the local clock repeats an hour (01:00-02:00 twice), so rows
    written in the second pass carry smaller local times than rows written just before. Returns
    the naive local time at which the repeated period starts (01:00) when `local` lies in a
    repeated period, or the zone's UTC offset at `now_utc` is smaller than at `local` (the clock
    went back since); otherwise None. The source re-reads from there, so nothing written in the
    repeated hour is missed.
    """
    first = local.replace(tzinfo=zone, fold=0)
    second = local.replace(tzinfo=zone, fold=1)
    off_first, off_second = first.utcoffset(), second.utcoffset()
    assert off_first is not None
    assert off_second is not None
    start_utc = first.astimezone(UTC)
    if off_first > off_second:  # `local` is ambiguous: the transition is within the next hour(s)
        lo, hi = start_utc, start_utc + (off_first - off_second)
    elif _offset(now_utc, zone) < off_first:
        lo, hi = start_utc, now_utc
    else:
        return None
    off_lo = _offset(lo, zone)
    if _offset(hi, zone) == off_lo:
        return None
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if _offset(mid, zone) == off_lo:
            lo = mid
        else:
            hi = mid
    return hi.astimezone(zone).replace(tzinfo=None, microsecond=0)


def stamp_of(moment: datetime) -> int:
    """The change stamp of a naive local datetime (truncated to 1e-6 hours)."""
    micro = (moment.hour * 3600 + moment.minute * 60 + moment.second) * _MICRO + moment.microsecond
    return moment.date().toordinal() * HOURS_PER_DAY_MICRO + micro // 3600
