"""The mapping files: the real ones are valid against the sandbox's metadata; a broken one fails
naming the file, the line, the entry and the reason; addresses come out the way Sage stores them;
`sagesf mappings check` says the same as the worker."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from processors.addresses import fold_to_code_page, reflow_lines, standardise
from processors.cli import app as mappings_cli
from processors.mapping_files import MappingError, load_mappings
from processors.mapping_model import AddressesMapping, Mappings
from processors.metadata import load_sage_metadata
from sagesf.errors import Permanent

REPO = Path(__file__).resolve().parents[2]
SF_METADATA = REPO / "mappings/metadata/salesforce.yaml"
SAGE_METADATA = REPO / "mappings/metadata/sage100.yaml"


def load(directory: Path = REPO / "mappings") -> Mappings:
    return load_mappings(directory, salesforce_metadata=SF_METADATA, sage_metadata=SAGE_METADATA)


@pytest.fixture
def mappings_dir(tmp_path: Path) -> Path:
    target = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", target)
    return target


Edit = Callable[[str], str]


def problems_after(directory: Path, file: str, edit: Edit) -> tuple[list[str], str]:
    """Apply `edit` to one file; the problems load_mappings reports (paths relative) and the new text."""
    path = directory / file
    text = edit(path.read_text())
    path.write_text(text)
    with pytest.raises(MappingError) as info:
        load(directory)
    return [p.replace(f"{directory}/", "") for p in info.value.problems], text


def line_of(text: str, marker: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if marker in line)


# --- the real files ---------------------------------------------------------------------------


def test_the_repository_mappings_are_valid_against_the_sandbox_metadata() -> None:
    mappings = load()
    assert mappings.checked_against() == [
        "canonical schemas",
        f"Salesforce metadata {SF_METADATA}",
        f"Sage 100 columns {SAGE_METADATA}",
    ]
    assert mappings.products.lookup["1001-HON-H252"] == "HRDW-1000"
    assert mappings.orders.order_status.value_for("C", None) == "Completed"
    assert mappings.orders.order_status.value_for("?", "HOLD") == "Hold"
    assert mappings.sage_length("SO_SalesOrderHeader", "CustomerPONo") == 15


def test_the_sage_metadata_file_matches_the_sandbox_database_layouts() -> None:
    """mappings/metadata/sage100.yaml is data the processors read; the sandbox database is made
    from connectors/sage100/tables.py. They must agree column for column."""
    from connectors.sage100.tables import ColumnKind, layouts
    from sandbox.sage100.database import DEFAULT_UDF_COLUMNS

    metadata = load_sage_metadata(SAGE_METADATA)
    tables = layouts(DEFAULT_UDF_COLUMNS)
    assert set(metadata.tables) == set(tables)
    for name, table in tables.items():
        described = metadata.tables[name]
        assert described.key == table.key, name
        assert list(described.columns) == list(table.names), name
        for column in table.columns:
            kind = {
                ColumnKind.TEXT: "text",
                ColumnKind.DECIMAL: "decimal",
                ColumnKind.DATE: "date",
                ColumnKind.TIME: "time",
            }[column.kind]
            got = described.columns[column.name]
            assert (got.kind, got.length if kind == "text" else None, got.precision, got.scale) == (
                kind,
                column.length if kind == "text" else None,
                column.precision,
                column.scale,
            ), f"{name}.{column.name}"


# --- every error names file, line, entry and reason ------------------------------------------


CASES: list[tuple[str, str, Edit, str, str]] = [
    # (file, marker on the offending line, edit, entry, reason)
    (
        "products.yaml",
        "LONG-ONE",
        lambda t: t.replace("lookup:\n", "lookup:\n  LONG-ONE: ITEM-CODE-THAT-IS-FAR-TOO-LONG-X\n", 1),
        "lookup.LONG-ONE",
        "ItemCode 'ITEM-CODE-THAT-IS-FAR-TOO-LONG-X' is 32 characters; CI_Item.ItemCode holds 30",
    ),
    (
        "products.yaml",
        "CABLE-MED: ELEC-1005",
        lambda t: t.replace("  CABLE-MED: ELEC-1001\n", "  CABLE-MED: ELEC-1001\n  CABLE-MED: ELEC-1005\n"),
        "lookup.CABLE-MED",
        "key repeats the one on line",
    ),
    (
        "products.yaml",
        '"6655": 1003',
        lambda t: t.replace('"6655": TOOL-1003', '"6655": 1003'),
        "lookup.6655",
        "Input should be a valid string (got 1003: quote it in YAML)",
    ),
    (
        "products.yaml",
        "Quantity_On_Hand__c: on_hand",
        lambda t: t.replace("Quantity_On_Hand__c: quantity_on_hand", "Quantity_On_Hand__c: on_hand"),
        "inventory.fields.Quantity_On_Hand__c",
        "'on_hand' is not an InventoryLevel quantity",
    ),
    (
        "products.yaml",
        "Inventory_Update__c: event_time",
        lambda t: t.replace("Inventory_Updated__c: event_time", "Inventory_Update__c: event_time"),
        "inventory.fields.Inventory_Update__c",
        "Product2 has no field Inventory_Update__c",
    ),
    (
        "orders.yaml",
        "C: Shipped",
        lambda t: t.replace("C: Completed    # closed", "C: Shipped"),
        "order_status.sage_codes.C",
        "'Shipped' is not a value of the picklist Opportunity.Sage_Order_Status__c",
    ),
    (
        "orders.yaml",
        "Closed Won: {order_type: RUSH}",
        lambda t: t.replace("Closed Won: {order_type: STANDARD}", "Closed Won: {order_type: RUSH}"),
        "start.Closed Won.order_type",
        "'RUSH' is not an OrderType",
    ),
    (
        "orders.yaml",
        "customer_po_number",
        lambda t: t.replace("customer_po_no: {sage: CustomerPONo", "customer_po_number: {sage: CustomerPONo"),
        "header.customer_po_number",
        "SalesOrder has no mappable field 'customer_po_number'",
    ),
    (
        "orders.yaml",
        "outside_code_page: drop",
        lambda t: t.replace("{sage: FOB, overflow: truncate}", "{sage: FOB, outside_code_page: drop}"),
        "header.fob.outside_code_page",
        "Input should be 'fold' or 'error'",
    ),
    (
        "orders.yaml",
        "map: units",
        lambda t: t.replace("map: unit_of_measure}", "map: units}"),
        "lines.unit_of_measure.map",
        "no picklist named 'units' in this file",
    ),
    (
        "orders.yaml",
        "city: ShipToTown",
        lambda t: t.replace("city: ShipToCity", "city: ShipToTown"),
        "addresses.ship_to.city",
        "SO_SalesOrderHeader has no column ShipToTown",
    ),
    (
        "orders.yaml",
        "sage: UDF_LINE_NOTES",
        lambda t: t.replace("sage: UDF_LINE_NOTE,", "sage: UDF_LINE_NOTES,"),
        "line_custom_fields.line_note.sage",
        "SO_SalesOrderDetail has no column UDF_LINE_NOTES",
    ),
    (  # a line custom field coming back is written to each order object's line object
        "orders.yaml",
        "salesforce: Line_Tags__c",
        lambda t: t.replace("salesforce: Line_Tag__c,", "salesforce: Line_Tags__c,"),
        "line_custom_fields.line_tag.salesforce",
        "OpportunityLineItem has no field Line_Tags__c",
    ),
    (
        "customers.yaml",
        "sage: UDF_ACCOUNT_NO,",
        lambda t: t.replace("sage: UDF_ACCOUNT_NUMBER,", "sage: UDF_ACCOUNT_NO,"),
        "custom_fields.salesforce_account_number.sage",
        "AR_Customer has no column UDF_ACCOUNT_NO",
    ),
    (  # a typed custom field needs a Salesforce field of its type
        "customers.yaml",
        "type: number",
        lambda t: t.replace(
            "sage: UDF_ACCOUNT_NUMBER, direction", "sage: UDF_ACCOUNT_NUMBER, type: number, direction"
        ),
        "custom_fields.salesforce_account_number.salesforce",
        "a number field needs a int or double or currency or percent field; Account.AccountNumber is string",
    ),
    (  # a lookup read backwards toward Salesforce cannot tell two owners apart
        "customers.yaml",
        "005000000000002AAA",
        lambda t: t.replace(
            "{005000000000001AAA: SGSF}", "{005000000000001AAA: SGSF, 005000000000002AAA: SGSF}"
        ),
        "lookups.owners.values",
        "account_owner: Salesforce OwnerId values '005000000000001AAA' and '005000000000002AAA' all "
        "become Sage UDF_ACCOUNT_OWNER 'SGSF'",
    ),
    (  # a picklist map's keys are values of the Salesforce picklist
        "customers.yaml",
        "# Account.Region__c <-> AR_Customer.UDF_REGION",
        lambda t: t.replace("West: WE}", "West: WE, Central: CE}"),
        "picklists.region",
        "'Central' is not a value of the picklist Account.Region__c",
    ),
    (  # a checkbox is Y/N text in Sage
        "customers.yaml",
        "tax_exempt: {salesforce: Tax_Exempt__c, sage: UDF_CUSTOMER_SINCE",
        lambda t: t.replace("sage: UDF_TAX_EXEMPT,", "sage: UDF_CUSTOMER_SINCE,"),
        "custom_fields.tax_exempt.sage",
        "a checkbox field needs a text column; UDF_CUSTOMER_SINCE is date",
    ),
    (  # the address columns are AR_Customer's
        "customers.yaml",
        "city: Town",
        lambda t: t.replace("      city: City\n", "      city: Town\n"),
        "salesforce_to_sage.addresses.billing_address.city",
        "AR_Customer has no column Town",
    ),
    (
        "customers.yaml",
        "teléfono",
        lambda t: t.replace(
            "    telephone_no: {salesforce: Phone}", "    telephone_no: {salesforce: Phone, teléfono: x}"
        ),
        "sage_to_salesforce.fields.telephone_no.teléfono",
        "unknown key (misspelt, or not supported here)",
    ),
    (
        "customers.yaml",
        "synced: Done",
        lambda t: t.replace("synced: Synced", "synced: Done"),
        "write_back.sync_status",
        "'Done' is not a value of the picklist Account.Sage_Sync_Status__c",
    ),
    (  # every subscriber receives the event: no figure may be mapped onto it
        "customers.yaml",
        "available_credit: Message__c",
        lambda t: t.replace(
            "    record_id: Credit_Check_Id__c\n",
            "    record_id: Credit_Check_Id__c\n    available_credit: Message__c\n",
        ),
        "credit_reply.event_fields.available_credit.[key]",
        "Input should be 'correlation_id', 'record_id' or 'message'",
    ),
    (
        "customers.yaml",
        "external_id: Message__c",
        lambda t: t.replace("  external_id: Correlation_Id__c\n", "  external_id: Message__c\n"),
        "credit_reply.external_id",
        "Credit_Check__c.Message__c is not an external ID field",
    ),
    (
        "pricing.yaml",
        'EUR: "-1.08"',
        lambda t: t.replace('EUR: "1.08"', 'EUR: "-1.08"'),
        "rates.EUR",
        "rate -1.08 must be a number above 0",
    ),
    (
        "pricing.yaml",
        "home_currency: US$",
        lambda t: t.replace("home_currency: USD", "home_currency: US$"),
        "home_currency",
        "'US$' is not an ISO 4217 code",
    ),
    (
        "addresses.yaml",
        "lines: {length: 40",
        lambda t: t.replace("lines: {length: 30", "lines: {length: 40"),
        "lines.length",
        "40 characters do not fit AR_Customer.AddressLine1 (S30)",
    ),
    (
        "addresses.yaml",
        "US: USAA",
        lambda t: t.replace("  US: USA\n", "  US: USAA\n", 1),
        "countries.US",
        "country code 'USAA' is 4 characters; AR_Customer.CountryCode holds 3",
    ),
]


@pytest.mark.parametrize(("file", "marker", "edit", "entry", "reason"), CASES, ids=[c[3] for c in CASES])
def test_an_invalid_entry_is_reported_with_file_line_entry_and_reason(
    mappings_dir: Path, file: str, marker: str, edit: Edit, entry: str, reason: str
) -> None:
    problems, text = problems_after(mappings_dir, file, edit)
    line = line_of(text, marker)
    expected = f"{file}:{line}: {entry}: "
    assert any(p.startswith(expected) and reason in p for p in problems), (expected, reason, problems)


def test_every_problem_is_reported_at_once(mappings_dir: Path) -> None:
    pricing = mappings_dir / "pricing.yaml"
    pricing.write_text(pricing.read_text().replace("rounding: half_up", "rounding: up"))
    problems, _ = problems_after(
        mappings_dir,
        "products.yaml",
        lambda t: t.replace("require_known_item: false", "require_known_item: maybe"),
    )
    assert len(problems) == 2
    assert problems[0].startswith("products.yaml:")
    assert ": require_known_item: " in problems[0]
    assert problems[1].startswith("pricing.yaml:")
    assert ": rounding: " in problems[1]


def test_a_missing_file_and_missing_metadata_are_named(mappings_dir: Path) -> None:
    (mappings_dir / "addresses.yaml").unlink()
    with pytest.raises(MappingError) as info:
        load_mappings(mappings_dir, sage_metadata=mappings_dir / "nope.yaml")
    text = str(info.value)
    assert "addresses.yaml:1: (file): mapping file not found" in text
    assert "nope.yaml: metadata file not found" in text


def test_without_metadata_only_the_canonical_schemas_are_checked(mappings_dir: Path) -> None:
    text = (mappings_dir / "customers.yaml").read_text()
    # a UDF this installation's Sage metadata does not list: not an error without the metadata
    text = text.replace("sage: UDF_ACCOUNT_NUMBER,", "sage: UDF_ACCOUNT_NO,")
    (mappings_dir / "customers.yaml").write_text(text)
    mappings = load_mappings(mappings_dir)
    assert mappings.checked_against() == ["canonical schemas"]
    assert mappings.customers.custom_fields["salesforce_account_number"].sage == "UDF_ACCOUNT_NO"


def test_an_edit_is_noticed(mappings_dir: Path) -> None:
    mappings = load(mappings_dir)
    assert not mappings.changed()
    path = mappings_dir / "products.yaml"
    path.write_text(path.read_text() + "\n")
    import os

    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    assert mappings.changed()


# --- the command line -----------------------------------------------------------------------


def test_mappings_check_command(mappings_dir: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(
        mappings_cli,
        [
            "check",
            "--dir",
            str(mappings_dir),
            "--salesforce-metadata",
            str(SF_METADATA),
            "--sage-metadata",
            str(SAGE_METADATA),
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "mappings OK" in ok.output
    assert "Salesforce metadata" in ok.output

    path = mappings_dir / "orders.yaml"
    path.write_text(path.read_text().replace("N: New", "N: Fresh"))
    bad = runner.invoke(
        mappings_cli,
        [
            "check",
            "--dir",
            str(mappings_dir),
            "--salesforce-metadata",
            str(SF_METADATA),
            "--sage-metadata",
            str(SAGE_METADATA),
        ],
    )
    assert bad.exit_code == 1
    assert re.search(
        r"orders\.yaml:\d+: order_status\.sage_codes\.N: 'Fresh' is not a value of the picklist", bad.output
    )


# --- address standardisation ------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules() -> AddressesMapping:
    return load().addresses


def address(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        k: None
        for k in ("name", "code", "line1", "line2", "line3", "city", "state", "postal_code", "country_code")
    }
    return {**base, **fields}


def test_text_is_trimmed_and_codes_are_sage_codes(rules: AddressesMapping) -> None:
    out = standardise(
        address(
            name="  Acme   Hardware ",
            line1=" 12  Main St ",
            city=" Springfield",
            state="illinois",
            postal_code=" 62701-1234 ",
            country_code="United States",
        ),
        rules,
        "bill_to",
    )
    assert out == address(
        name="Acme Hardware",
        line1="12 Main St",
        city="Springfield",
        state="IL",
        postal_code="62701-1234",
        country_code="USA",
    )


@pytest.mark.parametrize(
    ("country", "state", "expected"),
    [
        ("CA", "Québec", ("CAN", "QC")),
        ("canada", "ontario", ("CAN", "ON")),
        ("USA", "tx", ("USA", "TX")),  # Sage's own code passes; a code stays a code (upper case)
        ("GB", None, ("GBR", None)),
        ("United Kingdom", "Greater London", ("GBR", None)),  # no state codes for GB: dropped
        ("MX", "Jalisco", ("MEX", "JA")),
    ],
)
def test_countries_and_states(
    rules: AddressesMapping, country: str, state: str | None, expected: tuple[str, str]
) -> None:
    out = standardise(address(country_code=country, state=state), rules, "ship_to")
    assert out is not None
    assert (out["country_code"], out["state"]) == expected


def test_an_unknown_country_or_a_long_state_is_refused_with_the_field(rules: AddressesMapping) -> None:
    with pytest.raises(Permanent) as info:
        standardise(address(country_code="Atlantis"), rules, "bill_to")
    assert info.value.field == "bill_to.country_code"
    assert "Atlantis" in info.value.reason
    with pytest.raises(Permanent) as state:
        standardise(address(country_code="US", state="Nowhere State"), rules, "bill_to")
    assert state.value.field == "bill_to.state"
    assert "states.US" in state.value.reason


def test_street_lines_are_split_at_words_to_sage_lengths(rules: AddressesMapping) -> None:
    out = standardise(
        address(line1="Suite 400, Northwest Corporate Center Building", line2="1200 Industrial Parkway"),
        rules,
        "bill_to",
    )
    assert out is not None
    assert [out["line1"], out["line2"], out["line3"]] == [
        "Suite 400, Northwest Corporate",
        "Center Building",
        "1200 Industrial Parkway",
    ]
    assert all(len(out[k]) <= 30 for k in ("line1", "line2", "line3"))


def test_a_street_that_cannot_fit_three_lines_is_an_error_or_truncated(rules: AddressesMapping) -> None:
    street = " ".join(["Longstreetname"] * 8)  # 119 characters: more than 3 x 30
    with pytest.raises(Permanent) as info:
        standardise(address(line1=street), rules, "ship_to")
    assert info.value.field == "ship_to.line1"
    assert "3 lines of 30" in info.value.reason
    lenient = rules.model_copy(update={"lines": rules.lines.model_copy(update={"overflow": "truncate"})})
    out = standardise(address(line1=street), lenient, "ship_to")
    assert out is not None
    assert out["line3"] == "Longstreetname Longstreetname"


def test_name_and_city_are_truncated_postal_code_refused(rules: AddressesMapping) -> None:
    out = standardise(
        address(name="The Extraordinarily Long Company Name Inc", city="Llanfairpwllgwyngyll Town"),
        rules,
        "bill_to",
    )
    assert out is not None
    assert out["name"] == "The Extraordinarily Long Compa"
    assert out["city"] == "Llanfairpwllgwyngyll"
    with pytest.raises(Permanent) as info:
        standardise(address(postal_code="12345-6789-000"), rules, "bill_to")
    assert info.value.field == "bill_to.postal_code"


def test_characters_outside_the_code_page_are_replaced() -> None:
    assert fold_to_code_page("Łódź Straße Café", "cp1252") == "Lódz Straße Café"  # ó and ß are in cp1252
    assert fold_to_code_page("東京", "cp1252") == "??"


def test_reflow_keeps_lines_that_already_fit() -> None:
    assert reflow_lines(["12 Main St", "Unit 4"], 30, 3) == (["12 Main St", "Unit 4"], False)
    assert reflow_lines(["a" * 31], 30, 3) == (["a" * 30, "a"], False)


def test_a_two_way_map_where_two_values_meet_is_refused_naming_both(mappings_dir: Path) -> None:
    problems, text = problems_after(
        mappings_dir, "customers.yaml", lambda t: t.replace('"15": "03"', '"15": "01"', 1)
    )
    line = line_of(text, '    values: {"00": COD')
    expected = f"customers.yaml:{line}: picklists.terms_code_to_salesforce.values: terms_code: "
    assert any(
        p.startswith(expected) and "'Net 15' and 'Net 30' all become Sage TermsCode '01'" in p
        for p in problems
    ), problems


def test_a_two_way_value_that_comes_back_changed_is_refused(mappings_dir: Path) -> None:
    problems, _ = problems_after(
        mappings_dir, "customers.yaml", lambda t: t.replace('"03": Net 15', '"03": Net 45', 1)
    )
    assert any("Sage TermsCode values '03' and '04' all become" in p for p in problems), problems
    assert any("'Net 15' goes as Sage TermsCode '03' and comes back as 'Net 45'" in p for p in problems)


def test_the_shipped_two_way_maps_round_trip_both_ways() -> None:
    mappings = load()
    to_sf = mappings.customers.picklists["terms_code_to_salesforce"].values
    to_sage = mappings.customers.picklists["terms_code_to_sage"].values
    source = {
        "Net 15": "15",
        "Net 30": "30",
        "Net 45": "45",
        "Net 60": "60",
        "Due on Receipt": "00",
        "COD": "CD",
    }
    assert {v: to_sf[to_sage[c]] for v, c in source.items()} == {v: v for v in source}


def test_without_the_source_mapping_values_that_meet_are_still_refused(mappings_dir: Path) -> None:
    (mappings_dir / "salesforce_source.yaml").unlink()
    problems, text = problems_after(
        mappings_dir, "customers.yaml", lambda t: t.replace("PROS: PROS}", "PROS: RETL}", 1)
    )
    assert problems == [
        f"customers.yaml:{line_of(text, 'RETL: Customer - Direct')}: "
        "picklists.customer_type_to_salesforce.values: customer_type: canonical customer_type values "
        "'DIR' and 'PROS' all become Sage CustomerType 'RETL': the way back cannot tell them apart "
        "(give each its own value, or map all but one to nothing)"
    ]
