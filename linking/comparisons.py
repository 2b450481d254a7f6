"""How two records are compared: which pairs are looked at (blocking) and the agreement level of
each field (the comparison vector the Fellegi-Sunter model weighs).

What it owns: `CUSTOMERS` and `ITEMS`, each a `Kind`: its comparisons (name and levels, for
reports) and `vector(salesforce, sage)`, and its blocking keys: two records are a candidate pair
when they share at least one key, so a run compares thousands of pairs, not millions.

Customers: name (normal form equal, then token-sort similarity bands, with the Account's name
cut to the Sage name's length when Sage's column cut it), phone (ten digits
equal, the last seven equal, different) and address (street and ZIP as one comparison, since
they change together when a company moves). Blocking: phone, ZIP, the name's first
word, house number with ZIP3. Items: code (normal form equal, one is the other with a prefix,
one edit apart, different), description (same words, similar bands, different) and standard
price (equal, within 10 %, different). Blocking: code, code digits, description.

String similarity is rapidfuzz's (C++, maintained, no dependencies). Names are compared by
token-sort ratio, not Jaro-Winkler: Jaro-Winkler rewards a shared beginning, and different
companies share beginnings ("Kowalski & Sons Welding Supply", "Kowalski and Sons Brewing"):
over 20 generated companies of 2,000 customers it scored such wrong pairs up to 0.9935;
token-sort none above 0.89 (`python bench/linking.py --companies 20`), for 0.2 points of recall
at the automatic threshold.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from rapidfuzz import fuzz
from rapidfuzz.distance import OSA

from linking.model import Vector
from linking.normalise import company_name
from linking.records import Article, Party

__all__ = ["CUSTOMERS", "ITEMS", "SAGE_NAME_LENGTH", "Kind"]

R = TypeVar("R", Party, Article)

SAGE_NAME_LENGTH = 30  # AR_Customer.CustomerName (S30; 50 in newer releases: a longer name was not cut)


@dataclass(frozen=True)
class Kind(Generic[R]):
    """One kind of record pair: its comparisons and its blocking keys."""

    name: str
    comparisons: tuple[str, ...]
    levels: tuple[int, ...]
    vector: Callable[[R, R], Vector]
    keys: Callable[[R], Iterable[str]]


def _similarity(a: str, b: str) -> float:
    if not a or not b:
        return 0.0
    return fuzz.token_sort_ratio(a, b) / 100


def _band(similarity: float, bands: tuple[float, ...]) -> int:
    """Level 1 for the first band reached, 2 for the next...; len(bands) + 1 below them all."""
    for i, floor in enumerate(bands):
        if similarity >= floor:
            return i + 1
    return len(bands) + 1


# --- customers -----------------------------------------------------------------------------------


def _name_level(account: Party, customer: Party) -> int | None:
    if not account.name_key or not customer.name_key:
        return None
    if account.name_key == customer.name_key:
        return 0
    similarity = _similarity(account.name_key, customer.name_key)
    if len(customer.name) >= SAGE_NAME_LENGTH:  # Sage cut it: compare with the Account's name cut too
        cut = company_name(account.name[: len(customer.name)])
        if cut == customer.name_key:
            return 0
        similarity = max(similarity, _similarity(cut, customer.name_key))
    return _band(similarity, (0.96, 0.9, 0.8))


def _phone_level(a: Party, b: Party) -> int | None:
    if not a.phone or not b.phone:
        return None
    if a.phone == b.phone:
        return 0
    return 1 if a.phone[3:] == b.phone[3:] else 2


def _address_level(a: Party, b: Party) -> int | None:
    """Street and ZIP as one comparison (they change together when a company moves): 0 both
    equal, 1 same ZIP and a similar street (same house number), 2 same ZIP, 3 same ZIP3, 4 neither."""
    if not (a.street or a.postal_code) or not (b.street or b.postal_code):
        return None
    same_zip = bool(a.postal_code) and a.postal_code == b.postal_code
    if same_zip and a.street == b.street:
        return 0
    number_a, number_b = a.street.split(" ", 1)[0], b.street.split(" ", 1)[0]
    if same_zip and number_a == number_b and _similarity(a.street, b.street) >= 0.8:
        return 1
    if same_zip:
        return 2
    return 3 if a.postal_code[:3] and a.postal_code[:3] == b.postal_code[:3] else 4


def _customer_vector(account: Party, customer: Party) -> Vector:
    return (
        _name_level(account, customer),
        _phone_level(account, customer),
        _address_level(account, customer),
    )


def _customer_keys(p: Party) -> Iterable[str]:
    if p.phone:
        yield f"p:{p.phone}"
    if p.postal_code:
        yield f"z:{p.postal_code}"
    words = p.name_key.split()
    if words and len(words[0]) >= 3:
        yield f"n:{words[0]}"
    if p.street and p.postal_code:
        yield f"s:{p.street.split(' ', 1)[0]}:{p.postal_code[:3]}"


CUSTOMERS: Kind[Party] = Kind(
    "customer", ("name", "phone", "address"), (5, 3, 5), _customer_vector, _customer_keys
)


# --- items ---------------------------------------------------------------------------------------


def _code_level(a: Article, b: Article) -> int | None:
    if not a.code_key or not b.code_key:
        return None
    if a.code_key == b.code_key:
        return 0
    short, long = sorted((a.code_key, b.code_key), key=len)
    if len(short) >= 5 and long.endswith(short):
        return 1  # a prefix added on one side (SKU-, FG-)
    return 2 if OSA.distance(a.code_key, b.code_key) <= 1 else 3  # one edit or two digits swapped


def _description_level(a: Article, b: Article) -> int | None:
    if not a.description_key or not b.description_key:
        return None
    if a.description_key == b.description_key:
        return 0
    return _band(fuzz.token_sort_ratio(a.description_key, b.description_key) / 100, (0.9, 0.75))


def _price_level(a: Article, b: Article) -> int | None:
    if a.price is None or b.price is None:
        return None
    if a.price == b.price:
        return 0
    return 1 if abs(a.price - b.price) <= max(a.price, b.price) / 10 else 2


def _item_vector(product: Article, item: Article) -> Vector:
    return (_code_level(product, item), _description_level(product, item), _price_level(product, item))


def _item_keys(a: Article) -> Iterable[str]:
    if a.code_key:
        yield f"c:{a.code_key}"
        digits = "".join(re.findall(r"\d+", a.code_key))
        if len(digits) >= 3:
            yield f"d:{digits}"
    if a.description_key:
        yield f"t:{a.description_key}"


ITEMS: Kind[Article] = Kind("item", ("code", "description", "price"), (4, 4, 3), _item_vector, _item_keys)
