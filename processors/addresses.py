"""Address standardisation: a canonical Address made ready for Sage 100's columns.

What it owns: `standardise(address, rules, where, changes)`, the rules of mappings/addresses.yaml
applied to one canonical Address (a dict as the serde decodes it): text cleaned (trimmed,
whitespace collapsed, characters outside Sage's code page folded by processors/code_page.py, or
refused for a field set to `outside_code_page: error`), case per field, the country turned into
Sage's CountryCode (a name -> ISO-2 -> Sage's 3-character code), the state name into its code,
the street re-flowed into at most three lines of Sage's length at word boundaries, and name, city
and postal code held to their lengths.

How it works: pure functions over dicts; the result is a new dict (the input is not changed).
What folding and truncation changed is noted in `changes` (processors/sync_message.py).
A value that cannot be made to fit under an `error` rule raises `Permanent` naming the address
(`bill_to.line1`) and the reason, which the orders processor dead-letters and shows on the
Salesforce record.

Limits: no postal validation (ZIP+4, postcode formats) and no geocoding; state codes are looked
up for the countries listed in the mapping only; a word longer than a line is cut.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from typing import Any

from processors.code_page import fold_to_code_page, for_sage
from processors.mapping_model import AddressesMapping
from processors.sync_message import Changes
from sagesf.errors import Permanent

__all__ = ["clean_text", "fold_to_code_page", "reflow_lines", "standardise"]

_SPACES = re.compile(r"\s+")
_TEXT_FIELDS = ("name", "line1", "line2", "line3", "city", "state", "postal_code")


def clean_text(value: Any, code_page: str) -> str | None:
    """Trimmed, whitespace-collapsed text in the code page; None when empty."""
    if value is None:
        return None
    text = _SPACES.sub(" ", fold_to_code_page(str(value), code_page)).strip()
    return text or None


def _field_text(value: Any, rules: AddressesMapping, name: str, where: str, changes: Changes) -> str | None:
    """One address field trimmed, whitespace collapsed, in the code page (folded or refused), cased."""
    text = _SPACES.sub(" ", str(value)).strip() if value is not None else ""
    if not text:
        return None
    refuse = rules.outside_code_page.get(name) == "error"  # type: ignore[call-overload]
    text = for_sage(text, rules.code_page, f"{where}.{name}", refuse=refuse, changes=changes)
    return _case(text, rules.case.get(name, "keep"))  # type: ignore[call-overload]


def _case(text: str, how: str) -> str:
    if how == "upper":
        return text.upper()
    if how == "title":
        return text.title()
    return text


def reflow_lines(lines: list[str], width: int, count: int) -> tuple[list[str], bool]:
    """Street lines re-flowed to `count` lines of `width`; True when text was left over."""
    if all(len(line) <= width for line in lines) and len(lines) <= count:
        return lines, False

    def wrap(text: str) -> list[str]:
        return textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)

    chunks = [chunk for line in lines for chunk in wrap(line)]
    if len(chunks) > count:  # keep the lines apart if that fits, else flow them together
        chunks = wrap(" ".join(lines))
    return chunks[:count], len(chunks) > count


def _overflow(value: str, length: int, rule: str, where: str, changes: Changes) -> str:
    if len(value) <= length:
        return value
    if rule == "truncate":
        changes.cut(where, length)
        return value[:length].rstrip()
    raise Permanent(
        f"{where} {value!r} is {len(value)} characters; Sage holds {length}", field=where, value=value
    )


def standardise(
    address: Mapping[str, Any] | None,
    rules: AddressesMapping,
    where: str,
    changes: Changes | None = None,
) -> dict[str, Any] | None:
    """The address as Sage 100 should store it (see the module doc); None stays None."""
    if address is None:
        return None
    changes = changes if changes is not None else Changes()
    out: dict[str, Any] = dict(address)
    for name in _TEXT_FIELDS:
        out[name] = _field_text(address.get(name), rules, name, where, changes)

    country = _country(address.get("country_code"), rules, f"{where}.country_code")
    out["country_code"] = country[1]
    iso = country[0]

    state = out.get("state")
    if state is not None and iso is not None:
        code = rules.states_folded.get(iso, {}).get(state.casefold())
        out["state"] = code or state
    too_long = out.get("state") is not None and len(out["state"]) > 2
    if too_long and iso not in rules.states and rules.other_states == "drop":
        out["state"] = None  # a county or region: Sage's 2-character State cannot hold it
    elif too_long:
        raise Permanent(
            f"{where}.state {out['state']!r} is not a state code Sage can hold (2 characters)"
            + (f"; add it to addresses.yaml states.{iso}" if iso else ""),
            field=f"{where}.state",
            value=out["state"],
        )
    return _lines_and_lengths(out, rules, where, changes)


def _lines_and_lengths(
    out: dict[str, Any], rules: AddressesMapping, where: str, changes: Changes
) -> dict[str, Any]:
    street = [out[k] for k in ("line1", "line2", "line3") if out.get(k)]
    lines, left_over = reflow_lines(street, rules.lines.length, rules.lines.count)
    fits = f"{rules.lines.count} lines of {rules.lines.length}"
    if left_over and rules.lines.overflow == "error":
        raise Permanent(
            f"{where}: the street {' / '.join(street)!r} does not fit {fits} characters",
            field=f"{where}.line1",
            value=" / ".join(street),
        )
    if left_over:
        changes.note(f"{where} street cut to {fits}")
    for i, key in enumerate(("line1", "line2", "line3")):
        out[key] = lines[i] if i < len(lines) and i < rules.lines.count else None

    for name, rule in rules.lengths.items():
        value = out.get(name)
        if value is not None:
            out[name] = _overflow(value, rule.length, rule.overflow, f"{where}.{name}", changes)
    return out


def _country(value: Any, rules: AddressesMapping, where: str) -> tuple[str | None, str | None]:
    """(ISO-2 code, Sage CountryCode) of a country given as name, ISO-2 or Sage code."""
    text = clean_text(value, rules.code_page)
    if text is None:
        return None, None
    upper = text.upper()
    iso = rules.names_folded.get(text.casefold())
    if iso is None and upper in rules.countries:
        iso = upper
    if iso is None:  # already a Sage code?
        iso = next((k for k, v in rules.countries.items() if v == upper), None)
    if iso is not None and iso in rules.countries:
        return iso, rules.countries[iso]
    if rules.unknown_country == "keep" and len(upper) <= 3:
        return None, upper
    raise Permanent(
        f"{where}: country {text!r} has no Sage CountryCode in addresses.yaml `countries`",
        field=where,
        value=text,
    )
