"""Every mapping field has an effect: retarget it in the mappings and the write moves with it.

For each kind of customer and item target (a salesforce_to_sage field's `sage:`, an address
column, a custom field's `sage:` for each type, sage_to_salesforce's `salesforce:`, item_fields,
custom fields on Product2 both ways, inventory fields), the processors' own functions make the
command from the shipped mappings and from a copy with that one target changed. Sage targets are
then written by the real Sage sink over ODBC to the sandbox database (no broker: the sink is
driven directly); Salesforce targets are read off the SalesforceCommand fields.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.commands import parse_command
from connectors.sage100.customer_numbers import CustomerNumbering
from connectors.sage100.reads import SqlSageReads
from connectors.sage100.sink import SageCommandSink
from connectors.sage100.sql_writer import SqlSageWriter
from connectors.sage100.validation import CommandValidator
from connectors.sage100.values import typed_value
from processors import commands
from processors.field_mapping import (
    customer_to_sage,
    customer_to_salesforce,
    item_to_sage,
    item_to_salesforce,
)
from processors.inventory import InventoryPipeline
from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.state import MappingsRef, Tables
from sagesf.errors import Permanent
from sandbox.sage100.database import DEFAULT_UDF_COLUMNS, SandboxDatabase, create_database, seed

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
# spare UDF columns a retargeted field moves to, one per kind of column
SPARE = ["UDF_SPARE_TEXT:S30", "UDF_SPARE_NUMBER:N15.2", "UDF_SPARE_DATE:date"]


@pytest.fixture(scope="module")
def shipped() -> Mappings:
    return load_mappings(REPO / "mappings")


@pytest.fixture
def db(tmp_path: Path) -> SandboxDatabase:
    udfs = {**DEFAULT_UDF_COLUMNS}
    udfs["AR_Customer"] = [*udfs["AR_Customer"], *SPARE]
    udfs["CI_Item"] = [*udfs["CI_Item"], *SPARE]
    created = create_database(tmp_path / "sage100.db", udfs)
    seed(created)
    return created


@pytest.fixture
def sink(db: SandboxDatabase) -> Iterator[tuple[SageCommandSink, Any]]:
    odbc = db.odbc()
    reads = SqlSageReads(odbc, db.tables)
    yield (
        SageCommandSink(
            reads=reads,
            writer=SqlSageWriter(odbc, db.tables, user_key="SGSF", zone=db.settings().zone),
            validator=CommandValidator(reads, tables=db.tables),
            numbering=CustomerNumbering(),
            results_topic="sage.results.v1",
            breaker=CircuitBreaker("sage-sink"),
        ),
        odbc,
    )
    odbc.close()


def retargeted(mappings: Mappings, file: str, path: tuple[str, ...], value: str) -> Mappings:
    """`mappings` with the entry at `path` of one file's model set to `value`."""
    model = getattr(mappings, file)
    data = model.model_dump()
    node = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return dataclasses.replace(mappings, **{file: type(model).model_validate(data)})


def envelope(record_id: str, source: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC),
        "source_system": source,
        "source_record_id": record_id,
        "correlation_id": None,
    }


# --- Salesforce -> Sage: AR_Customer ---------------------------------------------------------

# (case, mapping path in customers.yaml, new target, Account values, old column, new column, written)
CUSTOMER_TARGETS: list[tuple[str, tuple[str, ...], str, dict[str, Any], str, str, Any]] = [
    (
        "field",
        ("salesforce_to_sage", "fields", "telephone_no", "sage"),
        "FaxNo",
        {"telephone_no": "(617) 555-0100"},
        "TelephoneNo",
        "FaxNo",
        "(617) 555-0100",
    ),
    (
        "address",
        ("salesforce_to_sage", "addresses", "billing_address", "city"),
        "AddressLine3",
        {"billing_address": {"line1": "1 Dock St", "city": "Salem", "country_code": "US"}},
        "City",
        "AddressLine3",
        "Salem",
    ),
    *[
        (
            f"custom {kind}",
            ("custom_fields", name, "sage"),
            spare,
            {"custom_fields": {name: value}},
            old,
            spare,
            written,
        )
        for kind, name, value, old, spare, written in [
            ("text", "salesforce_account_number", "ACC-77", "UDF_ACCOUNT_NUMBER", "UDF_SPARE_TEXT", "ACC-77"),
            (
                "number",
                "annual_revenue",
                "1250000.5",
                "UDF_ANNUAL_REVENUE",
                "UDF_SPARE_NUMBER",
                Decimal("1250000.50"),
            ),
            (
                "date",
                "customer_since",
                "2020-05-01",
                "UDF_CUSTOMER_SINCE",
                "UDF_SPARE_DATE",
                date(2020, 5, 1),
            ),
            (
                "datetime",
                "last_reviewed",
                "2026-03-01T10:00:00.000+0000",
                "UDF_LAST_REVIEWED",
                "UDF_SPARE_TEXT",
                "2026-03-01T10:00:00Z",
            ),
            ("checkbox", "tax_exempt", "true", "UDF_TAX_EXEMPT", "UDF_SPARE_TEXT", "Y"),
            ("picklist", "region", "West", "UDF_REGION", "UDF_SPARE_TEXT", "WE"),
            ("lookup", "account_owner", "005000000000001AAA", "UDF_ACCOUNT_OWNER", "UDF_SPARE_TEXT", "SGSF"),
        ]
    ],
]


def upsert(mappings: Mappings, linked: tuple[str, str], values: dict[str, Any]) -> Any:
    """The UpsertCustomer the customer sync sends for an Account linked to Sage customer `linked`."""
    account = ("001" + uuid.uuid4().hex.upper())[:18]
    customer = {
        "envelope": envelope(account, "SALESFORCE"),
        "salesforce_account_id": account,
        "name": "Harbor Supply",
        "status": "ACTIVE",
        **values,
    }
    columns, _ = customer_to_sage(mappings, customer)
    data = {"salesforce_account_id": account, "ar_division_no": linked[0], "customer_no": linked[1]}
    out = commands.upsert_customer(data, f"cmd-{account}", account, None, columns=columns, event_time=None)
    return parse_command(out.value)


def columns_of(
    db: SandboxDatabase, odbc: Any, table: str, where: str, key: str, names: list[str]
) -> list[Any]:
    row = odbc.fetchone(f"SELECT {', '.join(names)} FROM {table} WHERE {where} = ?", [key])  # noqa: S608
    return [typed_value(db.tables[table].column(n), v) for n, v in zip(names, row, strict=True)]


@pytest.mark.parametrize(
    ("path", "target", "values", "old", "new", "written"),
    [c[1:] for c in CUSTOMER_TARGETS],
    ids=[c[0] for c in CUSTOMER_TARGETS],
)
def test_a_retargeted_customer_field_is_written_to_its_new_column(
    shipped: Mappings,
    db: SandboxDatabase,
    sink: tuple[SageCommandSink, Any],
    path: tuple[str, ...],
    target: str,
    values: dict[str, Any],
    old: str,
    new: str,
    written: Any,
) -> None:
    applier, odbc = sink
    rows = odbc.fetchall("SELECT ARDivisionNo, CustomerNo FROM AR_Customer ORDER BY CustomerNo LIMIT 2")
    first, second = ((str(r[0]), str(r[1])) for r in rows)
    before = columns_of(db, odbc, "AR_Customer", "CustomerNo", second[1], [old, new])

    assert applier.apply(upsert(shipped, first, values))["outcome"] == "UPDATED"
    assert columns_of(db, odbc, "AR_Customer", "CustomerNo", first[1], [old])[0] == written

    moved = retargeted(shipped, "customers", path, target)
    assert applier.apply(upsert(moved, second, values))["outcome"] == "UPDATED"
    assert columns_of(db, odbc, "AR_Customer", "CustomerNo", second[1], [old, new]) == [before[0], written]


# --- Salesforce -> Sage: CI_Item -------------------------------------------------------------


def update_item(mappings: Mappings, code: str, values: dict[str, Any]) -> Any:
    product = {"envelope": envelope(code, "SALESFORCE"), "item_code": code, "custom_fields": values}
    out = commands.update_item(code, item_to_sage(mappings, product), f"cmd-{code}", code, event_time=None)
    return parse_command(out.value)


def test_a_retargeted_product_custom_field_is_written_to_its_new_item_column(
    shipped: Mappings, db: SandboxDatabase, sink: tuple[SageCommandSink, Any]
) -> None:
    applier, odbc = sink
    first, second = (r[0] for r in odbc.fetchall("SELECT ItemCode FROM CI_Item ORDER BY ItemCode")[:2])
    values = {"weight": "12.5"}

    result = applier.apply(update_item(shipped, first, values))
    assert result["outcome"] == "UPDATED"
    # written as the integration user: the Sage source drops it as our echo (polling.py)
    assert columns_of(db, odbc, "CI_Item", "ItemCode", first, ["UDF_WEIGHT", "UserUpdatedKey"]) == [
        Decimal("12.500"),
        "SGSF",
    ]
    assert applier.apply(update_item(shipped, first, values))["outcome"] == "EXISTING"  # idempotent

    moved = retargeted(shipped, "products", ("custom_fields", "weight", "sage"), "UDF_SPARE_NUMBER")
    applier.apply(update_item(moved, second, values))
    assert columns_of(db, odbc, "CI_Item", "ItemCode", second, ["UDF_WEIGHT", "UDF_SPARE_NUMBER"]) == [
        Decimal("0.000"),
        Decimal("12.50"),
    ]


# --- Sage -> Salesforce ----------------------------------------------------------------------

SAGE_CUSTOMER = {
    "name": "Harbor Supply",
    "telephone_no": "(617) 555-0100",
    "custom_fields": {"UDF_TAX_EXEMPT": "Y", "UDF_ANNUAL_REVENUE": "1250000.50"},
}
SAGE_ITEM = {"description": "Brass hinge", "custom_fields": {"UDF_WEIGHT": "12.500", "UDF_WEB_ACTIVE": "N"}}

# (case, file, mapping path, new target, convert, record, old field, new field, value)
SALESFORCE_TARGETS: list[tuple[str, str, tuple[str, ...], str, Any, dict[str, Any], str, str, Any]] = [
    (
        "sage_to_salesforce field",
        "customers",
        ("sage_to_salesforce", "fields", "telephone_no", "salesforce"),
        "Fax",
        customer_to_salesforce,
        SAGE_CUSTOMER,
        "Phone",
        "Fax",
        "(617) 555-0100",
    ),
    (
        "Account custom field",
        "customers",
        ("custom_fields", "tax_exempt", "salesforce"),
        "Other_Flag__c",
        customer_to_salesforce,
        SAGE_CUSTOMER,
        "Tax_Exempt__c",
        "Other_Flag__c",
        True,
    ),
    (
        "item field",
        "products",
        ("item_fields", "description", "salesforce"),
        "Description",
        item_to_salesforce,
        SAGE_ITEM,
        "Name",
        "Description",
        "Brass hinge",
    ),
    (
        "Product2 custom field",
        "products",
        ("custom_fields", "weight", "salesforce"),
        "Gross_Weight__c",
        item_to_salesforce,
        SAGE_ITEM,
        "Weight__c",
        "Gross_Weight__c",
        12.5,
    ),
]


@pytest.mark.parametrize(
    ("file", "path", "target", "convert", "record", "old", "new", "value"),
    [c[1:] for c in SALESFORCE_TARGETS],
    ids=[c[0] for c in SALESFORCE_TARGETS],
)
def test_a_retargeted_salesforce_field_moves_in_the_command(
    shipped: Mappings,
    file: str,
    path: tuple[str, ...],
    target: str,
    convert: Any,
    record: dict[str, Any],
    old: str,
    new: str,
    value: Any,
) -> None:
    assert convert(shipped, record)[old] == value
    fields = convert(retargeted(shipped, file, path, target), record)
    assert (fields.get(old), fields[new]) == (None, value)


def test_a_retargeted_inventory_field_moves_in_the_stock_command(shipped: Mappings) -> None:
    def stock(mappings: Mappings) -> dict[str, Any]:
        tables = Tables.in_memory()
        tables.items["HRDW-1000"] = {"salesforce_product_id": "01t000000000001AAA"}
        pipeline = InventoryPipeline(MappingsRef(mappings), tables)
        level = {
            "item_code": "HRDW-1000",
            "warehouse_code": "000",
            "quantity_on_hand": Decimal("5"),
            "quantity_available": Decimal("4"),
            "envelope": {"event_time": datetime(2026, 11, 1, tzinfo=UTC)},
        }
        pipeline.on_level("HRDW-1000/000", level)
        [command] = pipeline.flush().outbound
        return dict(command.value["fields"])

    assert stock(shipped)["Quantity_On_Hand__c"] == 5.0
    fields = dict(shipped.products.inventory.fields)
    fields["Quantity_In_Stock__c"] = fields.pop("Quantity_On_Hand__c")
    moved = dataclasses.replace(
        shipped,
        products=shipped.products.model_copy(
            update={"inventory": shipped.products.inventory.model_copy(update={"fields": fields})}
        ),
    )
    moved_fields = stock(moved)
    assert (moved_fields.get("Quantity_On_Hand__c"), moved_fields["Quantity_In_Stock__c"]) == (None, 5.0)


# --- what the sink refuses -------------------------------------------------------------------


def test_a_customer_command_without_columns_is_refused_saying_to_replay_it_through_the_processors(
    sink: tuple[SageCommandSink, Any],
) -> None:
    applier, odbc = sink
    [(division, number)] = odbc.fetchall("SELECT ARDivisionNo, CustomerNo FROM AR_Customer LIMIT 1")
    customer = {"salesforce_account_id": None, "ar_division_no": division, "customer_no": number, "name": "X"}
    older = {
        "envelope": envelope("x", "SAGESF"),
        "command_id": "cmd-old",
        "command": ("io.sagesf.canonical.UpsertCustomer", {"customer": customer}),  # before `columns`
    }
    with pytest.raises(Permanent, match="replay the Account change through the processors") as info:
        applier.apply(parse_command(older))
    assert info.value.field == "columns"


@pytest.mark.parametrize(
    ("columns", "reason"),
    [
        ({"UDF_NOT_THERE": "x"}, "AR_Customer has no column UDF_NOT_THERE"),
        ({"CustomerNo": "OTHER"}, "AR_Customer.CustomerNo is the sink's own"),
        ({"UDF_ANNUAL_REVENUE": "lots"}, "'lots' is not a value of UDF_ANNUAL_REVENUE"),
        ({"UDF_CUSTOMER_SINCE": "01/05/2020"}, "is not a value of UDF_CUSTOMER_SINCE (date)"),
        ({"TermsCode": "99"}, "TermsCode '99' does not exist in AR_TermsCode"),
    ],
)
def test_a_column_the_table_cannot_take_is_refused_naming_it(
    sink: tuple[SageCommandSink, Any], columns: dict[str, str], reason: str
) -> None:
    applier, odbc = sink
    [(division, number)] = odbc.fetchall("SELECT ARDivisionNo, CustomerNo FROM AR_Customer LIMIT 1")
    data = {"salesforce_account_id": None, "ar_division_no": division, "customer_no": number}
    out = commands.upsert_customer(data, "cmd-bad", number, None, columns=columns, event_time=None)
    with pytest.raises(Permanent, match=re.escape(reason)):
        applier.apply(parse_command(out.value))


def test_an_update_of_an_item_sage_does_not_have_is_refused_and_creates_nothing(
    shipped: Mappings, sink: tuple[SageCommandSink, Any]
) -> None:
    applier, odbc = sink
    with pytest.raises(Permanent, match="'NO-SUCH-ITEM' does not exist in CI_Item"):
        applier.apply(update_item(shipped, "NO-SUCH-ITEM", {"weight": "1"}))
    assert odbc.fetchall("SELECT ItemCode FROM CI_Item WHERE ItemCode = ?", ["NO-SUCH-ITEM"]) == []
