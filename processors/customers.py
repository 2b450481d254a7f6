"""The customer sync: Salesforce Account <-> Sage 100 AR_Customer, both ways, through customer.v1.

What it owns: `CustomerSync.on_customer`, the handler of the customers agent. Every customer.v1
record first feeds the customer directory (the cross-reference, held orders:
CustomerDirectory.on_customer); then, by the record's source system:
- SALESFORCE (an Account changed) and the account is linked to a Sage customer (ExternalID__c on
  the record, else the cross-reference): an UpsertCustomer naming that customer, so the Sage
  sink updates it (only the columns that differ; none: EXISTING, nothing written), or creates
  it under that number when Sage has no such customer, as it does for an order naming one. The
  customer is mapped as for an order (customers.yaml `salesforce_to_sage`: value maps, lengths,
  addresses, custom fields to UDF_ columns), and the command carries the AR_Customer columns.
  An account with no link is not sent: Sage creates it with its first order
  (processors/customer_directory.py), so prospects stay out of the ERP.
- SAGE100 (an AR_Customer row changed): the Account gets the `sage_to_salesforce` fields, its
  external ID (ARDivisionNo-CustomerNo) and the custom fields marked for Salesforce: an UPDATE
  by Account ID when the customer carries one (UDF_SALESFORCE_ID) or the cross-reference knows
  its Account (record linking links it before Sage has written the UDF), else an UPSERT by the
  external ID, which creates the Account once and finds it after; only for an ACTIVE customer
  (`create_accounts: false` turns creating off) that does not wait for link review (record
  linking suggested an Account it may be: none is made until the pair is decided).
  Empty Sage values and values a map turns into null are left out: Sage never blanks a
  Salesforce field.
A picklist value with no mapping (`unknown: error`) is Permanent: the record goes to
dlq.customers.v1 with the reason and the stream goes on.

How loops are avoided, and a Sage user's edit is not lost to one: the Salesforce source drops
change events whose changeOrigin names our client. The Sage source publishes a customer version
last written by the integration user marked `sagesf.written-by: integration` (sagesf.source
`WRITTEN_BY_HEADER`), because a Sage user may have edited the row just before the integration
wrote it, between two polls, and that version is the only one the source sees. For a marked
version only the Account fields a user changed are sent (`_users_changes`): a field whose value
is what Sage held before (`sage_customers` table: the last Sage state seen) or what one of our
recent UpsertCustomers wrote is our echo; anything else is the user's edit. A pure echo sends
nothing. The Sage sink writes nothing when nothing differs, and a customer result that is
EXISTING for an account already linked writes nothing back to Salesforce
(processors/customer_directory.py), so even a leaked echo ends after one round.

Limits: unmarked changes are sent whole (the sinks coalesce and skip unchanged Sage columns). A
marked version of a customer the table knows nothing of (a customer the directory created for
an order; the first after an upgrade) becomes its baseline and sends nothing, and a field no
write of ours carried is not judged until a Sage state has been seen. A user's edit that sets a
field to the very value one of our last five writes gave it is taken for an echo. Deletes are
not propagated either way. Contacts are not synced. What the mappings make of a customer, both
ways, is processors/field_mapping.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from processors import commands
from processors.commands import Outbound, command_id
from processors.customer_directory import CustomerDirectory
from processors.field_mapping import customer_columns, customer_to_salesforce
from processors.mapping_model import Mappings
from processors.state import MappingsRef, Origin, Step
from sagesf.errors import Permanent
from sagesf.link_state import CUSTOMER
from sagesf.source import WRITTEN_BY_HEADER, WRITTEN_BY_INTEGRATION

log = logging.getLogger(__name__)

__all__ = ["WRITES_KEPT", "CustomerSync"]

WRITES_KEPT = 5  # UpsertCustomers remembered per Sage customer, to recognise their echoes


class CustomerSync:
    """See the module doc."""

    def __init__(self, mappings: MappingsRef, customer_directory: CustomerDirectory) -> None:
        self.mappings_ref = mappings
        self.customer_directory = customer_directory
        self.known = customer_directory.tables.sage_customers

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
        columns = customer_columns(self.mappings, data)
        cid = command_id("UpdateCustomer", str(account), *origin.position())
        self._wrote("-".join(linked), self._account_fields(data))
        when = (customer.get("envelope") or {}).get("event_time")
        return [commands.upsert_customer(data, cid, str(account), cid, columns=columns, event_time=when)]

    # --- Sage -> Salesforce ------------------------------------------------------------------

    def _account_fields(self, customer: Mapping[str, Any]) -> dict[str, Any]:
        """The Account fields a Sage customer maps to (processors/field_mapping.py)."""
        return customer_to_salesforce(self.mappings, customer)

    def _wrote(self, external: str, fields: dict[str, Any]) -> None:
        """An UpsertCustomer goes to Sage customer `external`: remember what its echo will say."""
        entry = self.known.get(external) or {"sage": None, "written": []}
        written = [w for w in entry.get("written") or [] if w != fields][-(WRITES_KEPT - 1) :]
        self.known[external] = {**entry, "written": [*written, fields]}

    def _users_changes(self, external: str, fields: dict[str, Any], ours: bool) -> dict[str, Any]:
        """The fields of a Sage customer version to send: all of them for a user's version; for
        one the integration wrote last (`ours`), those that are neither what Sage held before nor
        what one of our recent writes set (the module doc). The version becomes the known one."""
        entry = self.known.get(external)
        self.known[external] = {"sage": fields, "written": (entry or {}).get("written") or []}
        if not ours:
            return dict(fields)
        if entry is None:
            return {}  # nothing to compare with: this version is the baseline
        before, written = entry.get("sage"), entry.get("written") or []
        changed = {}
        for name, value in fields.items():
            echoes = [w[name] for w in written if name in w]
            # not what we wrote, and not what Sage held before (unknown: only a field we wrote counts)
            if value not in echoes and (before.get(name) != value if before is not None else bool(echoes)):
                changed[name] = value
        return changed

    def _to_salesforce(self, customer: Mapping[str, Any], origin: Origin) -> list[Outbound]:
        spec = self.mappings.customers.sage_to_salesforce
        division, number = customer.get("ar_division_no"), customer.get("customer_no")
        if not (spec.sync and division and number):
            return []
        external = f"{division}-{number}"
        account = customer.get("salesforce_account_id") or self.customer_directory.links.owner(
            (str(division), str(number))
        )
        if not account and self.customer_directory.review.waits_for_review(CUSTOMER, "sage", external):
            log.info("customer %s waits for link review: no Account is made for it", external)
            return []
        ours = (WRITTEN_BY_HEADER, WRITTEN_BY_INTEGRATION) in origin.headers
        fields = self._users_changes(external, self._account_fields(customer), ours)
        if ours and not fields:
            log.debug("customer %s: the integration's own write, nothing a user changed", external)
            return []
        fields[self.mappings.customers.external_id] = external
        cid = command_id("AccountFromSage", external, *origin.position())
        when = (customer.get("envelope") or {}).get("event_time")
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
