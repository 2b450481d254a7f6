"""The customer sync: Salesforce Account <-> Sage 100 AR_Customer, both ways, through customer.v1.

What it owns: `CustomerSync.on_customer`, the handler of the customers agent. Every customer.v1
record first feeds the customer directory (the cross-reference, held orders:
CustomerDirectory.on_customer); then, by the record's source system:
- SALESFORCE (an Account changed) and the account is linked to a Sage customer (ExternalID__c on
  the record, else the cross-reference): an UpsertCustomer naming that customer, so the Sage
  sink updates it (only the columns that differ; none: EXISTING, nothing written), or creates
  it under that number when Sage has no such customer, as it does for an order naming one. The
  customer is mapped as for an order (customers.yaml `salesforce_to_sage`: value maps, lengths,
  addresses, custom fields to UDF_ columns). An account with no link is not sent: Sage creates
  it with its first order (processors/customer_directory.py), so prospects stay out of the ERP.
- SAGE100 (an AR_Customer row changed): the Account gets the `sage_to_salesforce` fields, its
  external ID (ARDivisionNo-CustomerNo) and the custom fields marked for Salesforce: an UPDATE
  by Account ID when the customer carries one (UDF_SALESFORCE_ID), else an UPSERT by the external
  ID, which creates the Account once and finds it after; only for an ACTIVE customer
  (`create_accounts: false` turns creating off).
  Empty Sage values and values a map turns into null are left out: Sage never blanks a
  Salesforce field.
A picklist value with no mapping (`unknown: error`) is Permanent: the record goes to
dlq.customers.v1 with the reason and the stream goes on.

How loops are avoided: each direction's own writes are not read back (the Salesforce source drops
change events whose changeOrigin names our client; the Sage source drops rows last updated by the
integration user), and the Sage sink writes nothing when nothing differs. As a last stop, a
customer result that is EXISTING for an account already linked writes nothing back to Salesforce
(processors/customer_directory.py), so even a leaked echo ends after one round.

Limits: no content comparison with the target: every source change is sent (the sinks coalesce
and skip unchanged Sage columns). Deletes are not propagated either way. Contacts are not synced.
The Sage sink writes custom fields other than the Salesforce ID only as far as it supports UDFs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from processors import commands
from processors.commands import Outbound, command_id
from processors.customer_directory import CustomerDirectory
from processors.mapping_model import Mappings
from processors.state import MappingsRef, Origin, Step
from sagesf.errors import Permanent

log = logging.getLogger(__name__)

__all__ = ["CustomerSync"]


def _salesforce_value(value: Any) -> Any:
    """A canonical value as the SalesforceCommand field map carries it (null/bool/long/double/string)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class CustomerSync:
    """See the module doc."""

    def __init__(self, mappings: MappingsRef, customer_directory: CustomerDirectory) -> None:
        self.mappings_ref = mappings
        self.customer_directory = customer_directory

    @property
    def mappings(self) -> Mappings:
        return self.mappings_ref.current

    def on_customer(self, key: str | None, customer: Mapping[str, Any], origin: Origin) -> Step:
        linked = self._link(customer)
        step = self.customer_directory.on_customer(key, customer, origin)
        if customer.get("deleted"):
            return step
        source = (customer.get("envelope") or {}).get("source_system")
        try:
            if source == "SALESFORCE":
                step.outbound += self._to_sage(customer, origin, linked)
            elif source == "SAGE100":
                step.outbound += self._to_salesforce(customer, origin)
        except Permanent as exc:  # the directory's part of the step (xref, released orders) still counts
            step.dead_letters.append((origin, exc))
            account = customer.get("salesforce_account_id")
            if source == "SALESFORCE" and account:
                step.outbound += self.customer_directory.account_sync_error(
                    str(account), exc.reason, origin.position()
                )
        return step

    def _link(self, customer: Mapping[str, Any]) -> tuple[str, str] | None:
        """The Sage customer an Account is linked to: on the record, else in the cross-reference."""
        division, number = customer.get("ar_division_no"), customer.get("customer_no")
        if division and number:
            return str(division), str(number)
        account = customer.get("salesforce_account_id")
        known = self.customer_directory.linked_customer(str(account)) if account else None
        if known:
            return str(known["ar_division_no"]), str(known["customer_no"])
        return None

    # --- Salesforce -> Sage ------------------------------------------------------------------

    def _to_sage(
        self, customer: Mapping[str, Any], origin: Origin, linked: tuple[str, str] | None
    ) -> list[Outbound]:
        account = customer.get("salesforce_account_id")
        if not (self.mappings.customers.salesforce_to_sage.sync and account):
            return []
        if linked is None:
            return []  # not a Sage customer (yet): its first order creates it
        data = self.customer_directory.customer_for_sage(customer, str(account))
        data["ar_division_no"], data["customer_no"] = linked
        cid = command_id("UpdateCustomer", str(account), *origin.position())
        return [commands.upsert_customer(data, cid, str(account), cid)]

    # --- Sage -> Salesforce ------------------------------------------------------------------

    def _to_salesforce(self, customer: Mapping[str, Any], origin: Origin) -> list[Outbound]:
        spec = self.mappings.customers.sage_to_salesforce
        division, number = customer.get("ar_division_no"), customer.get("customer_no")
        if not (spec.sync and division and number):
            return []
        external = f"{division}-{number}"
        fields: dict[str, Any] = {}
        for name, target in spec.fields.items():
            value = customer.get(name)
            if target.map is not None:
                value = self.mappings.customers.picklists[target.map].apply(
                    value, name=target.map, where=f"customer.{name}"
                )
            if value is not None and value != "":
                fields[target.salesforce] = _salesforce_value(value)
        custom = customer.get("custom_fields") or {}
        for cf in self.mappings.customers.custom_fields.values():
            if cf.salesforce and cf.sage and cf.direction != "salesforce_to_sage":
                value = custom.get(cf.sage)
                if value is not None and value != "":
                    fields[cf.salesforce] = value
        fields[self.mappings.customers.external_id] = external
        cid = command_id("AccountFromSage", external, *origin.position())
        when = (customer.get("envelope") or {}).get("event_time")
        account = customer.get("salesforce_account_id")
        if account:
            update = commands.salesforce_update(
                "Account",
                str(account),
                fields,
                cid=cid,
                correlation_id=cid,
                source_record_id=external,
                event_time=when,
            )
            return [update]
        if not spec.create_accounts or customer.get("status") != "ACTIVE":
            return []  # an inactive or held customer Salesforce never had stays out of the CRM
        upsert = commands.salesforce_upsert(
            "Account",
            self.mappings.customers.external_id,
            external,
            {k: v for k, v in fields.items() if k != self.mappings.customers.external_id},
            cid=cid,
            correlation_id=cid,
            source_record_id=external,
            event_time=when,
        )
        return [upsert]
