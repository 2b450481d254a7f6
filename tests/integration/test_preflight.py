"""`sagesf preflight salesforce|sage` on the emulator and the sandbox database: everything sagesf
needs is found; an org built from a project without a field, or a company without a UDF, is named
with how to add it, and the command fails."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import typer
from typer.testing import CliRunner

from connectors.salesforce.sfdx_project import DEFAULT_PROJECT
from sagesf.cli import add_core_commands
from sandbox.salesforce.harness import start_emulator
from tests.conformance.salesforce import login_env

FIELDS = Path("force-app/main/default/objects")
MEMBERS = Path("force-app/main/default/platformEventChannelMembers")


def preflight(env: dict[str, str], system: str) -> tuple[int, str]:
    app = typer.Typer()
    add_core_commands(app)
    result = CliRunner().invoke(app, ["preflight", system], env={**env, "COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def test_the_emulator_org_has_everything_the_salesforce_components_need(salesforce_emulator):
    code, out = preflight(login_env(salesforce_emulator, "sagesf"), "salesforce")
    assert code == 0, out
    assert "salesforce-sink, salesforce-source" in out
    assert "everything the components need is there" in out


def test_an_org_deployed_without_a_field_and_a_cdc_selection_is_named_and_fails(tmp_path: Path):
    """The org is built from a copy of the project without a field and a CDC selection, and with a
    field shorter than the project has it; the preflight checks it against the project itself."""
    project = tmp_path / "salesforce"
    shutil.copytree(DEFAULT_PROJECT, project)
    (project / FIELDS / "Opportunity/fields/Sage_Order_No__c.field-meta.xml").unlink()
    (project / MEMBERS / "ChangeEvents_OrderChangeEvent.platformEventChannelMember-meta.xml").unlink()
    po_number = project / FIELDS / "Opportunity/fields/PO_Number__c.field-meta.xml"
    po_number.write_text(po_number.read_text().replace("<length>30</length>", "<length>20</length>"))
    emulator = start_emulator(tmp_path / "org", sfdx_project=project)
    try:
        code, out = preflight(login_env(emulator, "sagesf"), "salesforce")
    finally:
        emulator.stop()
    assert code == 1, out
    problems = problems_in(out)
    assert len(problems) == 3, out
    assert "Opportunity.PO_Number__c is not as needed (holds 20 characters, not 30)" in problems[0]
    assert "Opportunity.Sage_Order_No__c is missing: deploy salesforce/" in problems[1]
    assert "add a Text(7) field (external ID, unique)" in problems[1]
    assert "/data/OrderChangeEvent is missing" in problems[2]
    assert "select Order in Setup > Change Data Capture" in problems[2]


def problems_in(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip().startswith(("missing", "different"))]


def test_the_stale_guards_version_field_is_needed_while_the_guard_uses_it(tmp_path: Path):
    """An org deployed before Account.Sage_Synced_At__c was added to the project."""
    project = tmp_path / "salesforce"
    shutil.copytree(DEFAULT_PROJECT, project)
    (project / FIELDS / "Account/fields/Sage_Synced_At__c.field-meta.xml").unlink()
    emulator = start_emulator(tmp_path / "org", sfdx_project=project)
    try:
        guarded, guarded_out = preflight(login_env(emulator, "sagesf"), "salesforce")
        off, off_out = preflight(
            {**login_env(emulator, "sagesf"), "SAGESF_SALESFORCE__SINK__VERSION_FIELD": ""}, "salesforce"
        )
    finally:
        emulator.stop()
    assert guarded == 1, guarded_out
    [problem] = problems_in(guarded_out)
    assert "Account.Sage_Synced_At__c is missing: deploy salesforce/" in problem
    assert "add a DateTime field the integration user can read (needed by salesforce-sink)" in problem
    assert off == 0, off_out


def test_a_version_field_the_project_does_not_deploy_is_named_with_how_to_add_it(salesforce_emulator):
    guard = {"SAGESF_SALESFORCE__SINK__STALE_GUARD_OBJECTS": '["Account", "Contact"]'}
    code, out = preflight({**login_env(salesforce_emulator, "sagesf"), **guard}, "salesforce")
    assert code == 1, out
    [problem] = problems_in(out)
    assert problem.startswith("missing  Contact.Sage_Synced_At__c is missing: add a DateTime field")
    assert "SAGESF_SALESFORCE__SINK__VERSION_FIELD" in problem


def sage_env(sage_db) -> dict[str, str]:
    return {
        "SAGESF_SAGE100__CONNECTION_STRING": sage_db.connection_string,
        "SAGESF_SAGE100__UDF_COLUMNS": json.dumps(sage_db.udf_columns),
    }


def test_the_sandbox_company_has_every_table_column_and_udf_the_sage_components_need(sage_db):
    code, out = preflight(sage_env(sage_db), "sage")
    assert code == 0, out
    assert "sage-sink, sage-source" in out


def test_a_company_without_a_configured_udf_is_named_and_fails(sage_db):
    with sqlite3.connect(sage_db.path) as db:
        db.execute("ALTER TABLE AR_Customer DROP COLUMN UDF_ACCOUNT_NUMBER")
    code, out = preflight(sage_env(sage_db), "sage")
    assert code == 1, out
    [problem] = [line.strip() for line in out.splitlines() if line.strip().startswith("missing")]
    assert problem.startswith("missing  AR_Customer.UDF_ACCOUNT_NUMBER is missing: add it in Custom Office")
    assert "SAGESF_SAGE100__UDF_COLUMNS" in problem
    assert problem.endswith("(needed by sage-sink, sage-source)")


def test_a_system_no_component_checks_is_refused():
    code, out = preflight({}, "hubspot")
    assert code == 2
    assert "no installed component checks 'hubspot' (known: " in out
