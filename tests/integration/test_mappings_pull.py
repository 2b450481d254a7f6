"""`sagesf mappings pull` against the emulator and the sandbox Sage database: the committed
mappings/metadata files are what a pull gives (a stale file fails here), a re-pull changes
nothing, and a field added in the org and a UDF added in Sage reach the checks only through a
pull."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from connectors.salesforce.sfdx_project import DEFAULT_PROJECT
from processors.cli import app
from sagesf.system_metadata import body_of
from sandbox.sage100.database import DEFAULT_UDF_COLUMNS, add_missing_udfs
from sandbox.salesforce.harness import start_emulator
from tests.conformance.salesforce import login_env

REPO = Path(__file__).resolve().parents[2]
ACCOUNT_FIELDS = Path("force-app/main/default/objects/Account/fields")
LOYALTY = """<?xml version="1.0" encoding="UTF-8"?>
<CustomField xmlns="http://soap.sforce.com/2006/04/metadata">
    <fullName>Loyalty_Level__c</fullName>
    <label>Loyalty Level</label>
    <length>10</length>
    <type>Text</type>
</CustomField>
"""


def run(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(app, args, env={**env, "COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def systems_env(emulator, db, mappings: Path = REPO / "mappings") -> dict[str, str]:
    return {
        **login_env(emulator, "sagesf"),
        "SAGESF_SAGE100__CONNECTION_STRING": db.connection_string,
        "SAGESF_SAGE100__UDF_COLUMNS": json.dumps(DEFAULT_UDF_COLUMNS),
        "SAGESF_PROCESSORS__MAPPINGS_DIR": str(mappings),
    }


def test_the_committed_metadata_is_what_a_pull_from_the_sandbox_gives_and_a_repull_changes_nothing(
    salesforce_emulator, sage_db, tmp_path
):
    env, metadata = systems_env(salesforce_emulator, sage_db), tmp_path / "metadata"
    code, out = run(["pull", "--dir", str(metadata)], env)
    assert code == 0, out
    for name in ("salesforce.yaml", "sage100.yaml"):
        assert body_of(metadata / name) == body_of(REPO / "mappings/metadata" / name), (
            f"mappings/metadata/{name} is stale: run `sagesf mappings pull` against the sandbox"
        )
    pulled = body_of(metadata / "salesforce.yaml") or {}
    account = pulled["objects"]["Account"]["fields"]
    assert account["Name"]["required"] is True  # not nillable, createable, no default
    assert "required" not in account["OwnerId"]  # Salesforce defaults it to the creating user
    assert pulled["objects"]["Account"]["fields"]["Customer_Tier__c"]["values"] == [
        "Platinum",
        "Gold",
        "Silver",
        "Bronze",
    ]
    assert (body_of(metadata / "sage100.yaml") or {})["tables"]["AR_Customer"]["columns"][
        "UDF_CUSTOMER_TIER"
    ] == "S4"
    texts = {p.name: p.read_text() for p in metadata.iterdir()}
    code, out = run(["pull", "--dir", str(metadata)], env)
    assert code == 0, out
    assert out.count("unchanged") == 2, out
    assert {p.name: p.read_text() for p in metadata.iterdir()} == texts


def test_a_field_added_in_the_org_and_a_udf_added_in_sage_pass_the_check_after_a_pull(sage_db, tmp_path):
    project, mappings, metadata = tmp_path / "salesforce", tmp_path / "mappings", tmp_path / "metadata"
    shutil.copytree(DEFAULT_PROJECT, project)
    shutil.copytree(REPO / "mappings", mappings)
    customers = mappings / "customers.yaml"
    customers.write_text(
        customers.read_text().replace(
            "custom_fields:\n",
            "custom_fields:\n  loyalty: {salesforce: Loyalty_Level__c, sage: UDF_LOYALTY, direction: both}\n",
            1,
        )
    )
    emulator = start_emulator(tmp_path / "org", sfdx_project=project)
    try:
        # no --dir: the pull writes the files the checks read
        checked = {
            "SAGESF_PROCESSORS__SALESFORCE_METADATA": str(metadata / "salesforce.yaml"),
            "SAGESF_PROCESSORS__SAGE_METADATA": str(metadata / "sage100.yaml"),
        }
        env, check = {**systems_env(emulator, sage_db, mappings), **checked}, ["check"]
        assert run(["pull", "--object", "User"], env)[0] == 0
        assert "User" in (body_of(metadata / "salesforce.yaml") or {})["objects"]  # no mapping names it
        code, out = run(check, env)
        assert code == 1
        assert "Account has no field Loyalty_Level__c" in out, out
        assert "AR_Customer has no column UDF_LOYALTY" in out, out

        (project / ACCOUNT_FIELDS / "Loyalty_Level__c.field-meta.xml").write_text(LOYALTY)
        emulator.restart()
        sage_db.udf_columns["AR_Customer"] = [*sage_db.udf_columns["AR_Customer"], "UDF_LOYALTY:S10"]
        assert add_missing_udfs(sage_db) == ["AR_Customer.UDF_LOYALTY"]
        env = {**systems_env(emulator, sage_db, mappings), **checked}  # UDF_COLUMNS (default) lacks it
        code, out = run(["pull"], env)
        assert code == 0, out
        assert "+ Account.Loyalty_Level__c" in out, out
        assert "+ AR_Customer.UDF_LOYALTY" in out, out
        code, out = run(check, env)
        assert code == 0, out
    finally:
        emulator.stop()


def test_a_system_that_cannot_be_reached_exits_2_with_one_line_and_no_secret(sage_db, tmp_path):
    missing = "Driver={SQLite3};Database=/nonexistent/x.db;NoCreat=1;PWD=hunter2secret"
    env = {"SAGESF_SAGE100__CONNECTION_STRING": missing}
    code, out = run(["pull", "--sage", "--dir", str(tmp_path)], env)
    assert code == 2, out
    assert out.strip().startswith("error: sage:"), out
    assert len(out.strip().splitlines()) == 1, out
    assert "hunter2secret" not in out
    assert not (tmp_path / "sage100.yaml").exists()
    code, out = run(["pull", "--salesforce", "--dir", str(tmp_path)], {})  # no login settings at all
    assert code == 2, out
    assert out.strip().startswith("error: salesforce:"), out
    assert len(out.strip().splitlines()) == 1, out
