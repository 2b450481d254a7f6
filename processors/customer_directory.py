"""The customer directory: which Sage 100 customer a Salesforce Account is, and the customer the
first order of an account Sage does not know yet brings with it.

What it owns: `CustomerDirectory`, the customer cross-reference, the accounts Sage does not know
yet, which of their orders brings the customer to Sage and the orders waiting for its answer. The
order pipeline (processors/orders.py) asks it for an order's customer and tells it Sage's answers;
the customer sync (processors/customers.py) feeds it customer.v1, behind its link guard
(`guarded`), and sends Account changes through it. The link rule itself is
processors/customer_links.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from processors import commands
from processors.commands import Outbound, command_id
from processors.customer_links import CustomerLinks, LinkConflict, LinkRefused
from processors.field_mapping import customer_columns, customer_for_sage
from processors.mapping_model import Mappings
from processors.metrics import ORDERS_UNANSWERED
from processors.state import Decoder, MappingsRef, Origin, Step, Tables, from_b64, to_b64
from processors.sync_message import Changes, for_user, sage_refusal
from sagesf.errors import Permanent
from sagesf.link_state import CUSTOMER, UNLINKED, LinkBook, pair_key

log = logging.getLogger(__name__)

__all__ = ["CustomerDirectory", "NewCustomer", "OrderProcessing"]

# a customer.v1 handler (processors/customers.py CustomerSync.on_customer)
CustomerHandler = Callable[[str | None, Mapping[str, Any], Origin], Step]


class OrderProcessing(Protocol):
    """What the directory needs of the order pipeline: a waiting order goes back to it, to be
    processed again once its customer is known (or once no other order brings it), or failed."""

    def on_sales_order(self, key: str | None, order: Mapping[str, Any], origin: Origin) -> Step: ...

    def fail_order(
        self,
        identity: str,
        records: list[str],
        origin: Origin,
        exc: Permanent,
        account: str | None,
        message: str | None = None,
    ) -> Step: ...


@dataclass(frozen=True)
class NewCustomer:
    """The customer an order brings to Sage for an account Sage does not know yet."""

    account: str
    ref: dict[str, Any]  # the order's customer: the Account, no Sage numbers (the sink matches the UDF)
    customer: dict[str, Any]  # the Customer of the CreateSalesOrder, ready for Sage
    columns: dict[str, str]  # its AR_Customer columns (CreateSalesOrder.customer_columns)
    notes: list[str]  # what the mapping rules changed in it: the Account's sync message once linked
    source: str | None  # the account's customer.v1 record it was built from (base64); None: the order's data


class CustomerDirectory:
    """Which Sage customer (ARDivisionNo-CustomerNo) each Salesforce Account is.

    Tables it keeps: `customers` (the cross-reference, through `links`, processors/
    customer_links.py), `accounts` (the latest Salesforce Customer record of an account Sage does
    not know yet), `held` (per such account: the order bringing its customer, the `carrier`, and
    the orders waiting for Sage's answer to it) and the `held` entries of `orders` (each with its
    original record, to process it again).
    - `customer_of(order)`: ARDivisionNo-CustomerNo on the order itself (Account.ExternalID__c,
      learnt into the cross-reference too), else the cross-reference by Account ID; None when
      Sage has no customer for the account yet; `LinkRefused` when the order's Account names a
      customer linked to another Account (or is linked to another customer).
    - `new_customer(identity, order)`: the first order of an account Sage does not know brings
      its customer: the CreateSalesOrder carries it (`NewCustomer`), built from the account's
      latest Salesforce Customer record (customer.v1) or, failing that, from the order's customer
      name and addresses, and the Sage sink writes customer and order as one unit, so an order
      Sage refuses leaves no customer behind. None while another order of the account brings it:
      that order is `hold`-ed until Sage answered, since commands are keyed by opportunity and
      two orders bringing one customer could reach Sage side by side and make it twice.
      `carrying` records the carrier once its command is built.
    - `on_order_result`: Sage's answer to an order. When Sage created or found its customer the
      link is learnt from it, never before: the cross-reference, and on the Account
      ExternalID__c and Sage_Sync_Status__c = Synced (with what the mapping rules changed in the
      customer as the sync message); an Account record that arrived after the carrier's command
      was built follows as an UpsertCustomer of the new customer; the waiting orders go to Sage
      with its number. An answer whose link contradicts an existing one is refused like any
      claim (dead letter, Error on the Accounts) and the waiting orders fail with its reason.
      `order_failed`: the carrier failed (Sage refused it, it no longer maps),
      so no customer exists: the waiting orders go again and the first of them brings it.
      `given_up`: Sage never answered the carrier: its waiting orders fail with it.
    - `guarded(handler)`: the customers agent's handler behind the link rule: a customer.v1
      record whose link contradicts an existing one, or names a pair an operator unlinked
      (`sagesf link unlink`: Sage's UDF stays until someone clears it in Sage), is refused before
      the customer sync sees it (dead letter with the reason, Sage_Sync_Status__c = Error on the
      Accounts concerned), so no Account or Sage customer is renamed or linked again by it.
    - `on_customer`: customer.v1. A record with ARDivisionNo-CustomerNo feeds the cross-reference
      and releases the account's waiting orders; one without is remembered as the account's data.
    - `on_customer_result`: Sage's answer to an UpsertCustomer (the customer sync's updates).
      Updated, created or existing: the cross-reference learns it, the Account gets ExternalID__c
      and Sage_Sync_Status__c = Synced; unchanged and already linked, nothing is written back
      (this also ends any echo loop of the customer sync). Refused by Sage: the Account gets
      Sage_Sync_Status__c = Error with a short reason.
    - `sweep()`: releases waiting orders whose customer became known some other way, or whose
      carrier awaits no answer any more. The carrier itself is re-sent, backing off, and given
      up by the order pipeline (`OrderPipeline.sweep`, `ResendSchedule`).

    An Account waiting for link review (record linking suggested it may be a Sage customer
    already) gets no new customer: its order fails with a reason saying so, Error and the reason
    on the Opportunity, the record in dlq.orders.v1, to be replayed once the pair is decided. It
    fails rather than waits because a review has no deadline: a held order would sit Pending with
    the resend and give-up clock of an order that carries its customer, while a failed one shows
    the reason to the sales user and to operations at once, and its replay creates it once.

    Limits: customers are created in Sage only with orders; an Account change reaches Sage
    through the customer sync only once the account is linked. An order is not held for its
    Account's customer.v1 record (CDC publishes an Account only when it changes, so there may be
    none): without it the customer is made from the order's name and addresses. An order Sage
    refuses writes nothing to its Account; the reason is on the Opportunity/Order.
    """

    def __init__(
        self,
        mappings: MappingsRef,
        tables: Tables,
        orders: OrderProcessing,
        *,
        decode_order: Decoder,
        decode_customer: Decoder,
    ) -> None:
        self.mappings_ref = mappings
        self.tables = tables
        self.orders = orders
        self.decode_order = decode_order
        self.decode_customer = decode_customer
        self.links = CustomerLinks(tables.customers)
        self.review = LinkBook(tables.link_state)  # record linking's pairs (processors/link_review.py)

    @property
    def mappings(self) -> Mappings:
        return self.mappings_ref.current

    # --- an order's customer ----------------------------------------------------------------

    def customer_of(self, order: Mapping[str, Any]) -> dict[str, Any] | None:
        """The customer of a CreateSalesOrder for `order`; None while Sage has none for its Account.
        Permanent when the order names no customer at all."""
        ref = order.get("customer") or {}
        account = ref.get("salesforce_account_id")
        if ref.get("ar_division_no") and ref.get("customer_no"):
            if account:  # Account.ExternalID__c on the order: a cross-reference entry too
                customer = (str(ref["ar_division_no"]), str(ref["customer_no"]))
                conflict = self.links.link(str(account), customer, "Account ExternalID__c")
                if conflict is not None:
                    raise LinkRefused(conflict)
            return {
                "salesforce_account_id": account,
                "ar_division_no": ref["ar_division_no"],
                "customer_no": ref["customer_no"],
                "name": ref.get("name"),
            }
        if not account:
            raise Permanent(
                "the order names no customer: neither ARDivisionNo-CustomerNo (Account.ExternalID__c) "
                "nor a Salesforce Account ID",
                field="customer",
            )
        known = self.linked_customer(account)
        if known is None:
            return None
        return {
            "salesforce_account_id": account,
            "ar_division_no": known["ar_division_no"],
            "customer_no": known["customer_no"],
            "name": ref.get("name"),
        }

    def forget(self, account: str, customer: tuple[str, str]) -> None:
        """An operator unlinked `account` from `customer` (`sagesf link unlink`): the
        cross-reference entry goes, if it is that link."""
        if self.links.conflict(account, customer, "sagesf link unlink") is None and self.linked_customer(
            account
        ):
            del self.tables.customers[account]
            self.links.changed(account)

    def linked_customer(self, account: str) -> Mapping[str, Any] | None:
        """The cross-reference entry of `account` ({ar_division_no, customer_no}), if any."""
        return self.links.of_account(account)

    def learn(
        self, account: str, division: str, number: str, source: str = "Sage 100"
    ) -> LinkConflict | None:
        """Record that `account` is Sage customer `division`-`number`, unless that contradicts a
        link (then nothing changes and the conflict is returned)."""
        return self.links.link(account, (division, number), source)

    def new_customer(self, identity: str, order: Mapping[str, Any]) -> NewCustomer | None:
        """The customer order `identity` brings to Sage for its account, which Sage does not know
        yet; None while another order of the account brings it (see the class doc). Permanent
        when the customer cannot go to Sage (no name, an address that does not fit), or while
        the Account waits for link review (the class doc says why it fails, not waits)."""
        ref = order.get("customer") or {}
        account = str(ref["salesforce_account_id"])  # customer_of made sure there is one
        if self.review.waits_for_review(CUSTOMER, "salesforce", account):
            raise Permanent(
                f"Account {account} waits for link review: it may be a Sage 100 customer already, so "
                "none is created for it. Decide the suggestion (`sagesf link review`, then accept or "
                "reject), then replay this dead letter",
                field="customer",
                value=account,
            )
        carrier = (self.tables.held.get(account) or {}).get("carrier")
        if carrier not in (None, identity) and self._awaits_answer(carrier):
            return None
        stored = self.tables.accounts.get(account)
        changes = Changes()
        customer = self.customer_for_sage(self._customer_data(account, order, stored), account, changes)
        unlinked = {"salesforce_account_id": account, "ar_division_no": None, "customer_no": None}
        columns = customer_columns(self.mappings, customer)
        ref = {**unlinked, "name": ref.get("name")}
        return NewCustomer(account, ref, customer, columns, changes.notes, stored)

    def carrying(self, identity: str, new: NewCustomer) -> None:
        """Order `identity` was commanded with `new`: the account's other orders wait for its answer."""
        waiting = dict(self.tables.held.get(new.account) or {"orders": []})
        waiting["orders"] = [other for other in waiting.get("orders", []) if other != identity]
        waiting.update(carrier=identity, customer=new.source, notes=new.notes)
        self.tables.held[new.account] = waiting

    def hold(self, identity: str, records: list[str], origin: Origin, account: str) -> None:
        """Keep order `identity` until Sage answered the order that brings its account's customer."""
        self.tables.orders[identity] = {
            "state": "held",
            "records": records,
            "account": account,
            "command_id": command_id("CreateSalesOrder", identity),
            "origin": origin.to_json(),
        }
        waiting = dict(self.tables.held.get(account) or {"orders": []})
        if identity not in waiting["orders"]:
            waiting["orders"] = [*waiting["orders"], identity]
        self.tables.held[account] = waiting

    def held_count(self) -> int:
        return sum(len((w or {}).get("orders", [])) for w in self.tables.held.values())

    def _awaits_answer(self, identity: str | None) -> bool:
        return identity is not None and (self.tables.orders.get(identity) or {}).get("state") == "commanded"

    # --- the Sage customer ------------------------------------------------------------------

    def _customer_data(self, account: str, order: Mapping[str, Any], stored: str | None) -> dict[str, Any]:
        """The account's Salesforce Customer record (`stored`), else the order's customer data."""
        if stored is not None:
            return dict(self.decode_customer(from_b64(stored) or b""))
        ref = order.get("customer") or {}
        bill_to = order.get("bill_to") or {}
        return {
            "salesforce_account_id": account,
            "name": ref.get("name") or bill_to.get("name"),
            "status": "ACTIVE",
            "billing_address": order.get("bill_to"),
            "shipping_address": order.get("ship_to"),
        }

    def customer_for_sage(
        self, customer: Mapping[str, Any], account: str, changes: Changes | None = None
    ) -> dict[str, Any]:
        """The Customer of an UpsertCustomer (processors/field_mapping.py `customer_for_sage`)."""
        return customer_for_sage(self.mappings, customer, account, changes)

    # --- the link guard ---------------------------------------------------------------------

    def guarded(self, handler: CustomerHandler) -> CustomerHandler:
        """`handler` for customer.v1 records, behind the link rule (see the class doc)."""

        def on_customer(key: str | None, customer: Mapping[str, Any], origin: Origin) -> Step:
            conflict = self._record_conflict(customer)
            if conflict is None:
                return handler(key, customer, origin)
            return self.refuse(conflict, origin, origin.position())

        return on_customer

    def _record_conflict(self, customer: Mapping[str, Any]) -> LinkConflict | None:
        account, division = customer.get("salesforce_account_id"), customer.get("ar_division_no")
        number = customer.get("customer_no")
        if customer.get("deleted") or not (account and division and number):
            return None
        source = "UDF_SALESFORCE_ID in Sage 100" if _from_sage(customer) else "Account ExternalID__c"
        claim = (str(account), (str(division), str(number)))
        if self._unlinked(*claim):
            return LinkConflict(*claim, source, unlinked=True)
        return self.links.conflict(*claim, source)

    def _unlinked(self, account: str, customer: tuple[str, str]) -> bool:
        """True when an operator unlinked `account` and `customer` (and nobody linked them since)."""
        pair = self.review.get(pair_key(CUSTOMER, account, "-".join(customer)))
        return pair is not None and pair.state == UNLINKED

    def refuse(self, conflict: LinkConflict, origin: Origin, about: tuple[str, ...]) -> Step:
        """A record or answer that claims `conflict`: dead-lettered, the reason on the Accounts."""
        step = Step("link_refused", dead_letters=[(origin, LinkRefused(conflict))])
        step.outbound += self.link_errors(conflict, about)
        return step

    def link_errors(self, conflict: LinkConflict, about: tuple[str, ...]) -> list[Outbound]:
        """Sage_Sync_Status__c = Error with the conflict's reason on each Account concerned."""
        return [
            update
            for account in conflict.accounts
            for update in self.account_sync_error(account, conflict.reason, about)
        ]

    # --- customer.v1 ------------------------------------------------------------------------

    def on_customer(self, key: str | None, customer: Mapping[str, Any], origin: Origin) -> Step:
        """customer.v1: learn Account <-> ARDivisionNo-CustomerNo and release the orders waiting for
        it; an account Sage does not know yet: its data, for the customer its first order brings."""
        account = customer.get("salesforce_account_id")
        if not account:
            return Step("skipped")
        if customer.get("deleted"):
            self.tables.accounts.pop(str(account), None)
            return Step("skipped")
        division, number = customer.get("ar_division_no"), customer.get("customer_no")
        if division and number:
            conflict = self.learn(str(account), str(division), str(number))
            if conflict is not None:  # only without the guard: nothing is learnt or released
                return self.refuse(conflict, origin, origin.position())
            carrier = (self.tables.held.get(str(account)) or {}).get("carrier")
            if not (self._awaits_answer(carrier) and _from_sage(customer)):
                # kept for `_linked` when this is Sage's copy of the customer an order brings
                self.tables.accounts.pop(str(account), None)
            released = self._release(str(account))
            step = Step("learned")
            step.add(released)
            return step
        if origin.value is not None:  # an order bringing the customer meanwhile: see `_linked`
            self.tables.accounts[str(account)] = to_b64(origin.value)
        return Step("remembered")

    # --- Sage's answers -----------------------------------------------------------------------

    def on_order_result(
        self, identity: str, account: str | None, result: Mapping[str, Any], origin: Origin
    ) -> Step:
        """Sage created (or found) the customer of order `identity`: learn the link from its answer
        (see the class doc). The order's own write-back is the order pipeline's."""
        ref = result.get("customer") or {}
        account = ref.get("salesforce_account_id") or account
        division, number = ref.get("ar_division_no"), ref.get("customer_no")
        if not (account and division and number):
            return Step("skipped")
        account, division, number = str(account), str(division), str(number)
        carried = (self.tables.held.get(account) or {}).get("carrier") == identity
        linked_before = self.linked_customer(account) is not None
        conflict = self.learn(account, division, number, "Sage 100's answer")
        if conflict is not None:  # the order is in Sage; no waiting order may follow it there
            step = self.refuse(conflict, origin, (str(result.get("command_id")),))
            step.add(self._fail_held(account, conflict.reason, conflict.reason))
            return step
        step = Step("customer_linked")
        if carried or result.get("customer_created") or not linked_before:
            step.outbound += self._linked(account, division, number, result)
        step.add(self._release(account))
        return step

    def order_failed(self, identity: str, account: str | None) -> Step:
        """Order `identity` failed. When it was bringing its account's customer, none exists: the
        orders waiting for it go again, and the first of them brings the customer."""
        if account and (self.tables.held.get(account) or {}).get("carrier") == identity:
            return self._release(account)
        return Step("skipped")

    def given_up(self, identity: str, account: str | None, sends: int) -> Step:
        """Sage never answered order `identity`: when it was bringing its account's customer, the
        orders waiting for it fail too (counted in sagesf_processor_orders_unanswered_total)."""
        if not account or (self.tables.held.get(account) or {}).get("carrier") != identity:
            return Step("skipped")
        reason = (
            f"no answer from Sage 100 to order {identity}, which brings the customer of Account "
            f"{account}, after {sends} sends; not sent again (SAGESF_PROCESSORS__ORDER_RESEND_LIMIT). "
            "Check the Sage sink, then replay this dead letter"
        )
        message = f"Sage 100 has not answered for this customer after {sends} tries; operations are alerted"
        step = self._fail_held(account, reason, message)
        ORDERS_UNANSWERED.inc(len(step.dead_letters))
        return step

    def _linked(self, account: str, division: str, number: str, result: Mapping[str, Any]) -> list[Outbound]:
        """The Account linked (ExternalID__c, Synced); and the account's latest record to the new
        customer when it came after the carrier's command was built."""
        waiting = self.tables.held.get(account) or {}
        notes = Changes(list(waiting.get("notes") or []))
        cid_base = str(result.get("command_id"))
        when = (result.get("envelope") or {}).get("event_time")
        out = [self._account_synced(account, division, number, notes, cid_base, when)]
        stored = self.tables.accounts.pop(account, None)
        if stored is not None and stored != waiting.get("customer"):
            try:
                record = dict(self.decode_customer(from_b64(stored) or b""))
                data = self.customer_for_sage(record, account)
            except Permanent as exc:
                log.warning("Account %s: its customer data cannot be sent to Sage: %s", account, exc)
                return out
            data["ar_division_no"], data["customer_no"] = division, number
            cid = command_id("UpdateCustomer", account, f"{division}-{number}", stored)
            changed = (record.get("envelope") or {}).get("event_time")
            columns = customer_columns(self.mappings, data)
            out.append(commands.upsert_customer(data, cid, account, cid, columns=columns, event_time=changed))
        return out

    def on_customer_result(self, result: Mapping[str, Any], origin: Origin) -> Step:
        """A SageResult of kind UPSERT_CUSTOMER (see the class doc)."""
        ref = result.get("customer") or {}
        account = result.get("salesforce_record_id") or ref.get("salesforce_account_id")
        if not account:
            return Step("skipped")
        account = str(account)
        when = (result.get("envelope") or {}).get("event_time")
        cid_base = str(result.get("command_id"))
        if result.get("outcome") == "REJECTED":
            step = Step("customer_rejected")
            step.outbound += self.account_sync_error(
                account, sage_refusal(result.get("error"), "customer"), (cid_base,), when
            )
            return step
        if result.get("outcome") not in ("CREATED", "UPDATED", "EXISTING"):
            return Step("skipped")
        division, number = ref.get("ar_division_no"), ref.get("customer_no")
        if not (division and number):
            return Step("skipped")
        link = {"ar_division_no": str(division), "customer_no": str(number)}
        if result.get("outcome") == "EXISTING" and self.tables.customers.get(account) == link:
            # nothing changed in Sage and the Account is linked already: nothing to write back
            # (this also ends any echo loop of the customer sync, processors/customers.py)
            step = Step("customer_unchanged")
            step.add(self._release(account))
            return step
        conflict = self.learn(account, str(division), str(number), "Sage 100's answer")
        if conflict is not None:  # waiting orders must not go to another Account's customer
            step = self.refuse(conflict, origin, (cid_base,))
            step.add(self._fail_held(account, conflict.reason, conflict.reason))
            return step
        notes = Changes(list((self.tables.held.get(account) or {}).get("notes") or []))
        self.tables.accounts.pop(account, None)
        step = Step("customer_synced")
        step.outbound.append(self._account_synced(account, str(division), str(number), notes, cid_base, when))
        step.add(self._release(account))
        return step

    def _account_synced(
        self, account: str, division: str, number: str, notes: Changes, cid_base: str, when: datetime | None
    ) -> Outbound:
        """ExternalID__c = `division`-`number` and Sage_Sync_Status__c = Synced (with `notes` as
        the sync message) on the Account."""
        write_back = self.mappings.customers.write_back
        message = {write_back.message_field: self._text(notes.message())} if write_back.message_field else {}
        return commands.salesforce_update(
            "Account",
            account,
            {
                self.mappings.customers.external_id: f"{division}-{number}",
                write_back.sync_status.field: write_back.sync_status.synced,
                **message,
            },
            cid=command_id("AccountSync", account, cid_base, "synced", f"{division}-{number}"),
            correlation_id=cid_base,
            source_record_id=f"{division}-{number}",
            event_time=when,
        )

    def account_sync_error(
        self, account: str, reason: str, about: tuple[str, ...], when: datetime | None = None
    ) -> list[Outbound]:
        """Sage_Sync_Status__c = Error (and the reason, if a sales user can read it) on an Account."""
        write_back = self.mappings.customers.write_back
        fields: dict[str, Any] = {write_back.sync_status.field: write_back.sync_status.error}
        if write_back.message_field:
            fields[write_back.message_field] = self._text(
                for_user(reason, "Sage 100 could not take the customer; operations have the details")
            )
        update = commands.salesforce_update(
            "Account",
            account,
            fields,
            cid=command_id("AccountSync", account, *about, "error", reason),
            correlation_id=about[0],
            source_record_id=account,
            event_time=when,
        )
        return [update]

    def _text(self, text: str | None) -> str | None:
        """`text` cut to what the Account's sync message field holds."""
        field_name = self.mappings.customers.write_back.message_field
        if text is None or field_name is None:
            return text
        return self.mappings.salesforce_text(text, "Account", field_name)

    # --- waiting orders -----------------------------------------------------------------------

    def _take_held(self, account: str) -> Iterator[tuple[str, Mapping[str, Any], Origin]]:
        """Each order still held for `account`, with its original record; the account's entry is
        removed, or only emptied while its carrier awaits Sage's answer (which `_linked` reads)."""
        waiting = self.tables.held.pop(account, None) or {}
        if self._awaits_answer(waiting.get("carrier")):
            self.tables.held[account] = {**waiting, "orders": []}
        for identity in waiting.get("orders", []):
            state = self.tables.orders.get(identity)
            if not state or state.get("state") != "held":
                continue
            yield identity, state, Origin.from_json(state["origin"])

    def _release(self, account: str) -> Step:
        """Process again every order held for `account`: its customer is known now, or the order
        that was bringing it awaits no answer any more (then the first of them brings it)."""
        step = Step("released")
        for identity, _, origin in self._take_held(account):
            try:
                order = self.decode_order(origin.value or b"")
            except Permanent as exc:
                step.dead_letters.append((origin, exc))
                continue
            step.add(self.orders.on_sales_order(identity, order, origin))
        return step

    def _fail_held(self, account: str, reason: str, message: str) -> Step:
        """Fail every order held for `account`: `reason` in the dead letters, `message` on the
        Salesforce records."""
        step = Step("failed")
        for identity, state, origin in self._take_held(account):
            records = list(state.get("records") or [identity])
            error = Permanent(reason, field="customer")
            step.add(self.orders.fail_order(identity, records, origin, error, account, message))
        return step

    def sweep(self) -> Step:
        """Release the orders waiting on accounts whose customer became known some other way, or
        whose carrier awaits no answer any more (failed, forgotten, or an entry of an older version
        that waited for an UpsertCustomer)."""
        step = Step("swept")
        for account in list(self.tables.held.keys()):
            waiting = self.tables.held.get(account)
            if waiting is None:
                continue
            known = account in self.tables.customers
            if (known and waiting.get("orders")) or not self._awaits_answer(waiting.get("carrier")):
                step.add(self._release(account))
        return step


def _from_sage(customer: Mapping[str, Any]) -> bool:
    """True for a customer.v1 record of Sage's (an AR_Customer row), not an Account's."""
    return bool((customer.get("envelope") or {}).get("source_system") == "SAGE100")
