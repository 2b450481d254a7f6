"""What two spellings of one name, phone, address or item code have in common.

What it owns: the normal forms the linker compares: `company_name` (case, punctuation, accents,
`&`/and, legal forms such as Inc/LLC/Ltd dropped, abbreviations expanded, a leading "The"),
`phone` (the ten digits of a US number, extensions and country code dropped), `street` (house
number and street words, street types and directions abbreviated one way, suite lines dropped),
`postal_code` (the five-digit ZIP), and `item_code` (case, spaces, dashes and zero padding).

Why our own: cleanco (company legal forms) is the one maintained library close to this, and it
covers legal forms only; abbreviations, street types and Sage's cut columns need tables of
their own anyway, and these are a few lines each.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["company_name", "item_code", "item_description", "phone", "postal_code", "street"]

# legal forms, written any way (dots and commas are gone by the time these are looked at)
_LEGAL_FORMS = frozenset(
    [
        "inc",
        "incorporated",
        "llc",
        "lc",
        "ltd",
        "limited",
        "corp",
        "corporation",
        "co",
        "company",
        "lp",
        "llp",
        "plc",
        "pllc",
        "pc",
        "gmbh",
        "sa",
    ]
)
_WORDS = {
    "intl": "international", "mfg": "manufacturing", "bros": "brothers", "svcs": "services",
    "svc": "service", "dist": "distribution", "assoc": "associates", "assocs": "associates",
    "labs": "laboratories", "lab": "laboratories", "tech": "technologies", "ind": "industrial",
    "equip": "equipment", "eng": "engineering", "constr": "construction", "mtn": "mountain",
    "mt": "mount", "st": "saint", "ft": "fort", "n": "north", "s": "south", "e": "east", "w": "west",
    "prods": "products", "sply": "supply", "sys": "systems", "ctr": "center", "centre": "center",
    "and": "&",
}  # fmt: skip
_STREET_WORDS = {
    "street": "st", "avenue": "ave", "av": "ave", "boulevard": "blvd", "road": "rd", "drive": "dr",
    "parkway": "pkwy", "pky": "pkwy", "lane": "ln", "court": "ct", "highway": "hwy", "place": "pl",
    "circle": "cir", "square": "sq", "terrace": "ter", "north": "n", "south": "s", "east": "e",
    "west": "w", "saint": "st", "mount": "mt",
}  # fmt: skip
_UNIT = re.compile(r"\b(suite|ste|unit|bldg|building|floor|fl|room|rm|apt|#)\s*#?\s*\w*$")


def _ascii_words(text: str) -> list[str]:
    """Lower-case words of `text`, accents folded, `&` kept as a word, other punctuation dropped."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    folded = folded.replace("&", " & ").replace("'", "")
    return re.sub(r"[^a-z0-9&]+", " ", folded).split()


def company_name(name: str | None) -> str:
    """`name` in normal form: "ACME Corp." and "Acme Corporation" both give "acme"."""
    words = [_WORDS.get(w, w) for w in _ascii_words(name or "")]
    if words[:1] == ["the"]:
        words = words[1:]
    while len(words) > 1 and words[-1] in _LEGAL_FORMS:
        words.pop()
    return " ".join(words)


def phone(text: str | None) -> str:
    """The ten digits of a US phone number ("+1 (303) 555-0110 x12" -> "3035550110"); "" for none."""
    main = re.split(r"(?i)\s*(?:x|ext\.?|extension)\s*\d+\s*$", text or "")[0]
    digits = re.sub(r"\D", "", main)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return digits if len(digits) == 10 else ""


def street(line1: str | None, line2: str | None = None) -> str:
    """The street of an address: house number and street words, types abbreviated, the suite
    (on its own line or at the end of the first) left out."""
    first = (line1 or "").splitlines()[0] if line1 else ""
    words = _ascii_words(_UNIT.sub("", first.lower().replace("#", " # ")).strip())
    words = [w for w in words if w != "#"]
    return " ".join(_STREET_WORDS.get(w, w) for w in words)


def postal_code(text: str | None) -> str:
    """The five-digit ZIP of `text` ("80202-1234" -> "80202"); "" when there is none."""
    digits = re.sub(r"\D", "", text or "")
    return digits[:5] if len(digits) >= 5 else ""


def item_code(code: str | None) -> str:
    """An item code without case, spaces, punctuation or zero padding ("HRDW-01000" -> "hrdw1000")."""
    text = re.sub(r"[^a-z0-9]", "", (code or "").lower())
    return re.sub(r"(?<![0-9])0+(?=[0-9])", "", text)


def item_description(text: str | None) -> str:
    """An item's description as sorted words, punctuation and case gone ("Hinge - Small" -> "hinge small")."""
    return " ".join(sorted(_ascii_words(text or "")))
