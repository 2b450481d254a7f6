"""The Sage side of the credit check: answers CreditCheckRequests (credit.requests.v1) on
credit.replies.v1, keyed by correlation ID, within the request's deadline.

Owns the answer to one request (`CreditCheckResponder.answer`) and the batch handler the
sink loop runs. The figures come from Sage at the time of the reply: AR_Customer.CreditLimit
and CurrentBalance, and the open order total, the sum of the totals (TaxableAmt + NonTaxableAmt +
SalesTaxAmt + FreightAmt - DiscountAmt) of the customer's SO_SalesOrderHeader rows whose
OrderStatus is open (N, O, H by default). Available credit = CreditLimit - CurrentBalance - open
order total. The decision:
- CUSTOMER_NOT_FOUND: no AR_Customer by ARDivisionNo + CustomerNo, nor by the Salesforce
  Account ID in the customer UDF column;
- CUSTOMER_ON_HOLD: CustomerStatus is not an active one (A by default);
- APPROVED when order_amount fits in available credit (or the limit is 0 and 0 means "no
  limit", the default; available credit is then null), else OVER_LIMIT;
- ERROR when the request's currency is not the Sage company currency (no conversion here);
- EXPIRED (when the CreditDecision enum has it; ERROR with a message starting "expired"
  otherwise) for a request whose deadline passed before it was read or before Sage answered:
  the requester gets a definite answer instead of silence, and no stale figures.
A reply is produced and acknowledged by Kafka before the offset is committed. Sage unavailable
is Retriable (through the circuit breaker): the loop retries, and a retry past the deadline
answers EXPIRED, so every request gets exactly one kind of answer, never a late approval.

Limits: amounts are compared in the Sage company currency only. A redelivered request (crash
after the reply, before the commit) is answered again; requesters keep the first reply per
correlation ID.
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

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.reads import SageReads
from connectors.sage100.values import to_decimal
from sagesf.errors import Permanent, Retriable
from sagesf.publisher import CanonicalRecord
from sagesf.schemas import load_schema
from sagesf.serde import AvroSerde
from sagesf.sink import Inbound, Outcome

log = logging.getLogger(__name__)

__all__ = ["STAGE", "CreditCheckResponder", "CreditRules", "RequestDecoder"]

STAGE = "credit"  # dead letters (undecodable requests) go to dlq.credit.v1


@dataclass(frozen=True)
class CreditRules:
    currency_code: str = "USD"  # the Sage company currency
    open_statuses: tuple[str, ...] = ("N", "O", "H")
    active_statuses: frozenset[str] = field(default_factory=lambda: frozenset({"A"}))
    zero_limit_is_unlimited: bool = True
    default_division: str = "01"


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
    """A sagesf.sink `Sink`: answers each request; the loop publishes the replies."""

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

    def write(self, batch: Sequence[Inbound]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for i, rec in enumerate(batch):
            request: dict[str, Any] = rec.value
            try:
                reply = self.answer(request)
            except Retriable as exc:
                outcomes.extend([Outcome(exc)] * (len(batch) - i))  # keep the partition's order
                break
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
        reply = self.breaker.call(functools.partial(self._check, request))
        if self.clock() > deadline:
            return self._expired(request, "while Sage was answering")
        return reply

    def _check(self, request: dict[str, Any]) -> dict[str, Any]:
        ref = request.get("customer") or {}
        division = ref.get("ar_division_no") or self.rules.default_division
        number, account = ref.get("customer_no"), ref.get("salesforce_account_id")
        row = self.reads.customer(division, number) if number else None
        if row is None and account:
            row = self.reads.customer_by_salesforce_id(account)
        if row is None:
            return self._reply(
                request, "CUSTOMER_NOT_FOUND", message=f"no Sage customer for {_describe(ref)}"
            )
        customer = {
            "salesforce_account_id": account or row.salesforce_account_id,
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
        if request.get("currency_code") != self.rules.currency_code:
            message = f"currency {request.get('currency_code')} is not Sage's {self.rules.currency_code}"
            return self._reply(request, "ERROR", customer, figures, message)
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
