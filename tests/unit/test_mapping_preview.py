"""processors.preview: what the saved and a candidate mapping make of one record, side by side."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.preview import compare, comparisons

ROOT = Path(__file__).resolve().parents[2]
METADATA = {
    "salesforce_metadata": ROOT / "sandbox/salesforce/metadata.yaml",
    "sage_metadata": ROOT / "mappings/metadata/sage100.yaml",
}


def _mappings(directory: Path) -> Mappings:
    return load_mappings(directory, **METADATA)


@pytest.fixture
def current() -> Mappings:
    return _mappings(ROOT / "mappings")


def _candidate(tmp_path: Path, old: str, new: str, file: str = "customers.yaml") -> Mappings:
    shutil.copytree(ROOT / "mappings", tmp_path / "m", ignore=shutil.ignore_patterns("metadata"))
    path = tmp_path / "m" / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return _mappings(tmp_path / "m")


def account(customer_type: str = "DIR", source: str = "SALESFORCE") -> dict[str, Any]:
    envelope = {"event_id": str(uuid.uuid4()), "event_time": datetime.now(UTC), "source_system": source}
    return {
        "envelope": {**envelope, "source_record_id": "001A", "correlation_id": None},
        "salesforce_account_id": "001A",
        "name": "Acme Hardware",
        "status": "ACTIVE",
        "customer_type": customer_type,
        "terms_code": "30",
    }


def test_the_same_mapping_makes_the_same_columns(current: Mappings) -> None:
    found = compare("customers", account(), current, current)
    assert found is not None
    assert found.receiver == "Sage AR_Customer"
    assert found.current.values is not None
    assert found.current.values["CustomerType"] == "RETL"
    assert not found.differs


def test_a_new_default_shows_the_column_that_moves(current: Mappings, tmp_path: Path) -> None:
    candidate = _candidate(
        tmp_path,
        "email_address: {sage: EmailAddress}",
        "email_address: {sage: EmailAddress, default: none@acme.test}",
    )
    found = compare("customers", account(), current, candidate)
    assert found is not None
    assert found.differs
    assert found.changed_fields == ["EmailAddress"]
    assert found.candidate.values is not None
    assert found.candidate.values["EmailAddress"] == "none@acme.test"


def test_a_record_the_candidate_cannot_map_is_a_failure_with_its_reason(
    current: Mappings, tmp_path: Path
) -> None:
    candidate = _candidate(
        tmp_path, "telephone_no: {sage: TelephoneNo, overflow: truncate}", "telephone_no: {sage: TelephoneNo}"
    )
    record = {**account(), "telephone_no": "+1 217 555 0100 ext 12345"}  # TelephoneNo holds 17
    found = compare("customers", record, current, candidate)
    assert found is not None
    assert found.current.error is None
    assert found.candidate.values is None
    assert "TelephoneNo holds 17" in (found.candidate.error or "")
    assert found.differs


def test_a_sage_customer_is_previewed_toward_salesforce(current: Mappings) -> None:
    record = {
        **account(source="SAGE100"),
        "ar_division_no": "01",
        "customer_no": "ACME",
        "customer_type": "RETL",
    }
    found = compare("customers", record, current, current)
    assert found is not None
    assert found.direction == "to_salesforce"
    assert found.current.values is not None
    assert found.current.values["Type"] == "Customer - Direct"


def opportunity(unit: str = "Box", source: str = "SALESFORCE") -> dict[str, Any]:
    """A won Opportunity as the Salesforce source publishes it on salesorder.v1: two lines."""
    envelope = {"event_id": str(uuid.uuid4()), "event_time": datetime.now(UTC), "source_system": source}
    line = {"item_code": "HRDW-1008", "quantity_ordered": Decimal(2), "unit_price": Decimal("9.50")}
    return {
        "envelope": {**envelope, "source_record_id": "006A", "correlation_id": None},
        "salesforce_opportunity_id": "006A",
        "customer": {"salesforce_account_id": "001A", "name": "Acme Hardware"},
        "customer_po_no": "PO-2026-000000000000000042",  # Sage keeps 15: orders.yaml truncates
        "custom_fields": {"opportunity_name": "Acme spring restock"},
        "lines": [
            {**line, "line_no": 1, "unit_of_measure": unit, "custom_fields": {"line_note": "rush"}},
            {**line, "line_no": 2, "description": "Hinges, brass"},
        ],
    }


def test_an_order_is_compared_as_its_header_and_as_its_lines(current: Mappings) -> None:
    header = compare("order-header", opportunity(), current, current)
    assert header is not None
    assert header.receiver == "Sage SO_SalesOrderHeader"
    assert header.current.values == {
        "WarehouseCode": "000",
        "CustomerPONo": "PO-2026-0000000",
        "UDF_OPPORTUNITY_NAME": "Acme spring restock",
    }
    lines = compare("order-lines", opportunity(), current, current)
    assert lines is not None
    assert lines.receiver == "Sage SO_SalesOrderDetail"
    assert lines.current.values == {
        "line 1 UnitOfMeasure": "BOX",
        "line 1 UDF_LINE_NOTE": "rush",
        "line 2 ItemCodeDesc": "Hinges, brass",
    }
    assert not header.differs
    assert not lines.differs


def test_a_line_value_map_change_shows_the_line_and_column_that_move(
    current: Mappings, tmp_path: Path
) -> None:
    candidate = _candidate(tmp_path, "Box: BOX,", "Box: BX,", "orders.yaml")
    lines = compare("order-lines", opportunity(), current, candidate)
    assert lines is not None
    assert lines.changed_fields == ["line 1 UnitOfMeasure"]
    header = compare("order-header", opportunity(), current, candidate)
    assert header is not None
    assert not header.differs


def test_an_order_the_candidate_cannot_map_fails_with_its_reason(current: Mappings, tmp_path: Path) -> None:
    candidate = _candidate(
        tmp_path,
        "customer_po_no: {sage: CustomerPONo, overflow: truncate}",
        "customer_po_no: {sage: CustomerPONo}",
        "orders.yaml",
    )
    header = compare("order-header", opportunity(), current, candidate)
    assert header is not None
    assert header.current.error is None
    assert "CustomerPONo" in (header.candidate.error or "")


def test_a_sales_order_record_is_compared_once_per_order_tab_and_a_sage_order_not_at_all(
    current: Mappings,
) -> None:
    found = comparisons("salesorder.v1", opportunity(), current, current)
    assert [c.entity for c in found] == ["order-header", "order-lines"]
    assert comparisons("salesorder.v1", opportunity(source="SAGE100"), current, current) == []
