"""The orders processor's logic: Salesforce orders -> Sage CreateSalesOrder commands, Sage's
order results -> the Opportunity / Order.

What it owns: `OrderPipeline`, what the salesorder.v1, sage.results.v1 and item.v1 agents do
with a record (processors/app.py wires them). Which Sage customer an order's Account is, and the
orders waiting until Sage has one, belong to processors/customer_directory.py.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from processors import commands
from processors.commands import Outbound, command_id, sobject_for
from processors.customer_directory import CustomerDirectory, NewCustomer
from processors.customer_links import LinkRefused
from processors.field_mapping import item_to_sage, item_to_salesforce
from processors.mapping_model import Mappings
from processors.metrics import ORDERS_RESENT, ORDERS_UNANSWERED
from processors.order_mapping import order_to_sage
from processors.state import Decoder, MappingsRef, Origin, ResendSchedule, Step, Tables, epoch_ms
from processors.sync_message import Changes, for_user, sage_refusal
from sagesf.errors import Permanent
from sagesf.load import HISTORY_BEFORE_GO_LIVE, HISTORY_HEADER

log = logging.getLogger(__name__)

__all__ = ["OrderPipeline", "order_identity"]

CENT = Decimal("0.01")


@dataclass(frozen=True)
class SageOrder:
    """The order as the CreateSalesOrder carries it: the canonical order with what is structural
    resolved (customer, item codes, prices, amounts) and the columns orders.yaml maps it to."""

    order: dict[str, Any]
    header_columns: dict[str, str]
    line_columns: list[dict[str, str]]


def order_identity(order: Mapping[str, Any], key: str | None = None) -> str | None:
    """The Salesforce record an order is idempotent on: the Opportunity ID, else the Order ID."""
    return order.get("salesforce_opportunity_id") or order.get("salesforce_order_id") or key


def _records(order: Mapping[str, Any]) -> list[str]:
    """Every Salesforce record an order's outcome is written back to."""
    out = [order.get("salesforce_opportunity_id"), order.get("salesforce_order_id")]
    return [r for r in out if r]


def _line_ids(result: Mapping[str, Any]) -> dict[str, str]:
    """Sage's LineKey -> the Salesforce line it was written from, for the lines a result lists."""
    return {
        str(line["line_key"]): str(line["salesforce_line_id"])
        for line in result.get("lines") or []
        if line.get("line_key") and line.get("salesforce_line_id")
    }


def _decimal(value: Any, where: str) -> Decimal:
    try:
        number = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise Permanent(f"{where} {value!r} is not a number", field=where, value=value) from None
    if not number.is_finite():
        raise Permanent(f"{where} {value!r} is not a number", field=where, value=value)
    return number


class OrderPipeline:
    """Salesforce orders to Sage and Sage's answers back, one record at a time.

    - `on_sales_order`: a canonical SalesOrder whose source status starts an order (orders.yaml
      `start`: Closed Won, Activated), unless it is history: the initial load marks the orders
      won before go-live (`_keep_history`), which Sage has already, and those are never ordered.
      Without a known Sage customer the CreateSalesOrder brings the customer with it
      (`CustomerDirectory.new_customer`: Sage writes both as one unit), or,
      while another order of the account brings it, the order is held by the customer directory
      and the records show Sage_Sync_Status__c = Pending. An Account whose ExternalID__c names
      another Account's customer is refused (processors/customer_links.py).
      With a customer, every line's ProductCode becomes an ItemCode (`item_code_for`), mapped
      fields, addresses, currency and pricing rules are applied, every text is folded into
      Sage's code page, and a CreateSalesOrder goes to sage.commands.v1, keyed and identified by
      the Salesforce record. What the rules changed (`Changes`: a value cut to its column, text
      folded, a price rounded or replaced, a code matched loosely) is kept with the order.
    - `on_sage_result`: a customer result goes to the customer directory; an order result writes
      Sage_Order_No__c, Sage_Order_Status__c and Sage_Sync_Status__c to the Opportunity and/or
      Order, with what the rules changed as Sage_Sync_Message__c, and tells the directory which
      customer Sage wrote it for (the link of a new customer is learnt there, from Sage's answer).
    - `on_item`: the item cross-reference (item.v1).
    - `sweep`: the directory's sweep of held orders, then re-sends the CreateSalesOrder (same
      command ID, with the new customer when it brings one) of orders whose Sage result has not
      arrived, backing off (`ResendSchedule`: `resend_after`, then twice as long each time;
      whatever lost it, the order number still reaches Salesforce: Sage answers a repeat with the
      existing order). After `resend_limit` re-sends the order is given up, with the orders held
      behind it: Error on their records, their original records dead-lettered (replay them once
      the Sage sink answers) and sagesf_processor_orders_unanswered_total counted, which alerts
      (SagesfOrdersUnanswered). Failed orders and Sage order numbers older than `retention_days`
      are forgotten.
    Any error that the order itself causes (unknown product, no exchange rate, an address that
    does not fit, Sage refusing it or its customer) becomes `Permanent`: the original record goes
    to dlq.orders.v1 with the full reason, and the Opportunity/Order gets Sage_Sync_Status__c =
    Error with a short reason in Sage_Sync_Message__c (processors/sync_message.py: never driver
    or Python text; Sage_Sync_Status__c is a restricted picklist, so the reason cannot go there).

    How it works: processing is a function of the record and the tables, so a redelivered or
    replayed record produces the same commands with the same command_id (UUIDv5 of the
    Salesforce record ID); nothing is suppressed on the ground of earlier state, so a crash
    between a state write and a produce cannot lose a command. The Sage sink is idempotent on
    the Salesforce ID.

    Limits: a changed order re-sent for the same Opportunity keeps its command ID and Sage keeps
    the first version (no order amendments). Taxes are Sage's (computed at invoicing). Currency
    rates come from pricing.yaml, not a rates service.
    """

    def __init__(
        self,
        mappings: MappingsRef,
        tables: Tables,
        *,
        decode_order: Decoder,
        decode_customer: Decoder,
        resend_after: float = 300.0,
        resend_limit: int = 5,
        retention_days: float = 180.0,
    ) -> None:
        self.mappings_ref = mappings
        self.tables = tables
        self.decode_order = decode_order
        self.resend_after_ms = int(resend_after * 1000)
        self.resends = ResendSchedule(self.resend_after_ms, resend_limit)
        self.retention_ms = int(retention_days * 86_400_000)
        self._pruned_at = 0
        # the directory hands held orders back to this pipeline (on_sales_order, fail_order)
        self.customer_directory = CustomerDirectory(
            mappings, tables, self, decode_order=decode_order, decode_customer=decode_customer
        )

    @property
    def mappings(self) -> Mappings:
        return self.mappings_ref.current

    # --- salesorder.v1 ---------------------------------------------------------------------

    def on_sales_order(self, key: str | None, order: Mapping[str, Any], origin: Origin) -> Step:
        identity = order_identity(order, key)
        if identity is None:
            raise Permanent(
                "the order has neither salesforce_opportunity_id nor salesforce_order_id",
                field="salesforce_opportunity_id",
            )
        if (self.tables.orders.get(identity) or {}).get("state") == "history":
            return Step("history")  # won before go-live: Sage has it, whatever happens to it later
        if (HISTORY_HEADER, HISTORY_BEFORE_GO_LIVE) in origin.headers:
            return self._keep_history(identity, order)
        source_status = order.get("source_status")
        start = self.mappings.orders.start.get(str(source_status)) if source_status is not None else None
        if start is None and not (source_status is None and order.get("status") == "NEW"):
            return Step("skipped")
        order_type = start.order_type if start is not None else "STANDARD"
        records = _records(order) or [identity]
        account = (order.get("customer") or {}).get("salesforce_account_id")
        changes = Changes()
        try:
            prepared = self._prepare(identity, order, order_type, changes)
            if prepared is None:
                return self._hold(identity, order, records, origin, str(account))
        except Permanent as exc:
            step = self.fail_order(identity, records, origin, exc, account)
            if isinstance(exc, LinkRefused):
                step.outbound += self.customer_directory.link_errors(exc.conflict, (identity,))
            return step
        sage_order, new = prepared
        if new is not None:
            self.customer_directory.carrying(identity, new)
        cid = command_id("CreateSalesOrder", identity)
        self.tables.orders[identity] = {
            "state": "commanded",
            "records": records,
            "account": account,
            "command_id": cid,
            "origin": origin.to_json(),
            "at": epoch_ms(),
            "resends": 0,
            "notes": changes.notes,
        }
        return Step("commanded", [self._create(sage_order, order, identity, new)])

    def _keep_history(self, identity: str, order: Mapping[str, Any]) -> Step:
        """An order the initial load published as won before go-live (sagesf.load HISTORY_HEADER):
        Sage has it, entered by hand without the Salesforce ID, so the Sage sink could not
        recognise a CreateSalesOrder for it. It is recorded as history and never commanded: a
        later record of it (an edit, a gap event re-reading it, moved out of Closed Won and back)
        is skipped above. One this pipeline already commanded or holds keeps its state."""
        if (self.tables.orders.get(identity) or {}).get("state") in ("commanded", "held"):
            return Step("skipped")
        self.tables.orders[identity] = {
            "state": "history",
            "records": _records(order) or [identity],
            "account": (order.get("customer") or {}).get("salesforce_account_id"),
            "at": epoch_ms(),
        }
        return Step("history")

    def _prepare(
        self, identity: str, order: Mapping[str, Any], order_type: str, changes: Changes
    ) -> tuple[SageOrder, NewCustomer | None] | None:
        """The Sage order for `order`, and the new customer it brings when Sage has none for its
        Account; None when it must wait for another order of the Account to bring it."""
        customer = self.customer_directory.customer_of(order)
        new = None
        if customer is None:
            new = self.customer_directory.new_customer(identity, order)
            if new is None:
                return None
            customer = new.ref
        return self._sage_order(order, customer, order_type, changes), new

    @staticmethod
    def _create(
        sage_order: SageOrder, order: Mapping[str, Any], identity: str, new: NewCustomer | None
    ) -> Outbound:
        cid = command_id("CreateSalesOrder", identity)
        correlation = (order.get("envelope") or {}).get("correlation_id") or cid
        customer = new.customer if new is not None else None
        columns = new.columns if new is not None else None
        when = (order.get("envelope") or {}).get("event_time")
        return commands.create_sales_order(
            sage_order.order,
            cid,
            identity,
            correlation,
            customer,
            event_time=when,
            customer_columns=columns,
            header_columns=sage_order.header_columns,
            line_columns=sage_order.line_columns,
        )

    def _command_again(self, identity: str, state: Mapping[str, Any], now: int) -> list[Outbound]:
        """The CreateSalesOrder of a commanded order once more (same command ID): Sage creates it if
        the first never arrived, or answers with the existing order, whose result then comes back.
        Nothing else changes: an order that no longer maps (edited mappings) is logged and tried
        again later, not failed, since Sage may well have it."""
        at = int(state["at"])
        self.tables.orders[identity] = {**state, "at": now, "resends": int(state.get("resends") or 0) + 1}
        try:
            order = self.decode_order(Origin.from_json(state["origin"]).value or b"")
            start = self.mappings.orders.start.get(str(order.get("source_status")))
            order_type = start.order_type if start else "STANDARD"
            prepared = self._prepare(identity, order, order_type, Changes())
            if prepared is None:
                raise Permanent("another order of its Account brings the new customer now", field="customer")
        except Permanent as exc:
            log.warning("order %s: no Sage result yet and cannot command it again: %s", identity, exc)
            return []
        sage_order, new = prepared
        if new is not None:
            self.customer_directory.carrying(identity, new)
        log.warning("order %s: no Sage result for %d s; commanding it again", identity, (now - at) // 1000)
        ORDERS_RESENT.inc()
        return [self._create(sage_order, order, identity, new)]

    def _hold(
        self, identity: str, order: Mapping[str, Any], records: list[str], origin: Origin, account: str
    ) -> Step:
        """Keep the order until Sage answered the order that brings its Account's new customer."""
        self.customer_directory.hold(identity, records, origin, account)
        ref, bill_to = order.get("customer") or {}, order.get("bill_to") or {}
        name = ref.get("name") or bill_to.get("name")
        return Step(
            "held",
            self._sync(
                records,
                "pending",
                f"Waiting for customer {name!r} to be created in Sage 100",
                identity,
                "hold",
            ),
        )

    def _give_up(self, identity: str, state: Mapping[str, Any]) -> Step:
        """Sage never answered the CreateSalesOrder of `identity`: fail it (see the class doc)."""
        sends = int(state.get("resends") or 0) + 1
        log.error("order %s: no answer from Sage 100 after %d sends; giving up", identity, sends)
        ORDERS_UNANSWERED.inc()
        reason = Permanent(
            f"no answer from Sage 100 to this order after {sends} sends; not sent again "
            "(SAGESF_PROCESSORS__ORDER_RESEND_LIMIT). Check the Sage sink, then replay this dead "
            "letter: Sage creates the order once"
        )
        message = f"Sage 100 has not answered this order after {sends} tries; operations are alerted"
        records = list(state.get("records") or [identity])
        origin = Origin.from_json(state["origin"])
        waiting = self.customer_directory.given_up(identity, state.get("account"), sends)
        step = self.fail_order(identity, records, origin, reason, state.get("account"), message)
        step.add(waiting)
        return step

    def sweep(self) -> Step:
        """The customer directory's sweep (release held orders); then
        CreateSalesOrder again for orders whose Sage result is overdue (`ResendSchedule`), or give
        them up after the last re-send; once an hour, forget failed orders and order numbers older
        than the retention."""
        step = Step("swept")
        now = epoch_ms()
        if now - self._pruned_at >= 3_600_000:
            self._prune(now)
        step.add(self.customer_directory.sweep())
        for identity in list(self.tables.orders.keys()):
            state = self.tables.orders.get(identity)
            if not state or state.get("state") != "commanded":
                continue
            resends = int(state.get("resends") or 0)
            if not state.get("at"):  # commanded by an older version: start its clock now
                self.tables.orders[identity] = {**state, "at": now}
            elif not self.resends.due(int(state["at"]), resends, now):
                continue
            elif self.resends.exhausted(resends):
                step.add(self._give_up(identity, state))
            else:
                step.outbound += self._command_again(identity, state, now)
        return step

    def _prune(self, now: int) -> None:
        self._pruned_at = now
        horizon = now - self.retention_ms
        for identity in list(self.tables.orders.keys()):
            state = self.tables.orders.get(identity) or {}
            if state.get("state") == "failed" and int(state.get("at") or 0) < horizon:
                self.tables.orders.pop(identity, None)
        for number in list(self.tables.order_numbers.keys()):
            if int((self.tables.order_numbers.get(number) or {}).get("at") or 0) < horizon:
                self.tables.order_numbers.pop(number, None)

    # --- the Sage order ---------------------------------------------------------------------

    def _sage_order(
        self, order: Mapping[str, Any], customer: dict[str, Any], order_type: str, changes: Changes
    ) -> SageOrder:
        mappings = self.mappings
        out = copy.deepcopy(dict(order))
        out["envelope"] = dict(out["envelope"])
        out["customer"] = customer
        out["order_type"] = order_type
        out["status"] = "NEW"
        out["sales_order_no"] = None
        lines = out.get("lines") or []
        if not lines:
            raise Permanent("the order has no lines", field="lines")
        currency = str(out.get("currency_code") or mappings.pricing.home_currency).upper()
        rate = mappings.pricing.rate(currency)
        if rate is None:
            raise Permanent(
                f"no exchange rate from {currency} to {mappings.pricing.home_currency} in pricing.yaml",
                field="currency_code",
                value=currency,
            )
        if rate != 1:
            changes.note(f"prices in {mappings.pricing.home_currency} at {rate} per {currency}")
        out["lines"] = [self._line(line, i, rate, changes) for i, line in enumerate(lines, start=1)]
        amounts: dict[str, Decimal] = {}
        for name in (
            "freight_amount",
            "discount_amount",
            "sales_tax_amount",
            "deposit_amount",
            "taxable_amount",
            "non_taxable_amount",
        ):
            if out.get(name) is not None:
                amounts[name] = (_decimal(out[name], name) * rate).quantize(CENT, rounding=ROUND_HALF_UP)
                out[name] = amounts[name]
        total = sum((line["extension_amount"] for line in out["lines"]), Decimal("0.00"))
        total += amounts.get("freight_amount", Decimal(0)) + amounts.get("sales_tax_amount", Decimal(0))
        total -= amounts.get("discount_amount", Decimal(0))
        out["total_amount"] = total.quantize(CENT)
        out["currency_code"] = mappings.pricing.home_currency
        # the mapped columns; the order itself carries what is structural (items, prices, amounts)
        header_columns, line_columns, _ = order_to_sage(mappings, order, changes)
        return SageOrder(out, header_columns, line_columns)

    def item_code_for(
        self, product_code: str | None, item_code: str | None, where: str, changes: Changes | None = None
    ) -> str:
        """The Sage ItemCode of an order line: its own ItemCode; else its ProductCode through the
        products.yaml lookup, the item cross-reference from item.v1 (a Product2's
        Sage_Item_Code__c), or the code itself when Sage published it as an ItemCode; else, with
        `match_loosely`, the one of those the ProductCode equals once trimmed and case-folded
        (noted in `changes`; two candidates are Permanent, naming both). Nothing found: Permanent,
        "unknown product". A Product2 alone (no Sage_Item_Code__c) does not make an item."""
        if item_code:
            return item_code
        if not product_code:
            raise Permanent(
                f"{where} has neither a ProductCode nor an ItemCode", field=f"{where}.product_code"
            )
        code = self._item_code(product_code, where)
        if code is None and self.mappings.products.match_loosely:
            code = self._loose_item_code(product_code, where)
            if code is not None and changes is not None:
                changes.matched(where, product_code, code)
        if code is None:
            raise Permanent(
                f"{where}: unknown product {product_code!r}: no ItemCode for it in products.yaml lookup "
                "or on item.v1",
                field=f"{where}.product_code",
                value=product_code,
            )
        return code

    def _item_code(self, product_code: str, where: str) -> str | None:
        """The ItemCode `product_code` names exactly (lookup, cross-reference, Sage's own code)."""
        products = self.mappings.products
        if product_code in products.lookup:
            code = products.lookup[product_code]
            if products.require_known_item and not self._sage_has(code):
                raise Permanent(
                    f"{where}: ProductCode {product_code!r} maps to ItemCode {code!r}, which Sage has not "
                    "published on item.v1",
                    field=f"{where}.product_code",
                    value=product_code,
                )
            return code
        mapped = self.tables.products.get(product_code)
        if mapped:
            return str(mapped)
        return product_code if self._sage_has(product_code) else None

    def _loose_item_code(self, product_code: str, where: str) -> str | None:
        """The one ItemCode that a key equal to `product_code` once trimmed and case-folded names.
        Reads every key of the lookup and both cross-references: only for codes no exact lookup knows."""
        wanted = product_code.strip().casefold()
        keys = (*self.mappings.products.lookup, *self.tables.products.keys(), *self.tables.items.keys())
        near = dict.fromkeys(str(k) for k in keys if str(k).strip().casefold() == wanted)
        found = sorted({code for key in near if (code := self._item_code(key, where)) is not None})
        if len(found) > 1:
            raise Permanent(
                f"{where}: ProductCode {product_code!r} could be ItemCode "
                + " or ".join(repr(code) for code in found)
                + "; add the one meant to products.yaml lookup",
                field=f"{where}.product_code",
                value=product_code,
            )
        return found[0] if found else None

    def _sage_has(self, code: str) -> bool:
        """True when Sage published `code` on item.v1 (Product2 records only add links to it)."""
        entry: Mapping[str, Any] = self.tables.items.get(code) or {}
        return entry.get("active") is not None

    def _line(
        self, line: Mapping[str, Any], position: int, rate: Decimal, changes: Changes
    ) -> dict[str, Any]:
        mappings = self.mappings
        out = dict(line)
        line_no = int(out.get("line_no") or position)
        where = f"lines[{line_no}]"
        code = self.item_code_for(out.get("product_code"), out.get("item_code"), where, changes)
        item = self.tables.items.get(code) or {}
        if item.get("deleted") or (mappings.products.reject_inactive_items and item.get("active") is False):
            raise Permanent(
                f"{where}: ItemCode {code!r} is {'deleted' if item.get('deleted') else 'inactive'} in Sage",
                field=f"{where}.item_code",
                value=code,
            )
        out["item_code"] = code
        quantity = _decimal(out.get("quantity_ordered"), f"{where}.quantity_ordered")
        pricing = mappings.pricing
        rounding = ROUND_HALF_UP if pricing.rounding == "half_up" else ROUND_HALF_EVEN
        step = Decimal(1).scaleb(-pricing.unit_price_decimals)
        standard = item.get("standard_unit_price")
        price = _decimal(out.get("unit_price"), f"{where}.unit_price")
        typed = price
        if price == 0 and pricing.zero_price == "error":
            raise Permanent(
                f"{where}: unit price 0 is not allowed (pricing.yaml zero_price)", field=f"{where}.unit_price"
            )
        if price == 0 and pricing.zero_price == "sage_standard":
            if standard is None:
                raise Permanent(
                    f"{where}: unit price 0 and no Sage StandardUnitPrice known for {code!r}",
                    field=f"{where}.unit_price",
                )
            price = _decimal(standard, f"{where}.standard_unit_price")  # already home currency
        else:
            price = price * rate
        exact, price = price, price.quantize(step, rounding=rounding)
        if typed == 0 and price != 0:
            changes.set(f"{where}.unit_price", price, "Sage's standard price")
        elif rate == 1 and price != exact:
            changes.set(f"{where}.unit_price", price)
        limit = pricing.max_discount_percent
        if limit is not None and standard is not None and Decimal(str(standard)) > 0:
            floor = Decimal(str(standard)) * (1 - limit / 100)
            if price < floor:
                raise Permanent(
                    f"{where}: unit price {price} is more than {limit}% below Sage's standard price "
                    f"{standard} of {code!r}",
                    field=f"{where}.unit_price",
                    value=str(price),
                )
        out["unit_price"] = price
        out["extension_amount"] = (quantity * price).quantize(CENT, rounding=ROUND_HALF_UP)
        return out

    # --- failures and write-backs -------------------------------------------------------------

    def fail_order(
        self,
        identity: str,
        records: list[str],
        origin: Origin,
        exc: Permanent,
        account: str | None,
        message: str | None = None,
    ) -> Step:
        """Fail the order for `exc`: kept as failed (for the retention), its original record
        dead-lettered with the whole reason, Sage_Sync_Status__c = Error on its Salesforce
        records with `message` (a short reason for sales users), else the reason. When it was
        bringing its Account's new customer, the orders held behind it go again."""
        self.tables.orders[identity] = {
            "state": "failed",
            "records": records,
            "account": account,
            "command_id": command_id("CreateSalesOrder", identity),
            "reason": exc.reason,
            "at": epoch_ms(),
        }
        step = Step("failed", dead_letters=[(origin, exc)])
        step.outbound += self._sync(records, "error", message or exc.reason, identity, "failed")
        step.add(self.customer_directory.order_failed(identity, account))
        return step

    def _message(self, text: str | None, obj: str, field_name: str) -> str | None:
        """`text` as the sync message: readable by a sales user, cut to the field's length."""
        if text is None:
            return None
        text = for_user(text, "Sage 100 could not take the order; operations have the details")
        return self.mappings.salesforce_text(text, obj, field_name)

    def _sync(
        self,
        records: list[str],
        status: str,
        message: str | None,
        about: str,
        why: str,
        extra: Mapping[str, Any] | None = None,
        event_time: datetime | None = None,
        keep_message: bool = False,
    ) -> list[Outbound]:
        """Sync status (+ message unless `keep_message`, + extra fields) on each Opportunity/Order
        in `records`."""
        write_back = self.mappings.orders.write_back
        value = {
            "synced": write_back.sync_status.synced,
            "error": write_back.sync_status.error,
            "pending": write_back.sync_status.pending,
        }[status]
        out = []
        for record in records:
            obj = sobject_for(record)
            if obj not in write_back.objects:
                continue
            fields: dict[str, Any] = {write_back.sync_status.field: value, **(extra or {})}
            if write_back.message_field and not keep_message:
                fields[write_back.message_field] = self._message(message, obj, write_back.message_field)
            out.append(
                commands.salesforce_update(
                    obj,
                    record,
                    fields,
                    cid=command_id(
                        "OrderSync",
                        record,
                        about,
                        why,
                        status,
                        message or "",
                        repr(sorted((extra or {}).items())),
                    ),
                    correlation_id=about,
                    source_record_id=about,
                    event_time=event_time,
                )
            )
        return out

    def status_fields(self, obj: str, code: str | None, status: str | None) -> dict[str, Any] | None:
        """Sage_Order_Status__c (and the extra fields) for a Sage status, per orders.yaml."""
        status_map = self.mappings.orders.order_status
        value = status_map.value_for(code, status)
        if value is None:
            return None
        return {
            self.mappings.orders.write_back.order_status: value,
            **status_map.extra_fields.get(obj, {}).get(value, {}),
        }

    # --- sage.results.v1 -------------------------------------------------------------------

    def on_sage_result(self, key: str | None, result: Mapping[str, Any], origin: Origin) -> Step:
        kind = result.get("kind")
        if kind == "UPSERT_CUSTOMER":
            return self.customer_directory.on_customer_result(result, origin)
        if kind == "CREATE_SALES_ORDER":
            return self._order_result(key, result, origin)
        return Step("skipped")

    def _order_result(self, key: str | None, result: Mapping[str, Any], origin: Origin) -> Step:
        identity = result.get("salesforce_record_id") or key
        if not identity:
            return Step("skipped")
        identity = str(identity)
        state = dict(self.tables.orders.get(identity) or {})
        records = list(state.get("records") or [identity])
        when = (result.get("envelope") or {}).get("event_time")
        if result.get("outcome") == "REJECTED":
            error = result.get("error") or {}
            reason = error.get("reason") or "Sage refused the order"
            failed = Origin.from_json(state["origin"]) if state.get("origin") else origin
            step = self.fail_order(
                identity,
                records,
                failed,
                Permanent(f"Sage 100 refused the order: {reason}", field=error.get("field")),
                state.get("account"),
                sage_refusal(error, "order"),
            )
            step.outcome = "order_rejected"
            return step
        if result.get("outcome") not in ("CREATED", "EXISTING", "UPDATED"):
            return Step("skipped")
        number = result.get("sales_order_no")
        # what the rules changed, said with Synced; a repeated answer (the order confirmed and
        # forgotten already) leaves the message as the first one wrote it
        message = Changes(list(state.get("notes") or [])).message()
        step = Step("order_synced")
        for record in records:
            obj = sobject_for(record)
            if obj is None:
                continue
            extra: dict[str, Any] = {}
            if number:
                extra[self.mappings.orders.write_back.order_number] = number
            extra.update(
                self.status_fields(obj, result.get("source_status"), result.get("order_status")) or {}
            )
            step.outbound += self._sync(
                [record],
                "synced",
                message,
                str(result.get("command_id")),
                "result",
                extra=extra,
                event_time=when,
                keep_message=not state,
            )
        if number:
            self.tables.order_numbers[str(number)] = {
                "records": records,
                "lines": _line_ids(result),
                "at": epoch_ms(),
            }
        self.tables.orders.pop(identity, None)  # done: Sage has it, nothing left to remember
        # the customer Sage wrote it for: a new one is linked now, and its held orders follow
        step.add(self.customer_directory.on_order_result(identity, state.get("account"), result, origin))
        return step

    # --- item.v1 -----------------------------------------------------------------------------

    def on_item(self, key: str | None, item: Mapping[str, Any], origin: Origin) -> Step:
        """item.v1: the item cross-reference and the item sync. Both sources publish items there:
        Sage's CI_Item records say whether an item is active and its price, and their mapped
        fields go to the known Product2 (`_item_to_salesforce`); Salesforce's Product2 records add
        the ProductCode -> ItemCode link (Product2.Sage_Item_Code__c), and their custom fields go
        to the Sage item (`_item_to_sage`). A value a map or type refuses is dead-lettered."""
        code = item.get("item_code") or key
        if not code:
            raise Permanent("the item has no item_code", field="item_code")
        code = str(code)
        previous = self.tables.items.get(code) or {}
        entry = {
            "active": previous.get("active"),
            "deleted": previous.get("deleted", False),
            "product_code": item.get("product_code") or previous.get("product_code"),
            "standard_unit_price": previous.get("standard_unit_price"),
            "salesforce_product_id": item.get("salesforce_product_id")
            or previous.get("salesforce_product_id"),
        }
        if (item.get("envelope") or {}).get("source_system") != "SALESFORCE":
            price = item.get("standard_unit_price")
            entry.update(
                active=bool(item.get("active", True)),
                deleted=bool(item.get("deleted", False)),
                standard_unit_price=str(price) if price is not None else None,
            )
        if entry != previous:
            self.tables.items[code] = entry
        product = item.get("product_code")
        if product and product != code and self.tables.products.get(product) != code:
            self.tables.products[str(product)] = code
        step = Step("learned")
        if item.get("deleted"):
            return step
        try:
            if (item.get("envelope") or {}).get("source_system") == "SALESFORCE":
                step.outbound += self._item_to_sage(code, item, origin)
            else:
                step.outbound += self._item_to_salesforce(code, item, entry, origin)
        except Permanent as exc:  # the cross-reference above still counts
            step.dead_letters.append((origin, exc))
        return step

    def _item_to_salesforce(
        self, code: str, item: Mapping[str, Any], entry: Mapping[str, Any], origin: Origin
    ) -> list[Outbound]:
        """A Sage item's mapped fields (products.yaml item_fields, custom fields) to its Product2,
        by the Product2 ID item.v1 made known; none known: nothing (creating products is not the
        item sync's)."""
        product = entry.get("salesforce_product_id")
        fields = item_to_salesforce(self.mappings, item) if product else {}
        if not fields:
            return []
        cid = command_id("ProductFromSage", code, *origin.position())
        update = commands.salesforce_update(
            self.mappings.products.inventory.sobject,
            str(product),
            fields,
            cid=cid,
            correlation_id=cid,
            source_record_id=code,
            event_time=(item.get("envelope") or {}).get("event_time"),
        )
        return [update]

    def _item_to_sage(self, code: str, item: Mapping[str, Any], origin: Origin) -> list[Outbound]:
        """A Product2's custom fields to the CI_Item UDF columns of the Sage item it names
        (Sage_Item_Code__c, an item Sage published on item.v1), by an UpdateItem; a Product2 that
        is no Sage item: nothing (creating items is not the item sync's)."""
        columns = item_to_sage(self.mappings, item) if self._sage_has(code) else {}
        if not columns:
            return []
        cid = command_id("UpdateItem", code, *origin.position())
        when = (item.get("envelope") or {}).get("event_time")
        return [commands.update_item(code, columns, cid, code, event_time=when)]
