"""processors.preview: what the saved and a candidate mapping make of one record, side by side."""

from __future__ import annotations

import shutil
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.preview import compare

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


def _candidate(tmp_path: Path, old: str, new: str) -> Mappings:
    shutil.copytree(ROOT / "mappings", tmp_path / "m", ignore=shutil.ignore_patterns("metadata"))
    path = tmp_path / "m" / "customers.yaml"
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
    found = compare("customer.v1", account(), current, current)
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
    found = compare("customer.v1", account(), current, candidate)
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
    found = compare("customer.v1", record, current, candidate)
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
    found = compare("customer.v1", record, current, current)
    assert found is not None
    assert found.direction == "to_salesforce"
    assert found.current.values is not None
    assert found.current.values["Type"] == "Customer - Direct"
