"""How the sink numbers a customer it creates in Sage 100 (AR_Customer.CustomerNo, S20).

Owns the configurable numbering schemes:
- `sequence`: a prefix and a zero-padded sequence, `SF` + 6 digits -> SF000001, SF000002...;
  the next number is one above the highest CustomerNo of the division with that prefix.
- `name`: derived from the customer name, as Sage users often do: the name's letters and
  digits, upper-case, cut to `name_length` (ACME HARDWARE INC. -> ACMEHARD); when taken, the
  stem shortened and a counter appended (ACMEHA01, ACMEHA02...). A name with no letter or digit
  falls back to the sequence.

How it works: `next_number(division, name)` asks `SageReads` for the numbers already used under
the prefix (one key-range query) and picks the first free one. It is a proposal, not a lock: the
writer re-checks inside its write (SQL: in the transaction; BOI: `nSetKey` says new or existing)
and answers Retriable when the number was taken meanwhile, so the sink proposes again. When the
scheme has no number left it says so as `Permanent`: no retry can make one, widening it can.

Limits: Sage's own next-customer-number setting is not used (the `sequence` scheme serves the
same purpose without a counter both sides must share). Numbers are not reused after deletion
only as long as the highest number stays in the table.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from connectors.sage100.reads import SageReads
from sagesf.errors import Permanent

__all__ = ["CustomerNumbering"]

CUSTOMER_NO_LENGTH = 20
_NOT_ALNUM = re.compile(r"[^A-Z0-9]+")


@dataclass(frozen=True)
class CustomerNumbering:
    scheme: Literal["sequence", "name"] = "sequence"
    prefix: str = "SF"
    digits: int = 6
    name_length: int = 8

    def __post_init__(self) -> None:
        if not self.prefix or len(self.prefix) + self.digits > CUSTOMER_NO_LENGTH:
            raise ValueError(f"customer numbers are 1-{CUSTOMER_NO_LENGTH} characters: prefix + digits")
        if not 3 <= self.name_length <= CUSTOMER_NO_LENGTH:
            raise ValueError(f"name_length must be 3-{CUSTOMER_NO_LENGTH}")

    def next_number(self, reads: SageReads, ar_division_no: str, name: str) -> str:
        if self.scheme == "name":
            stem = _NOT_ALNUM.sub("", name.upper())[: self.name_length]
            if stem:
                return self._from_name(reads, ar_division_no, stem)
        return self._sequence(reads, ar_division_no)

    def _sequence(self, reads: SageReads, division: str) -> str:
        used = reads.customer_numbers(division, self.prefix)
        highest = 0
        for number in used:
            suffix = number[len(self.prefix) :]
            if suffix.isdigit() and len(suffix) == self.digits:
                highest = max(highest, int(suffix))
        if highest + 1 >= 10**self.digits:
            raise Permanent(
                f"customer numbers up to {self.prefix}{'9' * self.digits} are exhausted; widen the "
                "numbering scheme (SAGESF_SAGE_SINK__NUMBERING_DIGITS or _PREFIX)",
                field="CustomerNo",
            )
        return f"{self.prefix}{highest + 1:0{self.digits}d}"

    def _from_name(self, reads: SageReads, division: str, stem: str) -> str:
        base = stem[: max(1, self.name_length - 2)]
        used = set(reads.customer_numbers(division, base))
        if stem not in used:
            return stem
        for n in range(1, 100):
            candidate = f"{base}{n:02d}"
            if candidate not in used:
                return candidate
        return self._sequence(reads, division)
