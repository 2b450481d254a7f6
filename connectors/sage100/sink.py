"""The Sage 100 sink: applies SageCommands from sage.commands.v1 and answers on sage.results.v1.

Owns what happens to one command (`SageCommandSink.apply`) and to a consumed batch
(`SageCommandSink.write`, a sagesf.sink `Sink` that the core SinkLoop drives):

- CreateSalesOrder: the Salesforce record ID (Opportunity, else Order) is the idempotency key.
  If an order carries it in the order UDF column (UDF_SALESFORCE_ID by default), open or moved to
  history (reads.py `SalesforceOrderIndex`), the answer is EXISTING with that SalesOrderNo and
  nothing is written. Otherwise everything is checked before anything is written: the order
  (validation.py: items exist and are active, warehouses exist, quantities > 0, everything fits
  Sage's columns and code page), then its customer, matched (by ARDivisionNo + CustomerNo, else
  by the Salesforce Account ID in the customer UDF column) or, from the command's customer data,
  a new one; then the writer backend writes the order with that new customer as one unit
  (`odbc`: sql_writer.py, one transaction; `boi`: boi_writer.py, the customer deleted again when
  Sage refuses the order), so a refused order leaves no customer behind.
- UpsertCustomer: matched the same way; it writes exactly the AR_Customer columns the command
  names (`columns`, computed by the processors from mappings/customers.yaml; a command without
  them, from an older processors version, is refused: replay it through the processors), plus
  the key, the Salesforce ID UDF and CustomerStatus from the customer's status (validation.py);
  an update writes only the columns that differ (none:
  EXISTING, nothing written, so no echo), and none at all when a Sage user changed the row after
  the command's source event (stale.py `NewerRowCheck`: EXISTING with `stale` saying why, so a
  replayed, repaired or re-read old change never overwrites a newer one); a new customer gets a
  CustomerNo from the configured scheme (customer_numbers.py) and carries the Account ID in its
  UDF, which makes a redelivered create find it.
- UpdateItem: the mapped columns of an existing CI_Item (a Product2 change), only those that
  differ (none: EXISTING); an item Sage does not have is refused, never created.
- The link is the authority: a command whose Account differs from the one the matched customer's
  UDF names (or that would link an Account another customer carries) is refused, naming the
  linked Account; nothing of it is written to that customer.
- Every command gets one SageResult (CREATED / UPDATED / EXISTING / REJECTED with the reason,
  field and value), returned with its outcome; the loop publishes it, acknowledged by Kafka,
  before it commits the offset. A Permanent failure is also dead-lettered by the loop on
  dlq.sage-sink.v1 with Kafka Connect's error headers. A reason users read never holds driver
  or Python text: Sage's refusals over ODBC and unexpected errors answer "Sage 100 refused the write:
  <category>", and the dead letter carries the whole text, passwords masked (`_refusal`).
- Sage unavailable (Retriable from the dialect layer or BOI) goes through the circuit breaker
  (availability.py); the failed command and every later one in the batch are returned as
  Retriable, so the loop retries them in their original order and nothing is committed past them.

Checkpoint order (STYLE.md 5): write to Sage -> result acknowledged -> offset committed. A crash
after the Sage commit and before the offset commit redelivers the command; its idempotency key
finds the order, so the redelivery answers EXISTING and writes nothing.

Run it with `sagesf run sage-sink` (connectors/sage100/components.py): the command sink and the
credit responder (credit.py), configured by `SAGESF_SAGE100__*` and `SAGESF_SAGE_SINK__*`.

Limits: commands are applied one at a time (Sage's writes are per record anyway). The result of
an EXISTING order lists Sage's lines in LineSeqNo order and matches them to the command's lines
by position; one found in history has its history status and neither lines nor totals. Customer
contacts are not written; a column the command names that the table does not have (a UDF the
installation lacks) is refused, naming it. The link check reads Sage just before
the write: a link a Sage user changes in between is not seen. Only an order that brings its
customer's data is written with its customer as one unit; a customer created earlier by an
UpsertCustomer stays when Sage refuses the order that asked for it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.boi_writer import BoiFailure
from connectors.sage100.commands import CommandKind, Outcome, SageCommand, result_record
from connectors.sage100.customer_numbers import CustomerNumbering
from connectors.sage100.odbc import SageQueryError, SageRejected, redact_connection_string
from connectors.sage100.reads import CustomerRow, SageReads
from connectors.sage100.stale import NewerRowCheck
from connectors.sage100.validation import CommandValidator
from connectors.sage100.writes import CustomerWrite, SageWriter, WrittenCustomer, WrittenLine, WrittenOrder
from sagesf.errors import Permanent, Retriable
from sagesf.logs import redact
from sagesf.publisher import CanonicalRecord
from sagesf.sink import Inbound
from sagesf.sink import Outcome as LoopOutcome
from sagesf.stale import Stale

log = logging.getLogger(__name__)

__all__ = ["STAGE", "SageCommandSink", "SageWriteFailed"]

STAGE = "sage-sink"  # dead letters go to dlq.sage-sink.v1


class SageCommandSink:
    """Applies Sage commands and answers each with a SageResult (see the module doc)."""

    name = STAGE

    def __init__(
        self,
        *,
        reads: SageReads,
        writer: SageWriter,
        validator: CommandValidator,
        numbering: CustomerNumbering,
        results_topic: str,
        breaker: CircuitBreaker,
        customer_udf: str = "UDF_SALESFORCE_ID",
        default_division: str = "01",
        newer: NewerRowCheck | None = None,
    ) -> None:
        self.reads = reads
        self.writer = writer
        self.validator = validator
        self.numbering = numbering
        self.results_topic = results_topic
        self.breaker = breaker
        self.customer_udf = customer_udf
        self.default_division = default_division
        self.newer = newer

    # --- the batch handler ---------------------------------------------------------------

    def write(self, batch: Sequence[Inbound]) -> list[LoopOutcome]:
        outcomes: list[LoopOutcome] = []
        for i, rec in enumerate(batch):
            command: SageCommand = rec.value
            error: BaseException | None = None
            try:
                result = self.breaker.call(functools.partial(self.apply, command))
            except Retriable as exc:
                # keep the partition's order: this command and every later one are tried again
                outcomes.extend([LoopOutcome(exc)] * (len(batch) - i))
                break
            except Exception as exc:
                shown, full = _refusal(exc)
                if shown is full:  # a reason of ours, written for users
                    log.warning("command %s rejected: %s", command.command_id, shown.reason)
                else:  # the log is redacted by the process's formatter
                    log.warning("command %s rejected: %s", command.command_id, full.reason, exc_info=exc)
                result, error = self._rejected(command, shown), full
            key = rec.key if isinstance(rec.key, str) else None
            outcomes.append(
                LoopOutcome(error, CanonicalRecord(self.results_topic, "SageResult", key, result))
            )
        return outcomes

    # --- one command ---------------------------------------------------------------------

    def apply(self, command: SageCommand) -> dict[str, Any]:
        """Apply one command; the SageResult record. Raises Permanent or Retriable."""
        if command.kind is CommandKind.CREATE_SALES_ORDER:
            return self._create_sales_order(command)
        if command.kind is CommandKind.UPSERT_CUSTOMER:
            return self._upsert_customer(command)
        if command.kind is CommandKind.UPDATE_ITEM:
            return self._update_item(command)
        raise Permanent(f"unknown command kind {command.kind}", field="command")

    def _create_sales_order(self, command: SageCommand) -> dict[str, Any]:
        order = command.order
        assert order is not None
        salesforce_id = command.salesforce_record_id
        if not salesforce_id:
            raise Permanent(
                "the order has no salesforce_opportunity_id nor salesforce_order_id (its idempotency key)",
                field="salesforce_opportunity_id",
            )
        existing = self.reads.order_by_salesforce_id(salesforce_id)
        if existing is not None:
            log.info("order for %s exists as %s (redelivery)", salesforce_id, existing.sales_order_no)
            return self._order_result(command, _with_command_lines(existing, order), Outcome.EXISTING, None)
        # everything is checked before anything is written: the order, then its customer
        bind = self.validator.order(order, salesforce_id)
        customer = self._order_customer(command)
        new = customer if isinstance(customer, CustomerWrite) else None
        write = bind(customer.ar_division_no, customer.customer_no)
        written = self.writer.create_sales_order(write, new_customer=new)  # the customer with it
        outcome = Outcome.CREATED if written.created else Outcome.EXISTING
        return self._order_result(
            command, _with_command_lines(written, order), outcome, written.customer_created
        )

    def _order_customer(self, command: SageCommand) -> CustomerRow | CustomerWrite:
        """The order's customer as Sage has it, or the checked write that creates it from the
        command's customer data (written with the order, never before it)."""
        order = command.order
        assert order is not None
        ref: Mapping[str, Any] = order.get("customer") or {}
        data = command.customer or {}
        account = _text(ref.get("salesforce_account_id")) or _text(data.get("salesforce_account_id"))
        number = _text(ref.get("customer_no")) or _text(data.get("customer_no"))
        division = _text(ref.get("ar_division_no")) or _text(data.get("ar_division_no"))
        found = self._match_customer(division, number, account)
        if found is not None:
            _owned_by(found, account)
            return found
        if command.customer is None:
            shown = "-".join(x for x in (division, number) if x) or f"Salesforce Account {account}"
            raise Permanent(
                f"customer {shown} is not in Sage and the command carries no customer data to create it",
                field="customer",
                value=shown if (number or account) else None,
            )
        data = {**data, "salesforce_account_id": account}
        return self._new_customer(data, command.columns, division, number)

    def _match_customer(
        self, division: str | None, number: str | None, account: str | None
    ) -> CustomerRow | None:
        if number:
            row = self.reads.customer(division or self.default_division, number)
            if row is not None:
                return row
        if account:
            return self.reads.customer_by_salesforce_id(account)
        return None

    def _new_customer(
        self,
        data: Mapping[str, Any],
        columns: Mapping[str, str] | None,
        division: str | None,
        number: str | None,
    ) -> CustomerWrite:
        """The checked AR_Customer write that creates the customer `data` describes (numbered by
        the scheme unless `number` is given; carrying its Account ID in the UDF)."""
        account = _text(data.get("salesforce_account_id"))
        if not account and not number:
            raise Permanent(
                "missing customer data: a new customer needs a salesforce_account_id "
                "(so a redelivery finds it) or a CustomerNo",
                field="salesforce_account_id",
            )
        division = division or self.default_division
        name = _text((columns or {}).get("CustomerName")) or _text(data.get("name"))
        if name is None:
            raise Permanent("missing customer data: a new customer needs a name", field="CustomerName")
        number = number or self.numbering.next_number(self.reads, division, name)
        write = self.validator.customer(data, None, (division, number), columns)
        if account:
            write = replace(write, columns={**write.columns, self.customer_udf: account})
        return write

    def _upsert_customer(self, command: SageCommand) -> dict[str, Any]:
        data = command.customer
        assert data is not None
        if data.get("deleted"):
            raise Permanent(
                "the Sage sink does not delete customers; deactivate them with status INACTIVE",
                field="deleted",
                value=True,
            )
        account = _text(data.get("salesforce_account_id"))
        division = _text(data.get("ar_division_no"))
        number = _text(data.get("customer_no"))
        existing = self._match_customer(division, number, account)
        if existing is None:
            new = self._new_customer(data, command.columns, division, number)
            written = self.writer.upsert_customer(new)
            log.info(
                "customer %s-%s %s",
                written.ar_division_no,
                written.customer_no,
                "created" if written.created else "found",
            )
            outcome = Outcome.CREATED if written.created else Outcome.EXISTING
            return self._customer_result(command, written, outcome, account)
        _owned_by(existing, account)
        link = account if account and existing.salesforce_account_id is None else None
        if link:
            self._account_free(link, existing)
        stale = self.newer.newer(existing, command.source_event_time, command.kind) if self.newer else None
        if stale is not None:
            return self._stale_customer(command, existing, account, link, stale)
        write = self.validator.customer(data, existing, None, command.columns)
        changed = {k: v for k, v in write.columns.items() if existing.values.get(k) != v}
        if link:
            changed[self.customer_udf] = link  # link the Sage customer to its Account
        unchanged = WrittenCustomer(existing.ar_division_no, existing.customer_no, False)
        if not changed:
            return self._customer_result(command, unchanged, Outcome.EXISTING, account)
        written = self.writer.upsert_customer(replace(write, columns=changed))
        return self._customer_result(command, written, Outcome.UPDATED, account)

    def _update_item(self, command: SageCommand) -> dict[str, Any]:
        """UpdateItem: the mapped columns of an existing CI_Item, those that differ only (none:
        EXISTING, nothing written, so no echo). Never creates an item. No stale check: CI_Item
        changes are not compared with the Product2 change's time (NewerRowCheck reads customers)."""
        code, columns = command.item_code, command.columns
        assert code is not None
        assert columns is not None
        values = self.validator.item(columns)
        held = self.reads.item_values(code, list(values))
        if held is None:
            raise Permanent(
                f"ItemCode {code!r} does not exist in CI_Item (the sink updates existing items only)",
                field="ItemCode",
                value=code,
            )
        changed = {k: v for k, v in values.items() if held.get(k) != v}
        if changed:
            self.writer.update_item(code, changed)
        return result_record(
            command_id=command.command_id,
            correlation_id=command.correlation_id,
            salesforce_record_id=None,
            kind=command.kind,
            outcome=Outcome.UPDATED if changed else Outcome.EXISTING,
            item_code=code,
        )

    def _stale_customer(
        self, command: SageCommand, existing: CustomerRow, account: str | None, link: str | None, stale: Stale
    ) -> dict[str, Any]:
        """The row holds a newer change: none of the command's values are written. The link alone
        is (UPDATED), when the customer had none: it is no value a user changed, and the link's
        authority (the UDF) must agree with what the processors learn from this answer."""
        log.info("command %s not written: %s", command.command_id, stale.reason)
        key = (existing.ar_division_no, existing.customer_no)
        if link is None:
            found = WrittenCustomer(*key, False)
            return self._customer_result(command, found, Outcome.EXISTING, account, stale)
        linked = CustomerWrite(*key, link, {self.customer_udf: link}, create=False)
        written = self.writer.upsert_customer(linked)
        return self._customer_result(command, written, Outcome.UPDATED, link, stale)

    def _account_free(self, account: str, customer: CustomerRow) -> None:
        """Permanent when `account` is linked to a Sage customer other than `customer`: linking it
        here too would make the link say two things."""
        other = self.reads.customer_by_salesforce_id(account)
        if other is not None and (other.ar_division_no, other.customer_no) != (
            customer.ar_division_no,
            customer.customer_no,
        ):
            raise Permanent(
                f"Salesforce Account {account} is linked to Sage customer {_key(other)}, not "
                f"{_key(customer)}; nothing was changed",
                field="salesforce_account_id",
                value=account,
            )

    # --- results -------------------------------------------------------------------------

    def _order_result(
        self, command: SageCommand, order: WrittenOrder, outcome: Outcome, customer_created: bool | None
    ) -> dict[str, Any]:
        ref = (command.order or {}).get("customer") or {}
        return result_record(
            command_id=command.command_id,
            correlation_id=command.correlation_id,
            salesforce_record_id=command.salesforce_record_id,
            kind=command.kind,
            outcome=outcome,
            order=order,
            salesforce_account_id=_text(ref.get("salesforce_account_id")),
            customer_created=bool(customer_created),
        )

    def _customer_result(
        self,
        command: SageCommand,
        customer: WrittenCustomer,
        outcome: Outcome,
        account: str | None,
        stale: Stale | None = None,
    ) -> dict[str, Any]:
        return result_record(
            command_id=command.command_id,
            correlation_id=command.correlation_id,
            salesforce_record_id=command.salesforce_record_id,
            kind=command.kind,
            outcome=outcome,
            customer=customer,
            salesforce_account_id=account,
            customer_created=outcome is Outcome.CREATED,
            stale=stale,
        )

    def _rejected(self, command: SageCommand, error: Permanent) -> dict[str, Any]:
        return result_record(
            command_id=command.command_id,
            correlation_id=command.correlation_id,
            salesforce_record_id=command.salesforce_record_id,
            kind=command.kind,
            outcome=Outcome.REJECTED,
            error=error,
        )


class SageWriteFailed(Permanent):
    """What the dead letter of a command Sage refused says: the whole error text and its causes,
    with passwords masked, for operators (the SageResult carries the short reason)."""


def _refusal(exc: Exception) -> tuple[Permanent, Permanent]:
    """(the SageResult's error, the dead letter's error) for a command that failed for good.

    A reason of ours (validation, links, numbering) is written for users and serves both. Sage's
    refusals over ODBC and anything unexpected carry driver or Python text (SQLSTATE, ODBC
    function names, the connection string): users get "Sage 100 refused the write: <category>",
    operators the full text in the dead letter."""
    if isinstance(exc, Permanent) and not isinstance(exc, SageRejected | SageQueryError | BoiFailure):
        return exc, exc
    if isinstance(exc, BoiFailure):  # Sage's own message for the record, e.g. "Customer is on credit hold."
        category = redact(exc.message)[:200]
    elif isinstance(exc, SageRejected):
        out_of_range = exc.sqlstate.startswith("22")
        category = (
            "a value is too long or out of range" if out_of_range else "a database rule (constraint) failed"
        )
    elif isinstance(exc, SageQueryError):
        category = "the query does not fit the database (table layouts or UDF columns)"
    else:
        category = "unexpected error"
    field = exc.field if isinstance(exc, Permanent) else None
    value = exc.value if isinstance(exc, Permanent) else None
    shown = Permanent(f"Sage 100 refused the write: {category}", field=field, value=value)
    causes: list[str] = []
    cause: BaseException | None = exc
    while cause is not None and len(causes) < 5:
        causes.append(f"{type(cause).__module__}.{type(cause).__qualname__}: {cause}")
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    full = SageWriteFailed(
        redact(redact_connection_string(" <- caused by ".join(causes))), field=field, value=value
    )
    full.__traceback__ = exc.__traceback__  # where it failed, without the raw text of its causes
    return shown, full


def _owned_by(customer: CustomerRow, account: str | None) -> None:
    """Permanent when `customer` is linked (its UDF) to a Salesforce Account other than `account`:
    the link is the authority, so nothing of the command is written to that customer."""
    linked = customer.salesforce_account_id
    if account and linked and linked != account:
        raise Permanent(
            f"Sage customer {_key(customer)} is linked to Salesforce Account {linked}, not {account}; "
            "nothing was changed",
            field="salesforce_account_id",
            value=account,
        )


def _key(customer: CustomerRow) -> str:
    return f"{customer.ar_division_no}-{customer.customer_no}"


def _with_command_lines(order: WrittenOrder, command_order: Mapping[str, Any]) -> WrittenOrder:
    """Sage's lines with the command's line_no and Salesforce line IDs, matched by position."""
    lines = command_order.get("lines") or []
    if len(lines) != len(order.lines):
        return order
    merged = tuple(
        WrittenLine(
            int(src.get("line_no") or line.line_no),
            line.line_key,
            line.item_code,
            line.extension_amt,
            _text(src.get("salesforce_line_id")),
        )
        for line, src in zip(order.lines, lines, strict=True)
    )
    return replace(order, lines=merged)


def _text(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
