"""The customer directory: which Sage 100 customer a Salesforce Account is, and the orders waiting
until Sage has one.

What it owns: `CustomerDirectory`, the customer cross-reference, the accounts Sage does not know
yet, the orders held for them and the UpsertCustomer commands that create their customers. The
order pipeline (processors/orders.py) asks it for an order's customer; the customer sync
(processors/customers.py) feeds it customer.v1 and sends Account changes through it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Protocol

from processors import commands
from processors.addresses import standardise
from processors.commands import Outbound, command_id
from processors.mapping_model import Mappings
from processors.state import Decoder, MappingsRef, Origin, Step, Tables, epoch_ms, from_b64, to_b64
from sagesf.errors import Permanent

log = logging.getLogger(__name__)

__all__ = ["CustomerDirectory", "OrderProcessing"]

# Customer fields an UpsertCustomer carries whatever customers.yaml maps (the rest only if mapped)
_CUSTOMER_STRUCTURE = frozenset(
    {"salesforce_account_id", "name", "status", "billing_address", "shipping_address", "deleted"}
)


class OrderProcessing(Protocol):
    """What the directory needs of the order pipeline: a held order goes back to it, to be
    processed again once its customer is known, or failed when Sage refuses the customer."""

    def on_sales_order(self, key: str | None, order: Mapping[str, Any], origin: Origin) -> Step: ...

    def fail_order(
        self, identity: str, records: list[str], origin: Origin, exc: Permanent, account: str | None
    ) -> Step: ...


class CustomerDirectory:
    """Which Sage customer (ARDivisionNo-CustomerNo) each Salesforce Account is.

    Tables it keeps: `customers` (the cross-reference), `accounts` (the latest Salesforce
    Customer record of an account Sage does not know yet), `held` (orders waiting per account)
    and the `held` entries of `orders` (each with its original record, to process it again).
    - `customer_of(order)`: ARDivisionNo-CustomerNo on the order itself (Account.ExternalID__c,
      learnt into the cross-reference too), else the cross-reference by Account ID; None when
      Sage has no customer for the account yet.
    - `hold(...)`: an order whose customer is unknown waits on its account's list, and an
      UpsertCustomer is commanded, built from the account's latest Salesforce Customer record
      (customer.v1) or, failing that, from the order's customer name and addresses. Its command
      ID is a UUIDv5 of the Account ID: asked again, Sage creates the customer once.
    - `on_customer`: customer.v1. A record with ARDivisionNo-CustomerNo feeds the cross-reference
      and releases the account's held orders; one without is remembered as the account's data
      and, if an order asked first with the order's own data, asks again with the account's.
    - `on_customer_result`: Sage's answer to an UpsertCustomer. Created, updated or existing:
      the cross-reference learns it, the Account gets ExternalID__c and Sage_Sync_Status__c =
      Synced and its held orders are released; unchanged and already linked, nothing is written
      back (this also ends any echo loop of the customer sync). Refused: the Account gets
      Sage_Sync_Status__c = Error with the reason and its held orders fail.
    - `sweep(now)`: releases held orders whose customer became known some other way and
      re-sends the UpsertCustomer of accounts that waited longer than `resend_after` seconds.

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
    ) -> None:
        self.mappings_ref = mappings
        self.tables = tables
        self.orders = orders
        self.decode_order = decode_order
        self.decode_customer = decode_customer
        self.resend_after_ms = int(resend_after * 1000)

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
                self.learn(str(account), str(ref["ar_division_no"]), str(ref["customer_no"]))
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
        found: Mapping[str, Any] | None = self.tables.customers.get(account)
        return found

    def learn(self, account: str, division: str, number: str) -> None:
        """Record that `account` is Sage customer `division`-`number`."""
        wanted = {"ar_division_no": division, "customer_no": number}
        if self.tables.customers.get(account) != wanted:
            self.tables.customers[account] = wanted

    def hold(self, identity: str, order: Mapping[str, Any], records: list[str], origin: Origin) -> Outbound:
        """Keep `order` until its customer exists; the UpsertCustomer that asks Sage to create it.
        Permanent (no name, an address that does not fit) before anything is kept."""
        account = str(order["customer"]["salesforce_account_id"])
        upsert = self._upsert_customer(account, order)
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
        self.tables.held[account] = waiting
        return upsert

    def held_count(self) -> int:
        return sum(len((w or {}).get("orders", [])) for w in self.tables.held.values())

    # --- the Sage customer ------------------------------------------------------------------

    def _upsert_customer(self, account: str, order: Mapping[str, Any] | None) -> Outbound:
        """The UpsertCustomer for `account`: its Salesforce Customer record, else the order's data."""
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
        customer = self.customer_for_sage(customer, account)
        cid = command_id("UpsertCustomer", account)
        return commands.upsert_customer(customer, cid, account, cid)

    def customer_for_sage(self, customer: Mapping[str, Any], account: str) -> dict[str, Any]:
        """The Customer of an UpsertCustomer: the fields customers.yaml `salesforce_to_sage` lists
        (mapped), the addresses (standardised), status, contacts and custom fields. A plain field
        the map does not list (credit_limit, current_balance, ...) is not sent: Sage keeps its own."""
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
                out.get(name), spec, mapping.picklists, "AR_Customer", f"customer.{name}"
            )
        if not out.get("name"):
            raise Permanent(
                "the customer has no name, which Sage requires (CustomerName)", field="customer.name"
            )
        for key in ("billing_address", "shipping_address"):
            out[key] = standardise(out.get(key), self.mappings.addresses, f"customer.{key}")
        out["custom_fields"] = {
            cf.sage: value
            for name, value in (customer.get("custom_fields") or {}).items()
            if (cf := mapping.custom_fields.get(name)) is not None
            and cf.sage is not None
            and cf.direction != "sage_to_salesforce"
        }
        return out

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
            self.learn(str(account), str(division), str(number))
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
                step.outbound.append(self._upsert_customer(account, None))
            except Permanent as exc:
                log.warning("Account %s: its customer data cannot be sent to Sage: %s", account, exc)
                return step
            self.tables.held[account] = {**waiting, "requested_at": epoch_ms()}
        return step

    # --- Sage's customer results ------------------------------------------------------------

    def on_customer_result(self, result: Mapping[str, Any]) -> Step:
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
            reason = (result.get("error") or {}).get("reason") or "Sage refused the customer"
            step = Step("customer_rejected")
            step.outbound += self.account_sync_error(account, reason, (cid_base,), when)
            step.add(self._fail_held(account, f"the customer could not be created in Sage 100: {reason}"))
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
        self.learn(account, str(division), str(number))
        self.tables.accounts.pop(account, None)
        step = Step("customer_synced")
        step.outbound.append(
            commands.salesforce_update(
                "Account",
                account,
                {
                    self.mappings.customers.external_id: f"{division}-{number}",
                    write_back.sync_status.field: write_back.sync_status.synced,
                    **({write_back.message_field: None} if write_back.message_field else {}),
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
        """Sage_Sync_Status__c = Error (and the reason) on an Account."""
        write_back = self.mappings.customers.write_back
        fields: dict[str, Any] = {write_back.sync_status.field: write_back.sync_status.error}
        if write_back.message_field:
            fields[write_back.message_field] = self.mappings.salesforce_text(
                reason, "Account", write_back.message_field
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

    def _fail_held(self, account: str, reason: str) -> Step:
        """Fail every order held for `account` (Sage refused its customer)."""
        step = Step("failed")
        for identity, state, origin in self._take_held(account):
            records = list(state.get("records") or [identity])
            step.add(
                self.orders.fail_order(
                    identity, records, origin, Permanent(reason, field="customer"), account
                )
            )
        return step

    def sweep(self, now: int) -> Step:
        """Release the orders of accounts whose customer became known some other way; re-send the
        UpsertCustomer of accounts that have waited `resend_after` since the last one."""
        step = Step("swept")
        for account in list(self.tables.held.keys()):
            waiting = self.tables.held.get(account)
            if waiting is None:
                continue
            if account in self.tables.customers:
                step.add(self._release(account))
            elif now - int(waiting.get("requested_at") or 0) >= self.resend_after_ms:
                order = None
                for identity in waiting.get("orders", []):
                    state = self.tables.orders.get(identity)
                    if state and state.get("state") == "held":
                        try:
                            order = self.decode_order(Origin.from_json(state["origin"]).value or b"")
                        except Permanent:
                            continue
                        break
                try:
                    step.outbound.append(self._upsert_customer(account, order))
                except Permanent as exc:
                    log.warning("cannot re-send the customer upsert for Account %s: %s", account, exc)
                    continue
                self.tables.held[account] = {**waiting, "requested_at": now}
        return step
