"""Salesforce record IDs: 15-character case-sensitive IDs and their 18-character safe form.

How it works: an ID is a 3-character key prefix (`001` Account, `003` Contact, ...), a 2-character
instance part, a reserved `0`, and a 9-character base-62 counter, 15 characters in all. The API
always answers with the 18-character form, whose 3 suffix characters encode which of the first 15
are upper case (5 bits per 5-character chunk, mapped onto `A-Z0-5`), so the ID survives
case-insensitive systems. Input may use either form; `normalize` turns both into the 18-character
form and refuses a suffix that does not match its prefix part (Salesforce's MALFORMED_ID).

Limits: the instance part is fixed (`5e`) and the counter simply increases per key prefix, so IDs
sort in creation order, which real IDs only roughly do.
"""

from __future__ import annotations

import re
import string

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
SUFFIX_ALPHABET = string.ascii_uppercase + "012345"
INSTANCE = "5e"
_ID_SHAPE = re.compile(r"^[a-zA-Z0-9]{15}(?:[A-Z0-5]{3})?$")


def checksum_suffix(id15: str) -> str:
    """The 3 characters that turn a 15-character ID into its 18-character form."""
    suffix = []
    for chunk in range(3):
        bits = 0
        for position, char in enumerate(id15[chunk * 5 : chunk * 5 + 5]):
            if "A" <= char <= "Z":
                bits |= 1 << position
        suffix.append(SUFFIX_ALPHABET[bits])
    return "".join(suffix)


def make_id(prefix: str, number: int) -> str:
    """The 18-character ID number `number` (>= 1) for key prefix `prefix`."""
    if len(prefix) != 3:
        raise ValueError(f"a key prefix has 3 characters, not {prefix!r}")
    digits = []
    value = number
    while value:
        value, rest = divmod(value, 62)
        digits.append(BASE62[rest])
    counter = "".join(reversed(digits)).rjust(9, "0")
    if len(counter) > 9:
        raise ValueError("ID counter overflow")
    id15 = f"{prefix}{INSTANCE}0{counter}"
    return id15 + checksum_suffix(id15)


def normalize(value: str) -> str | None:
    """The 18-character form of a 15- or 18-character ID, or None if `value` is not an ID."""
    if not _ID_SHAPE.match(value):
        return None
    id15 = value[:15]
    suffix = checksum_suffix(id15)
    if len(value) == 18 and value[15:] != suffix:
        return None
    return id15 + suffix


def key_prefix(record_id: str) -> str:
    return record_id[:3]
