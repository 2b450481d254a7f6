"""The processors' judge for reconciliation (sagesf.reconcile `DriftJudge`): what the mappings
expect of a linked pair, what drifted, and the command the processors would have sent.

What it owns: `MappingJudge`, built by the processors component's judge hook. It compares each
pair the core found through the same mapping code the live sync runs: customers both ways
(customers.yaml), items' fields and stock (products.yaml `item_fields`, `inventory`), and orders
end to end (orders.yaml `write_back`, `order_status`). Its repairs are the live sync's commands,
each with a source time the sinks' stale checks compare (`_observed`, `_to_sage`), so a repair
passes when nobody changed the target since and is refused when a later edit overtook it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast

from processors import commands
from processors.commands import Outbound, command_id
from processors.field_mapping import (
    customer_columns,
    customer_for_sage,
    customer_to_salesforce,
    item_to_salesforce,
)
from processors.inventory import QUANTITIES
from processors.mapping_files import MappingError, reload_changed
from processors.mapping_model import Mappings
from processors.orders import OrderPipeline
from processors.state import MappingsRef
from sagesf.errors import Permanent
from sagesf.publisher import CanonicalRecord
from sagesf.reconcile import SAGE, SALESFORCE, Drift, DriftKind, Entity

__all__ = ["MappingJudge", "ReloadingJudge"]

log = logging.getLogger(__name__)

OWN_FIELDS = "salesforce"  # where a Salesforce entity carries the org's own fields (the snapshot's)


class _MappingsOnly:
    """Stands in for the live sync's objects where their mapping methods read `mappings` only
    (`status_fields`), so a repair is mapped by the very
    code that maps a live change, without the faust tables those objects otherwise hold."""

    def __init__(self, mappings: Mappings) -> None:
        self.mappings_ref = MappingsRef(mappings)

    @property
    def mappings(self) -> Mappings:
        return self.mappings_ref.current


class MappingJudge:
    """Compares pairs through the mappings (see the module doc).

    Customers: a field mapped Sage -> Salesforce differs when the Account does not hold what the
    sync would write from the Sage customer; one mapped Salesforce -> Sage when the customer does
    not hold what the sync would write from the Account; one mapped both ways only when both
    differ (a value map may fold several values into one, so each side may hold any value the
    other maps to), and the newer change wins its repair (Sage when a time is unknown). Items:
    the `item_fields` and the stock fields of `inventory` (the warehouses it counts, summed),
    Sage -> Salesforce. Orders: Sage's number and mapped status on the Opportunity or Order.
    """

    def __init__(self, mappings: Mappings) -> None:
        self.mappings = mappings
        self.mapped = _MappingsOnly(mappings)

    # --- what to read ----------------------------------------------------------------------------

    def wanted(self, system: str) -> dict[str, list[str]]:
        if system != SALESFORCE:
            return {}
        customers, products, orders = self.mappings.customers, self.mappings.products, self.mappings.orders
        account = [f.salesforce for f in customers.sage_to_salesforce.fields.values()]
        account += [cf.salesforce for cf in customers.custom_fields.values() if cf.salesforce]
        inventory = products.inventory
        product = [f.salesforce for f in products.item_fields.values()]
        if inventory is not None:
            product += [
                inventory.external_id_field,
                *(f for f, s in inventory.fields.items() if s in QUANTITIES),
            ]
        order = [orders.write_back.order_number, orders.write_back.order_status]
        wanted = {customers.salesforce_object: account, "Product2": product}
        wanted.update({obj: order for obj in orders.write_back.objects})
        return {name: list(dict.fromkeys(fields)) for name, fields in wanted.items()}

    def judge(self, kind: str, salesforce: Entity | None, sage: Entity | None) -> list[Drift]:
        judges: dict[str, Callable[[Entity | None, Entity | None], list[Drift]]] = {
            "customer": self._customer,
            "item": self._item,
            "order": self._order,
        }
        found = judges.get(kind)
        return found(salesforce, sage) if found is not None else []

    # --- customers -------------------------------------------------------------------------------

    def _customer(self, sf: Entity | None, sage: Entity | None) -> list[Drift]:
        if sf is not None and sage is None:
            linked = next((link[5:] for link in sf.links if link.startswith("sage:")), None)
            if linked is None:
                return []  # not linked: the linking's review queue, not drift
            repair = self._to_sage(sf, linked)
            return [Drift(DriftKind.MISSING_IN_SAGE, "customer", linked, salesforce=sf.key, repair=repair)]
        if sf is None and sage is not None:
            account = sage.record.get("salesforce_account_id")
            # a deleted Account may wait in the recycle bin, and a new one breaks the link: a person decides
            return (
                [Drift(DriftKind.MISSING_IN_SALESFORCE, "customer", sage.key, sage=account)]
                if account
                else []
            )
        assert sf is not None
        assert sage is not None
        return self._customer_fields(sf, sage)

    def _customer_fields(self, sf: Entity, sage: Entity) -> list[Drift]:
        spec = self.mappings.customers
        to_sf = spec.sage_to_salesforce.fields
        to_sage = spec.salesforce_to_sage.fields
        expected_sf = self.account_fields(sage.record)
        held_sf = sf.record.get(OWN_FIELDS) or {}
        expected_sage = self._customer_for_sage(sf.record)
        off_sf = {
            n
            for n, t in to_sf.items()
            if t.salesforce in expected_sf and not _same(expected_sf[t.salesforce], held_sf.get(t.salesforce))
        }
        # an empty value is not written (the Sage sink writes non-null fields only): no opinion
        off_sage = {
            n
            for n in to_sage
            if expected_sage.get(n) not in (None, "") and not _same(expected_sage[n], sage.record.get(n))
        }
        sage_wins = _newer(sage.changed_at, sf.changed_at)
        towards: dict[str, list[str]] = {SALESFORCE: [], SAGE: []}
        for name in sorted(off_sf | off_sage):
            both = name in to_sf and name in to_sage
            if both and not (name in off_sf and name in off_sage):
                continue
            towards[SALESFORCE if name in off_sf and (not both or sage_wins) else SAGE].append(name)
        repairs = {
            SALESFORCE: self._account_update(
                sf.key,
                sage,
                {to_sf[n].salesforce: expected_sf[to_sf[n].salesforce] for n in towards[SALESFORCE]},
            )
            if towards[SALESFORCE]
            else None,
            SAGE: self._to_sage(sf, sage.key) if towards[SAGE] else None,
        }

        def held(name: str, side: str) -> Any:  # Salesforce's value as the side's mapping reads it
            return held_sf.get(to_sf[name].salesforce) if side == SALESFORCE else sf.record.get(name)

        return [
            Drift(DriftKind.FIELD, "customer", sage.key, n, held(n, side), sage.record.get(n), repairs[side])
            for side, names in towards.items()
            for n in names
        ]

    def account_fields(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """The Account fields the customer sync writes from this Sage customer."""
        try:
            return customer_to_salesforce(self.mappings, customer)
        except Permanent:
            return {}  # a value the map refuses: the live sync dead-letters it; nothing to compare

    def _customer_for_sage(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        account = str(customer.get("salesforce_account_id") or "")
        try:
            return customer_for_sage(self.mappings, customer, account)
        except Permanent:
            return {}

    def _to_sage(self, sf: Entity, linked: str) -> CanonicalRecord | None:
        """The UpsertCustomer the sync sends for the Account (processors/customers.py `_to_sage`).
        It carries the whole customer, so it carries the Account's own change time: the Sage
        sink refuses it whole when a Sage user changed the row since, and a newer Sage value
        of another field is never taken back by a repair."""
        data = self._customer_for_sage(sf.record)
        if not data:
            return None
        data["ar_division_no"], data["customer_no"] = linked.split("-", 1)
        cid = command_id(
            "ReconcileCustomer", sf.key, _fingerprint({k: v for k, v in data.items() if k != "envelope"})
        )
        columns = customer_columns(self.mappings, data)
        return _record(
            commands.upsert_customer(data, cid, sf.key, cid, columns=columns, event_time=sf.changed_at)
        )

    def _account_update(self, account: str, sage: Entity, fields: Mapping[str, Any]) -> CanonicalRecord:
        cid = command_id("ReconcileAccount", account, _fingerprint(fields))
        update = commands.salesforce_update(
            self.mappings.customers.salesforce_object,
            account,
            fields,
            cid=cid,
            correlation_id=cid,
            source_record_id=sage.key,
            event_time=_observed(sage),
        )
        return _record(update)

    # --- items and stock -------------------------------------------------------------------------

    def _item(self, sf: Entity | None, sage: Entity | None) -> list[Drift]:
        inventory = self.mappings.products.inventory
        if sf is not None and sage is None:
            code = (sf.record.get(OWN_FIELDS) or {}).get(inventory.external_id_field) if inventory else None
            # only a Product2 naming its Sage item is linked; Sage items are made in Sage, never by a repair
            return [Drift(DriftKind.MISSING_IN_SAGE, "item", str(code), salesforce=sf.key)] if code else []
        if sf is None or sage is None:
            return []  # a Sage item without a Product2: not sent (inventory only_known_products)
        held = sf.record.get(OWN_FIELDS) or {}
        if inventory is None or not held.get(inventory.external_id_field):
            return []  # paired by ProductCode only: not linked, and an upsert would make a second Product2
        expected = {**self.item_fields(sage.record), **self.stock_fields(sage.record)}
        off = {f: v for f, v in expected.items() if not _same(v, held.get(f))}
        if not off:
            return []
        cid = command_id("ReconcileItem", sage.key, _fingerprint(off))
        repair = _record(
            commands.salesforce_upsert(
                inventory.sobject,
                inventory.external_id_field,
                sage.key,
                off,
                cid=cid,
                correlation_id=cid,
                source_record_id=sage.key,
                event_time=_observed(sage),
            )
        )
        stock = set(self.stock_fields(sage.record))
        return [
            Drift(DriftKind.FIELD, "stock" if f in stock else "item", sage.key, f, held.get(f), v, repair)
            for f, v in sorted(off.items())
        ]

    def item_fields(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The Product2 fields products.yaml `item_fields` maps from this Sage item, as the item
        sync writes them (processors/field_mapping.py); custom fields are not compared, as for
        customers (the snapshot does not read them)."""
        compared = {target.salesforce for target in self.mappings.products.item_fields.values()}
        try:
            fields = item_to_salesforce(self.mappings, item)
        except Permanent:
            return {}  # a value a map refuses: nothing the sync would write
        return {f: v for f, v in fields.items() if f in compared}

    def stock_fields(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The inventory processor's sums for the item (processors/inventory.py), event time aside."""
        inventory = self.mappings.products.inventory
        if inventory is None:
            return {}
        levels = [
            lv for lv in item.get("inventory_levels") or [] if inventory.counts(str(lv.get("warehouse_code")))
        ]
        return {
            field: float(sum((Decimal(str(lv.get(source) or 0)) for lv in levels), Decimal(0)))
            for field, source in inventory.fields.items()
            if source in QUANTITIES
        }

    # --- orders ----------------------------------------------------------------------------------

    def _order(self, sf: Entity | None, sage: Entity | None) -> list[Drift]:
        if sf is None:
            return []  # a Sage order for a record that is no (longer a) won order in Salesforce
        if sage is None:
            return [Drift(DriftKind.ORDER_NOT_IN_SAGE, "order", sf.key, salesforce=sf.record.get("status"))]
        write_back = self.mappings.orders.write_back
        held = sf.record.get(OWN_FIELDS) or {}
        number = sage.record.get("sales_order_no")
        obj = str(sf.record.get("object") or commands.sobject_for(sf.key) or "")
        status = (
            OrderPipeline.status_fields(
                cast(OrderPipeline, self.mapped), obj, sage.record.get("source_status"), None
            )
            or {}
        )
        drifts: list[tuple[DriftKind, str, Any, Any]] = []
        if not _same(number, held.get(write_back.order_number)):
            drifts.append(
                (
                    DriftKind.ORDER_NUMBER_MISSING,
                    write_back.order_number,
                    held.get(write_back.order_number),
                    number,
                )
            )
        wanted_status = status.get(write_back.order_status)
        if wanted_status is not None and not _same(wanted_status, held.get(write_back.order_status)):
            drifts.append(
                (
                    DriftKind.ORDER_STATUS,
                    write_back.order_status,
                    held.get(write_back.order_status),
                    wanted_status,
                )
            )
        if not drifts:
            return []
        fields = {
            write_back.order_number: number,
            **status,
            write_back.sync_status.field: write_back.sync_status.synced,
        }
        cid = command_id("ReconcileOrder", sf.key, _fingerprint(fields))
        repair = _record(
            commands.salesforce_update(
                obj,
                sf.key,
                fields,
                cid=cid,
                correlation_id=cid,
                source_record_id=str(number),
                event_time=sage.changed_at,
            )
        )
        return [
            Drift(kind, "order", sf.key, name, held_value, sage_value, repair)
            for kind, name, held_value, sage_value in drifts
        ]


def _record(outbound: Outbound) -> CanonicalRecord:
    return CanonicalRecord(
        topic=outbound.topic, schema=outbound.schema, key=outbound.key, value=outbound.value
    )


def _fingerprint(fields: Mapping[str, Any]) -> str:
    """What a repair brings, as text: the same drift repaired twice is the same command ID."""
    return json.dumps(fields, sort_keys=True, default=str)


def _same(expected: Any, held: Any) -> bool:
    """Equal as the target stores it: empty is empty, numbers by value, text without edge blanks."""
    if expected in (None, "") or held in (None, ""):
        return expected in (None, "") and held in (None, "")
    if isinstance(expected, bool) or isinstance(held, bool):
        return (
            bool(expected) == bool(held) if isinstance(expected, bool) and isinstance(held, bool) else False
        )
    if isinstance(expected, int | float | Decimal) or isinstance(held, int | float | Decimal):
        try:
            return Decimal(str(expected)) == Decimal(str(held))
        except InvalidOperation:
            return False
    return str(expected).strip() == str(held).strip()


def _newer(sage: datetime | None, salesforce: datetime | None) -> bool:
    """Whether Sage's change wins: the later one, Sage when either time is unknown."""
    return salesforce is None or sage is None or sage >= salesforce


def _observed(sage: Entity) -> datetime | None:
    """The source time of a repair towards Salesforce: when the sweep read Sage (its value held
    then), so the Salesforce sink refuses it only when the record changed after that read. Such a
    repair carries only the fields found to flow to Salesforce, so nothing newer goes with it."""
    return sage.read_at or sage.changed_at


class ReloadingJudge:
    """A `MappingJudge` over the mapping files as they are when a sweep begins.

    The reconciler runs for days while people save mappings in the console. A judge kept from
    start-up would compare by the old mapping, report the newly mapped fields as drift and
    repair them back. A sweep begins by asking `wanted`, so a changed file is reloaded then
    (`load`, the processors' own loader and checks). An invalid edit keeps the previous
    mappings, logged once per edit, as the processors do."""

    def __init__(self, load: Callable[[], Mappings]) -> None:
        self.load = load
        self.current = MappingJudge(load())

    def wanted(self, system: str) -> dict[str, list[str]]:
        self._refresh()
        return self.current.wanted(system)

    def judge(self, kind: str, salesforce: Entity | None, sage: Entity | None) -> list[Drift]:
        return self.current.judge(kind, salesforce, sage)

    def _refresh(self) -> None:
        try:
            fresh = reload_changed(self.current.mappings, self.load)
        except MappingError as exc:
            log.error(
                "mappings edited but invalid, reconciling by the previous ones:\n  %s",
                "\n  ".join(exc.problems),
            )
            return
        if fresh is not None:
            self.current = MappingJudge(fresh)
            log.info("mappings reloaded for reconciliation")
