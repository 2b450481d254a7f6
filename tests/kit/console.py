"""The web console in tests: an app on temporary files with the users asked for, a logged-in
TestClient, and the CSRF token a form on a page carries."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from fastapi.testclient import TestClient

from console.app import create_app
from console.settings import ConsoleSettings
from console.users import ROLES, Role, UserFile

__all__ = ["PASSWORD", "TIERS", "console_settings", "csrf_of", "logged_in", "make_console", "tier_metadata"]

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def console_settings(tmp_path: Path, **overrides: object) -> ConsoleSettings:
    values: dict[str, object] = {
        "session_secret": "s" * 40,
        "users_file": tmp_path / "users.json",
        "audit_log": tmp_path / "audit.jsonl",
        "mappings_dir": tmp_path / "mappings",
        "state_dir": tmp_path / "console-state",
    }
    values.update(overrides)
    return ConsoleSettings(**values)  # type: ignore[arg-type]


def make_console(settings: ConsoleSettings, users: dict[str, tuple[Role, ...]] | None = None) -> TestClient:
    """A TestClient of the console; `users` name -> roles (each with PASSWORD; default one user per
    role, named as it). Redirects are not followed, so a test sees them."""
    wanted = users if users is not None else {role: (role,) for role in ROLES}
    key = repr(sorted(wanted.items()))
    if key not in _USERS_FILES:  # argon2 is slow on purpose: hash each set of users once
        store = UserFile(settings.users_file)
        for name, roles in wanted.items():
            store.add(name, PASSWORD, roles)
        _USERS_FILES[key] = settings.users_file.read_text()
    else:
        settings.users_file.write_text(_USERS_FILES[key])
    return TestClient(create_app(settings), follow_redirects=False)


_USERS_FILES: dict[str, str] = {}


def csrf_of(page: str) -> str:
    found = _CSRF.search(page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def logged_in(client: TestClient, name: str) -> str:
    """Log `name` in; returns the session's CSRF token."""
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": token})
    assert answer.status_code == 303, answer.text
    return csrf_of(client.get("/audit").text)


REPO = Path(__file__).resolve().parents[2]
TIERS = {"Platinum": "PLAT", "Gold": "GOLD", "Silver": "SILV", "Bronze": "BRNZ"}


def tier_metadata(folder: Path) -> tuple[Path, Path]:
    """The sandbox's Salesforce and Sage metadata plus the studio journey's unmapped pair,
    Account.Customer_Tier__c (picklist) and AR_Customer.UDF_CUSTOMER_TIER (S4), written to
    `folder`: (Salesforce file, Sage file)."""
    sf = yaml.safe_load((REPO / "sandbox/salesforce/metadata.yaml").read_text())
    sf["objects"]["Account"]["fields"].setdefault(
        "Customer_Tier__c", {"type": "picklist", "label": "Customer Tier", "values": list(TIERS)}
    )
    sage = yaml.safe_load((REPO / "mappings/metadata/sage100.yaml").read_text())
    sage["tables"]["AR_Customer"]["columns"].setdefault("UDF_CUSTOMER_TIER", "S4")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "salesforce.yaml").write_text(yaml.safe_dump(sf))
    (folder / "sage100.yaml").write_text(yaml.safe_dump(sage))
    return folder / "salesforce.yaml", folder / "sage100.yaml"
