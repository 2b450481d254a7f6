"""Text Sage 100 can store: its single-byte code page (Windows-1252 by default), and the folding of
what it cannot store to the closest character it can.

What it owns: `for_sage(text, ...)`, the one rule every text field on its way to Sage goes
through (addresses, mapped fields, and every other text of an order or customer): folded by
`fold_to_code_page` and the change noted, or refused (`Permanent`) where the mappings set a field
to `outside_code_page: error`.

Limits: folding drops accents (NFKD) and maps a few letters that have no decomposition (ł, ø,
đ); anything else outside the code page (CJK, emoji) becomes '?'.
"""

from __future__ import annotations

import unicodedata

from processors.sync_message import Changes
from sagesf.errors import Permanent

__all__ = ["fold_to_code_page", "for_sage"]

# letters that Unicode does not decompose into a base letter and an accent
_NO_DECOMPOSITION = {"ł": "l", "Ł": "L", "ø": "o", "Ø": "O", "đ": "d", "Đ": "D", "ß": "ss"}


def _storable(text: str, code_page: str) -> bool:
    try:
        text.encode(code_page)
    except UnicodeEncodeError:
        return False
    return True


def fold_to_code_page(text: str, code_page: str) -> str:
    """`text` with every character the code page cannot store replaced (accent dropped, else '?')."""
    out = []
    for ch in text:
        if _storable(ch, code_page):
            out.append(ch)
            continue
        base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
        base = _NO_DECOMPOSITION.get(ch, base)
        out.append(base if base and _storable(base, code_page) else "?")
    return "".join(out)


def for_sage(
    text: str, code_page: str, where: str, *, refuse: bool = False, changes: Changes | None = None
) -> str:
    """`text` as Sage stores it: folded (and noted in `changes`), or Permanent when `refuse`."""
    folded = fold_to_code_page(text, code_page)
    if folded == text:
        return text
    if refuse:
        bad = ", ".join(repr(ch) for ch in dict.fromkeys(ch for ch in text if not _storable(ch, code_page)))
        raise Permanent(f"{where} has {bad}, which Sage 100 cannot store", field=where, value=text)
    if changes is not None:
        changes.folded(where, folded)
    return folded
