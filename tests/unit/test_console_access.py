"""The console's access rules: login, roles, CSRF, the audit of failed logins, the users file."""

from __future__ import annotations

import json
import stat

import pytest
from fastapi import APIRouter, Depends
from typer.testing import CliRunner

from console import routes
from console.access import require
from console.audit import AuditLog
from console.cli import app as console_cli
from console.users import MAPPER, OPERATOR, User, UserFile
from sagesf.config import ConfigError
from tests.kit.console import PASSWORD, console_settings, csrf_of, logged_in, make_console

# a route that changes something, for the operator only, counting what it did
done: list[str] = []
probe = APIRouter()


@probe.post("/test-probe")
def _probe(user: User = Depends(require(OPERATOR))) -> dict[str, str]:  # noqa: B008
    done.append(user.name)
    return {"done": user.name}


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setattr(routes, "ROUTERS", [*routes.ROUTERS, probe])
    done.clear()
    return make_console(console_settings(tmp_path))


def test_an_anonymous_page_request_is_sent_to_login_and_back_after(client):
    answer = client.get("/audit?x=1", headers={"accept": "text/html"})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/audit?x=1"
    login_page = client.get(answer.headers["location"]).text
    token = csrf_of(login_page)
    answer = client.post(
        "/login", data={"username": "viewer", "password": PASSWORD, "csrf_token": token, "next": "/audit"}
    )
    assert (answer.status_code, answer.headers["location"]) == (303, "/audit")
    assert client.get("/audit").status_code == 200


def test_an_anonymous_post_gets_401_and_does_nothing(client):
    assert client.post("/test-probe").status_code == 401
    assert done == []


def test_login_never_redirects_off_the_site(client):
    token = csrf_of(client.get("/login").text)
    data = {"username": "viewer", "password": PASSWORD, "csrf_token": token, "next": "//evil.example/x"}
    assert client.post("/login", data=data).headers["location"] == "/"


def test_the_session_cookie_is_httponly_and_samesite_lax(client):
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": "viewer", "password": PASSWORD, "csrf_token": token})
    cookie = answer.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie


def test_a_user_without_the_role_gets_403_and_nothing_is_done(client):
    token = logged_in(client, "mapper")
    answer = client.post("/test-probe", headers={"X-CSRF-Token": token})
    assert answer.status_code == 403
    assert "operator role" in answer.text
    assert done == []


def test_an_unsafe_request_without_the_csrf_token_is_refused(client):
    token = logged_in(client, "operator")
    assert client.post("/test-probe").status_code == 403
    assert client.post("/test-probe", headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert done == []
    assert client.post("/test-probe", headers={"X-CSRF-Token": token}).json() == {"done": "operator"}
    assert client.post("/test-probe", data={"csrf_token": token}).status_code == 200


def test_a_csrf_token_from_before_login_is_void_after_it(client):
    before = csrf_of(client.get("/login").text)
    after = logged_in(client, "operator")
    assert before != after
    assert client.post("/test-probe", headers={"X-CSRF-Token": before}).status_code == 403


def test_a_failed_login_is_audited_without_the_password(client, tmp_path):
    token = csrf_of(client.get("/login").text)
    answer = client.post("/login", data={"username": "viewer", "password": "guess-1234", "csrf_token": token})
    assert answer.status_code == 401
    entries = AuditLog(tmp_path / "audit.jsonl").entries()
    assert [(e.user, e.action) for e in entries] == [("viewer", "login.failed")]
    assert "guess-1234" not in (tmp_path / "audit.jsonl").read_text()


def test_logout_ends_the_session(client):
    token = logged_in(client, "viewer")
    client.post("/logout", data={"csrf_token": token})
    assert client.get("/audit").status_code == 303


def test_a_removed_user_is_logged_out_at_once(client, tmp_path):
    logged_in(client, "viewer")
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"users": {}}))
    assert client.get("/audit").status_code == 303


def test_the_console_refuses_to_start_without_a_session_secret(tmp_path):
    with pytest.raises(ConfigError, match="SAGESF_CONSOLE__SESSION_SECRET"):
        make_console(console_settings(tmp_path, session_secret=None))


def test_user_add_stores_an_argon2_hash_readable_by_its_owner_only(tmp_path, monkeypatch):
    users = tmp_path / "users.json"
    monkeypatch.setenv("SAGESF_CONSOLE__USERS_FILE", str(users))
    result = CliRunner().invoke(
        console_cli,
        ["user", "add", "ann", "--role", "mapper", "--role", "operator", "--password-stdin"],
        input="s3cret-pass\n",
    )
    assert result.exit_code == 0, result.output
    assert "s3cret-pass" not in users.read_text()
    assert json.loads(users.read_text())["users"]["ann"]["hash"].startswith("$argon2")
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    ann = UserFile(users).authenticate("ann", "s3cret-pass")
    assert ann is not None
    assert ann.can(MAPPER)
    assert ann.can(OPERATOR)
    assert UserFile(users).authenticate("ann", "wrong") is None


def test_user_add_refuses_an_unknown_role(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGESF_CONSOLE__USERS_FILE", str(tmp_path / "users.json"))
    result = CliRunner().invoke(
        console_cli, ["user", "add", "ann", "--role", "admin", "--password-stdin"], input="x\n"
    )
    assert result.exit_code == 2
    assert "unknown role" in result.output
