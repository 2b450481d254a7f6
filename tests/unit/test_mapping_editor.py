"""The mapping editor over HTTP: pair a new picklist custom field, fill its value map in the grid,
see problems next to their rows, save (a readable diff, comments kept, audited), restore; a
viewer cannot save."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from console.settings import ConsoleSettings
from tests.kit.console import TIERS, console_settings, csrf_of, logged_in, make_console, tier_metadata

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(tmp_path: Path) -> ConsoleSettings:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings", ignore=shutil.ignore_patterns("metadata"))
    sf, sage = tier_metadata(tmp_path / "metadata")
    return console_settings(tmp_path, salesforce_metadata=sf, sage_metadata=sage)


def _mapper(settings: ConsoleSettings) -> tuple[TestClient, str]:
    client = make_console(settings)
    return client, logged_in(client, "mapper")


def _pair_tier(client: TestClient, token: str) -> None:
    form = {
        "salesforce": "Customer_Tier__c",
        "sage": "UDF_CUSTOMER_TIER",
        "type": "picklist",
        "csrf_token": token,
    }
    assert client.post("/mappings/customers/pair", data=form).status_code == 303


def _fill_tiers(client: TestClient, token: str, tiers: dict[str, str]) -> None:
    form = {
        "section": "picklists",
        "name": "customer_tier",
        "unknown": "error",
        "source": [*tiers, ""],
        "target": [*tiers.values(), ""],
        "csrf_token": token,
    }
    assert client.post("/mappings/customers/value-map", data=form).status_code == 303


def _row(page: str, name: str) -> str:
    """The pairs table's row of `name` and the problem rows after it."""
    found = re.search(rf'<tr id="row-{name}".*?</tr>((?:\s*<tr class="problem-row">.*?</tr>)*)', page, re.S)
    assert found, f"no row {name}"
    return found.group(0)


def _map_section(page: str, name: str) -> str:
    section = page[page.index(f'id="map-{name}"') :]
    return section[: section.index("</section>")]


def test_a_new_picklist_pair_is_checked_inline_and_only_the_draft_changes(settings: ConsoleSettings) -> None:
    client, token = _mapper(settings)
    live = (settings.mappings_dir / "customers.yaml").read_text()
    _pair_tier(client, token)
    page = client.get("/mappings/customers").text
    row = _row(page, "customer_tier")
    assert "Customer_Tier__c" in row
    assert "UDF_CUSTOMER_TIER" in row
    assert "value map customer_tier" in row
    # the grid lists every picklist value of the Salesforce field, none mapped yet
    for tier in TIERS:
        assert f'value="{tier}"' in page
    assert 'class="problem"' not in page
    _fill_tiers(client, token, {**TIERS, "Platinum": "PLATINUM", "Diamond": "DIAM"})
    section = _map_section(client.get("/mappings/customers").text, "customer_tier")
    problems = " ".join(re.findall(r'<div class="problem">(.*?)</div>', section, re.S))
    assert "PLATINUM" in problems, problems  # longer than UDF_CUSTOMER_TIER (S4)
    assert "Diamond" in problems, problems  # not a value of the picklist
    assert (settings.mappings_dir / "customers.yaml").read_text() == live, "the live file changed before Save"


def test_a_map_that_sends_two_values_to_one_is_refused_next_to_the_map_naming_them(
    settings: ConsoleSettings,
) -> None:
    client, token = _mapper(settings)
    _pair_tier(client, token)
    _fill_tiers(client, token, {**TIERS, "Silver": "GOLD"})
    section = _map_section(client.get("/mappings/customers").text, "customer_tier")
    problem = re.search(r'<div class="problem">(.*?)</div>', section, re.S)
    assert problem, "no problem next to the value map"
    assert "Gold" in problem.group(1)
    assert "Silver" in problem.group(1)


def test_save_writes_a_readable_diff_keeping_comments_audits_it_and_restore_brings_back_the_old_file(
    settings: ConsoleSettings,
) -> None:
    client, token = _mapper(settings)
    customers, source = (
        settings.mappings_dir / "customers.yaml",
        settings.mappings_dir / "salesforce_source.yaml",
    )
    before = customers.read_text()
    _pair_tier(client, token)
    _fill_tiers(client, token, TIERS)
    review = client.get("/mappings/changes").text
    assert "passes every check" in review
    pair_line = "customer_tier: {salesforce: Customer_Tier__c, sage: UDF_CUSTOMER_TIER, type: picklist, "
    assert f"+  {pair_line}map: customer_tier}}" in review
    assert "+      customer_tier: Customer_Tier__c" in review  # the source reads the new field

    assert client.post("/mappings/save", data={"csrf_token": token}).status_code == 303
    after = customers.read_text()
    saved = yaml.safe_load(after)
    assert saved["custom_fields"]["customer_tier"]["sage"] == "UDF_CUSTOMER_TIER"
    assert saved["picklists"]["customer_tier"]["values"] == TIERS
    assert (
        yaml.safe_load(source.read_text())["objects"]["Account"]["custom_fields"]["customer_tier"]
        == "Customer_Tier__c"
    )
    kept = [line for line in before.splitlines() if line.startswith("#")]
    assert [line for line in after.splitlines() if line.startswith("#")] == kept, (
        "comments were lost or moved"
    )
    entry = next(e for e in client.app.state.audit.entries() if e.action == "mapping.save")  # type: ignore[attr-defined]
    assert entry.user == "mapper"
    assert "+  customer_tier:" in (entry.diff or "")
    history = client.get("/mappings/history").text
    assert "as found" in history
    assert "mapper" in history

    assert client.post("/mappings/history/0/restore", data={"csrf_token": token}).status_code == 303
    assert customers.read_text() == before
    assert "restore of version 0" in client.get("/mappings/history").text
    assert any(e.action == "mapping.restore" for e in client.app.state.audit.entries())  # type: ignore[attr-defined]


def test_a_viewer_sees_no_save_or_edit_and_a_forged_save_is_refused(settings: ConsoleSettings) -> None:
    client = make_console(settings)
    mapper_token = logged_in(client, "mapper")
    _pair_tier(client, mapper_token)
    viewer = TestClient(client.app, follow_redirects=False)
    token = logged_in(viewer, "viewer")
    editor = viewer.get("/mappings/customers").text
    assert 'action="/mappings/customers/pair"' not in editor
    assert "Discard" not in editor
    assert 'id="save"' not in viewer.get("/mappings/changes").text
    live = (settings.mappings_dir / "customers.yaml").read_text()
    for path in ("/mappings/save", "/mappings/history/0/restore", "/mappings/customers/pair"):
        form = {"csrf_token": token, "salesforce": "Customer_Tier__c", "sage": "UDF_CUSTOMER_TIER"}
        assert viewer.post(path, data=form).status_code == 403, path
    assert (settings.mappings_dir / "customers.yaml").read_text() == live
    assert csrf_of(editor) == token


def test_a_read_only_console_shows_the_draft_and_its_diff_but_refuses_save_and_restore(
    settings: ConsoleSettings,
) -> None:
    """SAGESF_CONSOLE__MAPPINGS_READ_ONLY: where the files are rolled out with the deployment."""
    client, token = _mapper(settings.model_copy(update={"mappings_read_only": True}))
    live = (settings.mappings_dir / "customers.yaml").read_text()
    _pair_tier(client, token)
    review = client.get("/mappings/changes").text
    assert "+  customer_tier:" in review
    assert 'id="save"' not in review
    assert "read-only in this console" in review
    for path in ("/mappings/save", "/mappings/history/0/restore"):
        refused = client.post(path, data={"csrf_token": token})
        assert refused.status_code == 303, path
        page = client.get(refused.headers["location"]).text
        assert "Not saved" in page or "Not restored" in page, path
        assert "SAGESF_CONSOLE__MAPPINGS_READ_ONLY" in page, path
    assert (settings.mappings_dir / "customers.yaml").read_text() == live
    assert not list((settings.state_dir / "history").glob("*"))
    assert not [e for e in client.app.state.audit.entries() if e.action.startswith("mapping.")]  # type: ignore[attr-defined]


def test_a_plain_fields_transforms_are_edited_in_place(settings: ConsoleSettings) -> None:
    client, token = _mapper(settings)
    entry = {"csrf_token": token, "entry": "salesforce_to_sage.fields.telephone_no"}
    assert client.post("/mappings/customers/transform", data=entry).status_code == 303  # truncate off
    email = {
        "csrf_token": token,
        "entry": "salesforce_to_sage.fields.email_address",
        "default": "none@acme.test",
    }
    assert client.post("/mappings/customers/transform", data=email).status_code == 303
    diff = client.get("/mappings/changes").text
    assert "-    telephone_no: {sage: TelephoneNo, overflow: truncate}" in diff
    assert "+    telephone_no: {sage: TelephoneNo}" in diff
    assert "+    email_address: {sage: EmailAddress, default: none@acme.test}" in diff
    page = client.get("/mappings/customers").text
    assert "default &#39;none@acme.test&#39;" in _row(page, "email_address")
    unknown = {**entry, "map": "no_such_map"}
    client.post("/mappings/customers/transform", data=unknown)
    assert "no value map &#39;no_such_map&#39;" in client.get("/mappings/customers").text


def test_a_grid_is_checked_as_typed_without_changing_the_draft(settings: ConsoleSettings) -> None:
    client, token = _mapper(settings)
    _pair_tier(client, token)
    typed = {
        "section": "picklists",
        "name": "customer_tier",
        "unknown": "error",
        "source": ["Platinum"],
        "target": ["PLATINUM"],
        "csrf_token": token,
    }
    answer = client.post("/mappings/customers/value-map?check=true", data=typed)
    assert answer.status_code == 200
    problems = answer.json()["problems"]
    assert len(problems) == 1
    assert "PLATINUM" in problems[0]
    assert 'value="PLATINUM"' not in client.get("/mappings/customers").text, "the check changed the draft"
    fine = client.post("/mappings/customers/value-map?check=true", data={**typed, "target": ["PLAT"]})
    assert fine.json()["problems"] == []
