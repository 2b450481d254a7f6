"""The Sage side of the credit check: answers CreditCheckRequests (credit.requests.v1) on
credit.replies.v1, keyed by correlation ID, within the request's deadline.

Owns the answer to one request (`CreditCheckResponder.answer`: who may learn what, and the
decision) and the batch handler the sink loop runs. The figures come from Sage at the time of the
reply: AR_Customer.CreditLimit and CurrentBalance, and the open order total, the sum of the totals
(TaxableAmt + NonTaxableAmt + SalesTaxAmt + FreightAmt - DiscountAmt) of the customer's
SO_SalesOrderHeader rows whose OrderStatus is open (N, O, H by default). Available credit =
CreditLimit - CurrentBalance - open order total. Each answer counts in
`sagesf_credit_answers_total{decision}`.

Limits: amounts are compared in the Sage company currency only. A redelivered request (crash
after the reply, before the commit) is answered again; requesters keep the first reply per
correlation ID. Whether the requester may see the Account itself is Salesforce's to decide: the
responder cannot ask Salesforce, so the figures are delivered on a record only the requester can
read (processors/credit.py). The Account ID is compared as sent: a 15-character ID does not match
the 18-character one the customer UDF holds.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from prometheus_client import Counter

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.reads import CustomerRow, SageReads
from connectors.sage100.request_rate import RequesterRateLimit
from connectors.sage100.values import to_decimal
from sagesf.errors import Permanent, Retriable
from sagesf.publisher import CanonicalRecord
from sagesf.schemas import load_schema
from sagesf.serde import AvroSerde
from sagesf.sink import Inbound, Outcome

log = logging.getLogger(__name__)

__all__ = ["STAGE", "CreditCheckResponder", "CreditRules", "RequestDecoder"]

STAGE = "credit"  # dead letters (undecodable requests) go to dlq.credit.v1

ANSWERS = Counter(
    "sagesf_credit_answers_total",
    "Credit check requests answered, by decision (RATE_LIMITED: refused)",
    ["decision"],
)


@dataclass(frozen=True)
class CreditRules:
    currency_code: str = "USD"  # the Sage company currency
    open_statuses: tuple[str, ...] = ("N", "O", "H")
    active_statuses: frozenset[str] = field(default_factory=lambda: frozenset({"A"}))
    zero_limit_is_unlimited: bool = True
    default_division: str = "01"
    max_order_amount: Decimal = Decimal("1000000000.00")  # larger amounts are refused (ERROR)
    requests_per_requester: int = 20  # answers per requester per rate_period_seconds
    rate_period_seconds: float = 60.0


NOT_LINKED = "no Sage customer is linked to this Account"  # unknown and not visible alike


class RequestDecoder:
    """Avro key and value -> (correlation ID, CreditCheckRequest dict)."""

    def __init__(self, key_serde: AvroSerde, value_serde: AvroSerde) -> None:
        self.key_serde = key_serde
        self.value_serde = value_serde

    def __call__(self, rec: Inbound) -> None:
        rec.key = self.key_serde.decode(rec.key_bytes) if rec.key_bytes is not None else None
        value = self.value_serde.decode(rec.value_bytes) if rec.value_bytes is not None else None
        if not isinstance(value, dict) or not value.get("correlation_id"):
            raise Permanent("not a CreditCheckRequest with a correlation_id", field="correlation_id")
        rec.value = value


class CreditCheckResponder:
    """A sagesf.sink `Sink`: answers each request; the loop publishes the replies.

    Who may learn what: a request carries its requester (the Salesforce user who fired the event)
    and the Account it is made from. The answer is only ever about the Sage customer linked to
    that Account: the one whose customer UDF (UDF_SALESFORCE_ID) holds the Account ID, or, when the
    request names a customer number, that customer if its UDF holds the Account ID. Anything else,
    an unknown number or a customer linked to another Account, gets one and the same answer
    (CUSTOMER_NOT_FOUND, the same message, the request's own reference, no figures), so replies
    cannot tell which customers exist. Each requester gets `requests_per_requester` answers per
    `rate_period_seconds` (request_rate.py).

    The decision; the first that applies:
    1. EXPIRED (ERROR "expired ..." on an enum without it), no figures: the deadline passed
       before the request was read or before Sage answered. The requester gets a definite answer
       instead of silence, never a late approval: a retry past the deadline answers EXPIRED too.
    2. ERROR, no figures: the request names no requester.
    3. RATE_LIMITED (ERROR "too many requests ..." on an enum without it), no figures.
    4. ERROR, no figures: an order amount not above 0 or above `max_order_amount`, or a currency
       that is not the Sage company currency (no conversion here).
    5. CUSTOMER_NOT_FOUND: no customer linked to the Account, as above.
    6. CUSTOMER_ON_HOLD: CustomerStatus is not an active one (A by default).
    7. APPROVED when order_amount fits in available credit (or the limit is 0 and 0 means "no
       limit", the default; available credit is then null), else OVER_LIMIT.
    Sage unavailable is Retriable (through the circuit breaker); the requester's token is given
    back, so the loop's retry is counted once.
    """

    name = STAGE

    def __init__(
        self,
        *,
        reads: SageReads,
        replies_topic: str,
        breaker: CircuitBreaker,
        rules: CreditRules | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.reads = reads
        self.replies_topic = replies_topic
        self.breaker = breaker
        self.rules = rules or CreditRules()
        self.clock = clock
        symbols = _decision_symbols()
        self.expired = "EXPIRED" if "EXPIRED" in symbols else "ERROR"
        self.rate_limited = "RATE_LIMITED" if "RATE_LIMITED" in symbols else "ERROR"
        self.rate = RequesterRateLimit(self.rules.requests_per_requester, self.rules.rate_period_seconds)

    def write(self, batch: Sequence[Inbound]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for i, rec in enumerate(batch):
            request: dict[str, Any] = rec.value
            try:
                reply = self.answer(request)
            except Retriable as exc:
                outcomes.extend([Outcome(exc)] * (len(batch) - i))  # keep the partition's order
                break
            ANSWERS.labels(reply["decision"]).inc()
            key = request["correlation_id"]
            outcomes.append(
                Outcome(result=CanonicalRecord(self.replies_topic, "CreditCheckReply", key, reply))
            )
        return outcomes

    def answer(self, request: dict[str, Any]) -> dict[str, Any]:
        """The CreditCheckReply for one request (Retriable when Sage cannot answer in time)."""
        deadline: datetime = request["deadline"]
        if self.clock() > deadline:
            return self._expired(request, "before it was read")
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        try:
            reply = self.breaker.call(functools.partial(self._check, request))
        except Retriable:
            self.rate.give_back(request["requester_id"])  # retried: the retry counts, not this
            raise
        if self.clock() > deadline:
            return self._expired(request, "while Sage was answering")
        return reply

    def _refusal(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The answer to a request refused before Sage is read (no figures), else None."""
        requester = request.get("requester_id")
        if not requester:
            return self._reply(request, "ERROR", message="the request names no requester (CreatedById)")
        if not self.rate.take(requester):
            rules = self.rules
            message = (
                f"too many requests: at most {rules.requests_per_requester} "
                f"per {rules.rate_period_seconds:g} s for one user"
            )
            log.warning("credit request %s refused: %s %s", request.get("correlation_id"), requester, message)
            return self._reply(request, self.rate_limited, message=message)
        amount = to_decimal(request.get("order_amount"), 2)
        if amount is None or not Decimal(0) < amount <= self.rules.max_order_amount:
            message = f"order amount {amount} must be more than 0 and at most {self.rules.max_order_amount}"
            return self._reply(request, "ERROR", message=message)
        if request.get("currency_code") != self.rules.currency_code:
            message = f"currency {request.get('currency_code')} is not Sage's {self.rules.currency_code}"
            return self._reply(request, "ERROR", message=message)
        return None

    def _linked_customer(self, ref: dict[str, Any]) -> CustomerRow | None:
        """The customer linked to the requesting Account, or None (see the module doc)."""
        account, number = ref.get("salesforce_account_id"), ref.get("customer_no")
        if not account:
            return None
        if not number:
            return self.reads.customer_by_salesforce_id(account)
        row = self.reads.customer(ref.get("ar_division_no") or self.rules.default_division, number)
        return row if row is not None and row.salesforce_account_id == account else None

    def _check(self, request: dict[str, Any]) -> dict[str, Any]:
        ref = request.get("customer") or {}
        row = self._linked_customer(ref)
        if row is None:
            log.info("credit request %s: %s (%s)", request["correlation_id"], NOT_LINKED, _describe(ref))
            return self._reply(request, "CUSTOMER_NOT_FOUND", message=NOT_LINKED)
        customer = {
            "salesforce_account_id": row.salesforce_account_id,
            "ar_division_no": row.ar_division_no,
            "customer_no": row.customer_no,
            "name": row.name,
        }
        open_total = sum(
            (
                t.total
                for t in self.reads.open_orders(row.ar_division_no, row.customer_no, self.rules.open_statuses)
            ),
            Decimal("0.00"),
        )
        limit, balance = row.credit_limit, row.current_balance
        unlimited = limit == 0 and self.rules.zero_limit_is_unlimited
        available = None if unlimited else limit - balance - open_total
        figures = {
            "credit_limit": limit,
            "current_balance": balance,
            "open_order_total": open_total,
            "available_credit": available,
        }
        if row.status not in self.rules.active_statuses:
            return self._reply(
                request, "CUSTOMER_ON_HOLD", customer, figures, f"CustomerStatus {row.status!r} blocks orders"
            )
        amount = to_decimal(request.get("order_amount"), 2) or Decimal("0.00")
        if available is None or amount <= available:
            return self._reply(request, "APPROVED", customer, figures)
        return self._reply(
            request,
            "OVER_LIMIT",
            customer,
            figures,
            f"order amount {amount} exceeds available credit {available}",
        )

    def _expired(self, request: dict[str, Any], when: str) -> dict[str, Any]:
        deadline: datetime = request["deadline"]
        message = f"expired: the deadline {deadline.isoformat()} passed {when}; credit was not checked"
        log.warning("credit request %s %s", request.get("correlation_id"), message)
        return self._reply(request, self.expired, message=message)

    def _reply(
        self,
        request: dict[str, Any],
        decision: str,
        customer: dict[str, Any] | None = None,
        figures: dict[str, Decimal | None] | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        ref = request.get("customer") or {}
        figures = figures or {}
        correlation = request["correlation_id"]
        return {
            "envelope": {
                "event_id": str(uuid.uuid4()),
                "event_time": self.clock(),
                "source_system": "SAGE100",
                "source_record_id": (
                    f"{customer['ar_division_no']}-{customer['customer_no']}" if customer else correlation
                ),
                "correlation_id": correlation,
            },
            "correlation_id": correlation,
            "customer": customer
            or {
                "salesforce_account_id": ref.get("salesforce_account_id"),
                "ar_division_no": ref.get("ar_division_no"),
                "customer_no": ref.get("customer_no"),
                "name": ref.get("name"),
            },
            "decision": decision,
            "credit_limit": figures.get("credit_limit"),
            "current_balance": figures.get("current_balance"),
            "open_order_total": figures.get("open_order_total"),
            "available_credit": figures.get("available_credit"),
            "currency_code": self.rules.currency_code,
            "deadline": request["deadline"],
            "message": message,
            "requester_id": request.get("requester_id"),
        }


@functools.cache
def _decision_symbols() -> frozenset[str]:
    for f in load_schema("CreditCheckReply")["fields"]:
        if f["name"] == "decision":
            return frozenset(f["type"]["symbols"])
    return frozenset()


def _describe(ref: dict[str, Any]) -> str:
    parts = [f"{k}={v}" for k, v in ref.items() if v and k != "name"]
    return ", ".join(parts) or "an empty customer reference"
