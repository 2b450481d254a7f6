"""The customer directory: which Sage 100 customer a Salesforce Account is, and the orders waiting
until Sage has one.

What it owns: `CustomerDirectory`, the customer cross-reference, the accounts Sage does not know
yet, the orders held for them and the UpsertCustomer commands that create their customers. The
order pipeline (processors/orders.py) asks it for an order's customer; the customer sync
(processors/customers.py) feeds it customer.v1, behind its link guard (`guarded`), and sends
Account changes through it. The link rule itself is processors/customer_links.py.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from processors import commands
from processors.addresses import standardise
from processors.commands import Outbound, command_id
from processors.customer_links import CustomerLinks, LinkConflict, LinkRefused
from processors.mapping_model import Mappings
from processors.metrics import ORDERS_UNANSWERED
from processors.state import (
    Decoder,
    MappingsRef,
    Origin,
    ResendSchedule,
    Step,
    Tables,
    epoch_ms,
    from_b64,
    to_b64,
)
from processors.sync_message import Changes, for_user, sage_refusal
from sagesf.errors import Permanent

log = logging.getLogger(__name__)

__all__ = ["CustomerDirectory", "OrderProcessing"]

# Customer fields an UpsertCustomer carries whatever customers.yaml maps (the rest only if mapped)
_CUSTOMER_STRUCTURE = frozenset(
    {"salesforce_account_id", "name", "status", "billing_address", "shipping_address", "deleted"}
)
# Customer fields that are no text for Sage, or that were made ready for it already
_NOT_SAGE_TEXT = frozenset({"envelope", "salesforce_account_id", "billing_address", "shipping_address"})
# a customer.v1 handler (processors/customers.py CustomerSync.on_customer)
CustomerHandler = Callable[[str | None, Mapping[str, Any], Origin], Step]


class OrderProcessing(Protocol):
    """What the directory needs of the order pipeline: a held order goes back to it, to be
    processed again once its customer is known, or failed when Sage refuses the customer."""

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


class CustomerDirectory:
    """Which Sage customer (ARDivisionNo-CustomerNo) each Salesforce Account is.

    Tables it keeps: `customers` (the cross-reference, through `links`, processors/
    customer_links.py), `accounts` (the latest Salesforce Customer record of an account Sage does
    not know yet), `held` (orders waiting per account) and the `held` entries of `orders` (each
    with its original record, to process it again).
    - `customer_of(order)`: ARDivisionNo-CustomerNo on the order itself (Account.ExternalID__c,
      learnt into the cross-reference too), else the cross-reference by Account ID; None when
      Sage has no customer for the account yet; `LinkRefused` when the order's Account names a
      customer linked to another Account (or is linked to another customer).
    - `guarded(handler)`: the customers agent's handler behind the link rule: a customer.v1
      record whose link contradicts an existing one is refused before the customer sync sees it
      (dead letter with the reason, Sage_Sync_Status__c = Error on the Accounts concerned), so no
      Account or Sage customer is renamed by it.
    - `hold(...)`: an order whose customer is unknown waits on its account's list, and an
      UpsertCustomer is commanded, built from the account's latest Salesforce Customer record
      (customer.v1) or, failing that, from the order's customer name and addresses. Its command
      ID is a UUIDv5 of the Account ID: asked again, Sage creates the customer once.
    - `on_customer`: customer.v1. A record with ARDivisionNo-CustomerNo feeds the cross-reference
      and releases the account's held orders; one without is remembered as the account's data
      and, if an order asked first with the order's own data, asks again with the account's.
    - `on_customer_result`: Sage's answer to an UpsertCustomer. Created, updated or existing:
      the cross-reference learns it, the Account gets ExternalID__c and Sage_Sync_Status__c =
      Synced (with what the mapping rules changed, as the sync message) and its held orders are
      released; unchanged and already linked, nothing is written back (this also ends any echo
      loop of the customer sync). Refused by Sage, or a customer linked to another Account: the
      Account gets Sage_Sync_Status__c = Error with a short reason and its held orders fail.
    - `sweep(now)`: releases held orders whose customer became known some other way and
      re-sends the UpsertCustomer of accounts still waiting, backing off (`ResendSchedule`);
      after the last re-send their orders fail (counted in sagesf_processor_orders_unanswered_total).

    Limits: customers are created in Sage only for orders; an Account change reaches Sage
    through the customer sync only once the account is linked.
    """

    def __init__(
        self,
        mappings: MappingsRef,
        tables: Tables,
        orders: OrderProcessing,
        *,
        decode_order: Decoder,
        decode_customer: Decoder,
        resend_after: float = 300.0,
        resend_limit: int = 5,
    ) -> None:
        self.mappings_ref = mappings
        self.tables = tables
        self.orders = orders
        self.decode_order = decode_order
        self.decode_customer = decode_customer
        self.resends = ResendSchedule(int(resend_after * 1000), resend_limit)
        self.links = CustomerLinks(tables.customers)

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

    def linked_customer(self, account: str) -> Mapping[str, Any] | None:
        """The cross-reference entry of `account` ({ar_division_no, customer_no}), if any."""
        return self.links.of_account(account)

    def learn(
        self, account: str, division: str, number: str, source: str = "Sage 100"
    ) -> LinkConflict | None:
        """Record that `account` is Sage customer `division`-`number`, unless that contradicts a
        link (then nothing changes and the conflict is returned)."""
        return self.links.link(account, (division, number), source)

    def hold(self, identity: str, order: Mapping[str, Any], records: list[str], origin: Origin) -> Outbound:
        """Keep `order` until its customer exists; the UpsertCustomer that asks Sage to create it.
        Permanent (no name, an address that does not fit) before anything is kept."""
        account = str(order["customer"]["salesforce_account_id"])
        upsert, notes = self._upsert_customer(account, order)
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
        waiting["requested_at"] = epoch_ms()
        waiting["notes"] = notes
        self.tables.held[account] = waiting
        return upsert

    def held_count(self) -> int:
        return sum(len((w or {}).get("orders", [])) for w in self.tables.held.values())

    # --- the Sage customer ------------------------------------------------------------------

    def _upsert_customer(self, account: str, order: Mapping[str, Any] | None) -> tuple[Outbound, list[str]]:
        """The UpsertCustomer for `account`: its Salesforce Customer record, else the order's data;
        and what the mapping rules changed in it."""
        stored = self.tables.accounts.get(account)
        if stored is not None:
            customer = dict(self.decode_customer(from_b64(stored) or b""))
        elif order is not None:
            ref = order.get("customer") or {}
            bill_to = order.get("bill_to") or {}
            customer = {
                "salesforce_account_id": account,
                "name": ref.get("name") or bill_to.get("name"),
                "status": "ACTIVE",
                "billing_address": order.get("bill_to"),
                "shipping_address": order.get("ship_to"),
            }
        else:
            raise Permanent(f"no customer data known for Account {account}", field="customer")
        changes = Changes()
        customer = self.customer_for_sage(customer, account, changes)
        cid = command_id("UpsertCustomer", account)
        return commands.upsert_customer(customer, cid, account, cid), changes.notes

    def customer_for_sage(
        self, customer: Mapping[str, Any], account: str, changes: Changes | None = None
    ) -> dict[str, Any]:
        """The Customer of an UpsertCustomer: the fields customers.yaml `salesforce_to_sage` lists
        (mapped), the addresses (standardised), status, contacts and custom fields, every text in
        Sage's code page. A plain field the map does not list (credit_limit, current_balance, ...)
        is not sent: Sage keeps its own. What the rules changed is noted in `changes`."""
        changes = changes if changes is not None else Changes()
        mapping = self.mappings.customers
        out: dict[str, Any] = {
            k: copy.deepcopy(v)
            for k, v in customer.items()
            if k not in ("envelope", "ar_division_no", "customer_no", "custom_fields", "contacts")
            and (k in mapping.salesforce_to_sage.fields or k in _CUSTOMER_STRUCTURE)
        }
        out["envelope"] = commands.envelope(account, None)
        out["salesforce_account_id"] = account
        out["ar_division_no"] = None
        out["customer_no"] = None
        out.setdefault("status", "ACTIVE")
        out["contacts"] = list(customer.get("contacts") or [])
        for name, spec in mapping.salesforce_to_sage.fields.items():
            out[name] = self.mappings.sage_value(
                out.get(name), spec, mapping.picklists, "AR_Customer", f"customer.{name}", changes
            )
        if not out.get("name"):
            raise Permanent(
                "the customer has no name, which Sage requires (CustomerName)", field="customer.name"
            )
        for key in ("billing_address", "shipping_address"):
            out[key] = standardise(out.get(key), self.mappings.addresses, f"customer.{key}", changes)
        out["custom_fields"] = {
            cf.sage: value
            for name, value in (customer.get("custom_fields") or {}).items()
            if (cf := mapping.custom_fields.get(name)) is not None
            and cf.sage is not None
            and cf.direction != "sage_to_salesforce"
        }
        folded: dict[str, Any] = self.mappings.text_for_sage(out, "customer", changes, _NOT_SAGE_TEXT)
        return folded

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
        sage = (customer.get("envelope") or {}).get("source_system") == "SAGE100"
        source = "UDF_SALESFORCE_ID in Sage 100" if sage else "Account ExternalID__c"
        return self.links.conflict(str(account), (str(division), str(number)), source)

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
        """customer.v1: learn Account <-> ARDivisionNo-CustomerNo; release orders waiting for it."""
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
            self.tables.accounts.pop(str(account), None)
            released = self._release(str(account))
            step = Step("learned")
            step.add(released)
            return step
        step = Step("remembered")
        if origin.value is None:
            return step
        account = str(account)
        self.tables.accounts[account] = to_b64(origin.value)  # a Salesforce account Sage does not know yet
        waiting = self.tables.held.get(account)
        if waiting is not None:
            # an order got here first and asked for the customer with the order's own data; ask
            # again with the account's (same command ID: Sage creates it once, then updates it)
            try:
                upsert, notes = self._upsert_customer(account, None)
            except Permanent as exc:
                log.warning("Account %s: its customer data cannot be sent to Sage: %s", account, exc)
                return step
            step.outbound.append(upsert)
            self.tables.held[account] = {**waiting, "requested_at": epoch_ms(), "notes": notes}
        return step

    # --- Sage's customer results ------------------------------------------------------------

    def on_customer_result(self, result: Mapping[str, Any], origin: Origin) -> Step:
        """A SageResult of kind UPSERT_CUSTOMER (see the class doc)."""
        ref = result.get("customer") or {}
        account = result.get("salesforce_record_id") or ref.get("salesforce_account_id")
        if not account:
            return Step("skipped")
        account = str(account)
        write_back = self.mappings.customers.write_back
        when = (result.get("envelope") or {}).get("event_time")
        cid_base = str(result.get("command_id"))
        if result.get("outcome") == "REJECTED":
            error = result.get("error") or {}
            reason = str(error.get("reason") or "Sage refused the customer")
            step = Step("customer_rejected")
            step.outbound += self.account_sync_error(
                account, sage_refusal(error, "customer"), (cid_base,), when
            )
            failed = f"the customer could not be created in Sage 100: {reason}"
            step.add(self._fail_held(account, failed, sage_refusal(error, "customer")))
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
        if conflict is not None:  # held orders must not go to another Account's customer
            step = self.refuse(conflict, origin, (cid_base,))
            step.add(self._fail_held(account, conflict.reason, conflict.reason))
            return step
        notes = Changes(list((self.tables.held.get(account) or {}).get("notes") or []))
        self.tables.accounts.pop(account, None)
        step = Step("customer_synced")
        step.outbound.append(
            commands.salesforce_update(
                "Account",
                account,
                {
                    self.mappings.customers.external_id: f"{division}-{number}",
                    write_back.sync_status.field: write_back.sync_status.synced,
                    **(
                        {write_back.message_field: self._text(notes.message())}
                        if write_back.message_field
                        else {}
                    ),
                },
                cid=command_id("AccountSync", account, cid_base, "synced", f"{division}-{number}"),
                correlation_id=cid_base,
                source_record_id=f"{division}-{number}",
                event_time=when,
            )
        )
        step.add(self._release(account))
        return step

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

    # --- held orders ------------------------------------------------------------------------

    def _take_held(self, account: str) -> Iterator[tuple[str, Mapping[str, Any], Origin]]:
        """Each order still held for `account`, with its original record; the account's waiting
        list is removed."""
        waiting = self.tables.held.pop(account, None)
        for identity in (waiting or {}).get("orders", []):
            state = self.tables.orders.get(identity)
            if not state or state.get("state") != "held":
                continue
            yield identity, state, Origin.from_json(state["origin"])

    def _release(self, account: str) -> Step:
        """Process again every order held for `account` (its customer is known now)."""
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
        """Fail every order held for `account` (Sage refused or never made its customer): `reason`
        in the dead letters, `message` on the Salesforce records."""
        step = Step("failed")
        for identity, state, origin in self._take_held(account):
            records = list(state.get("records") or [identity])
            error = Permanent(reason, field="customer")
            step.add(self.orders.fail_order(identity, records, origin, error, account, message))
        return step

    def sweep(self, now: int) -> Step:
        """Release the orders of accounts whose customer became known some other way; re-send the
        UpsertCustomer of accounts whose wait is over (`resends`), or give up on them."""
        step = Step("swept")
        for account in list(self.tables.held.keys()):
            waiting = self.tables.held.get(account)
            if waiting is None:
                continue
            resends = int(waiting.get("resends") or 0)
            if account in self.tables.customers:
                step.add(self._release(account))
            elif not self.resends.due(int(waiting.get("requested_at") or 0), resends, now):
                continue
            elif self.resends.exhausted(resends):
                step.add(self._give_up(account, resends))
            else:
                step.outbound += self._ask_again(account, waiting, now)
        return step

    def _ask_again(self, account: str, waiting: Mapping[str, Any], now: int) -> list[Outbound]:
        """The UpsertCustomer of `account` once more, from the first held order that decodes."""
        order = None
        for identity in waiting.get("orders", []):
            state = self.tables.orders.get(identity)
            if state and state.get("state") == "held":
                try:
                    order = self.decode_order(Origin.from_json(state["origin"]).value or b"")
                except Permanent:
                    continue
                break
        sent: list[Outbound] = []
        notes = waiting.get("notes")
        try:
            upsert, notes = self._upsert_customer(account, order)
            sent.append(upsert)
        except Permanent as exc:  # counted all the same: the limit ends it
            log.warning("cannot re-send the customer upsert for Account %s: %s", account, exc)
        resends = int(waiting.get("resends") or 0) + 1
        self.tables.held[account] = {**waiting, "requested_at": now, "resends": resends, "notes": notes}
        return sent

    def _give_up(self, account: str, resends: int) -> Step:
        """Sage never answered the UpsertCustomer of `account`: its held orders fail."""
        sends = resends + 1
        log.error(
            "Account %s: no answer from Sage 100 to its customer after %d sends; giving up", account, sends
        )
        reason = (
            f"no answer from Sage 100 to the customer of Account {account} after {sends} sends; "
            "not sent again (SAGESF_PROCESSORS__ORDER_RESEND_LIMIT). Check the Sage sink, then "
            "replay this dead letter"
        )
        message = f"Sage 100 has not answered for this customer after {sends} tries; operations are alerted"
        step = self._fail_held(account, reason, message)
        ORDERS_UNANSWERED.inc(len(step.dead_letters))
        step.outbound += self.account_sync_error(account, message, (account, "unanswered", str(sends)))
        return step
