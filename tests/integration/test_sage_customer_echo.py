"""The Sage echo race, from the sandbox database to the Salesforce commands: a Sage user edits a
customer, then the integration writes the same AR_Customer row (a Salesforce edit) before the
next poll. The user's edit still reaches the Account, our own write does not come back, and a
pure echo sends nothing (the Sage source and processors/customers.py together)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from connectors.sage100.source import SageSource
from processors.customers import CustomerSync
from processors.state import MappingsRef, Origin
from sagesf.publisher import CanonicalRecord
from sagesf.source import SourceLoop
from sandbox.sage100.simulator import SageSimulator
from tests.integration.sage_source_support import make_due
from tests.kit.stages import CapturingPublisher, MemoryPositions
from tests.unit.test_processor_logic import ACCOUNT, base_mappings, pipeline

__all__ = ["base_mappings"]  # the module fixture, shared

SAGE_USER, INTEGRATION = "0000000003", "SGSF"


class Pipeline:
    """The Sage source publishing into the customer sync, as Kafka would deliver it."""

    def __init__(self, sage_db: Any, mappings: Any) -> None:
        self.source = SageSource(sage_db.settings(), {}, sweep=False)
        self.publisher = CapturingPublisher()
        self.loop = SourceLoop(self.source, self.publisher, MemoryPositions())
        self.sync = CustomerSync(MappingsRef(mappings), pipeline(mappings).customer_directory)
        self.offset = 0

    def poll(self) -> list[CanonicalRecord]:
        make_due(self.source)
        self.loop.run_once()
        return [r for r in self.publisher.take() if r.schema == "Customer"]

    def account_updates(self, records: list[CanonicalRecord]) -> list[dict[str, Any]]:
        """The Account field maps the customer sync sends for these records."""
        out = []
        for record in records:
            self.offset += 1
            headers = tuple((k, v if isinstance(v, bytes) else v.encode()) for k, v in record.headers)
            origin = Origin("customer.v1", 0, self.offset, b"k", b"v", headers)
            assert record.value is not None
            step = self.sync.on_customer(record.key, record.value, origin)
            out += [o.value["fields"] for o in step.outbound if o.topic == "salesforce.commands.v1"]
        return out

    def account_edit(self, division: str, number: str, name: str, phone: str) -> dict[str, Any]:
        """A sales rep edits the Account: the UpsertCustomer the sync sends to Sage."""
        self.offset += 1
        edited = {
            "envelope": {
                "event_id": str(uuid.uuid4()),
                "event_time": datetime.now(UTC),
                "source_system": "SALESFORCE",
                "source_record_id": ACCOUNT,
                "correlation_id": None,
            },
            "salesforce_account_id": ACCOUNT,
            "ar_division_no": division,
            "customer_no": number,
            "name": name,
            "status": "ACTIVE",
            "telephone_no": phone,
            "deleted": False,
        }
        step = self.sync.on_customer(
            f"{division}-{number}", edited, Origin("customer.v1", 1, self.offset, None, b"a")
        )
        [command] = [o.value["command"][1] for o in step.outbound if o.topic == "sage.commands.v1"]
        return dict(command["customer"])


def test_a_sage_users_edit_is_not_lost_when_the_integration_writes_the_row_before_the_next_poll(
    sage_db, base_mappings
):
    p = Pipeline(sage_db, base_mappings)
    p.loop.run_once()
    p.publisher.take()
    odbc = sage_db.odbc()
    [(division, number, name)] = odbc.fetchall(
        "SELECT ARDivisionNo, CustomerNo, CustomerName FROM AR_Customer WHERE CustomerNo = 'CASC003'"
    )
    odbc.close()
    with SageSimulator(sage_db) as sim:  # the customer is linked to its Account
        sim.write_row(
            "AR_Customer",
            {"ARDivisionNo": division, "CustomerNo": number, "UDF_SALESFORCE_ID": ACCOUNT},
            user=SAGE_USER,
        )
    assert len(p.account_updates(p.poll())) == 1

    upsert = p.account_edit(division, number, name, "(312) 555-0101")
    with SageSimulator(sage_db) as sim:
        # a credit controller raises the limit in Sage; seconds later, before the next poll, the
        # Sage sink writes the Account's new phone to the same row, stamped by the integration
        sim.edit_customer(division, number, {"CreditLimit": "98765.00"}, user=SAGE_USER)
        sim.write_row(
            "AR_Customer",
            {"ARDivisionNo": division, "CustomerNo": number, "TelephoneNo": upsert["telephone_no"]},
            user=INTEGRATION,
        )
    updates = p.account_updates(p.poll())
    assert updates == [{"Credit_Limit__c": 98765.0, "ExternalID__c": f"{division}-{number}"}]  # not the phone

    # a pure echo: the integration's write alone comes back as nothing at all
    upsert = p.account_edit(division, number, name, "(312) 555-0102")
    with SageSimulator(sage_db) as sim:
        sim.write_row(
            "AR_Customer",
            {"ARDivisionNo": division, "CustomerNo": number, "TelephoneNo": upsert["telephone_no"]},
            user=INTEGRATION,
        )
    echoed = p.poll()
    assert len(echoed) == 1  # published for other consumers, marked as the integration's
    assert echoed[0].headers == (("sagesf.written-by", b"integration"),)
    assert p.account_updates(echoed) == []
    p.source.close()
