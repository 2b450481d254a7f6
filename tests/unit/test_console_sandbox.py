"""The sandbox gives its console a kept session secret and demo users whose passwords are only
in an owner-only file."""

from __future__ import annotations

import json
import stat

from console.settings import ConsoleSettings
from console.users import OPERATOR, UserFile
from sandbox import web_console


def test_the_sandbox_console_gets_demo_users_with_passwords_only_in_a_private_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SAGESF_SANDBOX_DIR", str(tmp_path))
    env = web_console.console_env({"processors": "http://127.0.0.1:9402/metrics"})
    passwords = web_console.passwords_file()
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    rows = [line.split("\t") for line in passwords.read_text().splitlines() if not line.startswith("#")]
    users = UserFile(tmp_path / "console" / "users.json")
    for name, password, _roles in rows:
        assert password not in json.dumps(env)
        assert password not in users.path.read_text()
        assert users.authenticate(name, password) is not None
    admin = users.get("admin")
    assert admin is not None
    assert admin.can(OPERATOR)

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = ConsoleSettings()
    assert settings.processes == {"processors": "http://127.0.0.1:9402/metrics"}
    secret = settings.session_secret
    assert secret is not None
    assert len(secret.get_secret_value()) >= 32
    written = passwords.read_text()
    again = web_console.console_env({})
    assert again["SAGESF_CONSOLE__SESSION_SECRET"] == env["SAGESF_CONSOLE__SESSION_SECRET"]  # kept
    assert passwords.read_text() == written  # the users are made once


def test_every_sandbox_process_reads_the_mapping_files_the_console_saves_and_reloads_them_as_often(
    tmp_path, monkeypatch
):
    from connectors.salesforce.source import SalesforceSourceSettings
    from processors.config import ProcessorSettings
    from sandbox import pipeline

    monkeypatch.setenv("SAGESF_SANDBOX_DIR", str(tmp_path))
    monkeypatch.setenv("SAGESF_PROCESSORS__MAPPINGS_DIR", str(tmp_path / "mappings"))
    monkeypatch.setenv("SAGESF_PROCESSORS__MAPPINGS_RELOAD_INTERVAL", "1")
    for name, value in {
        **pipeline.pipeline_env("127.0.0.1:9092", "http://127.0.0.1:8081", "http://127.0.0.1:8443"),
        **web_console.console_env({}),
    }.items():
        monkeypatch.setenv(name, value)
    source, processors, console = SalesforceSourceSettings(), ProcessorSettings(), ConsoleSettings()
    assert source.mapping_file == tmp_path / "mappings" / "salesforce_source.yaml"
    assert processors.mappings_dir == console.mappings_dir == tmp_path / "mappings"
    assert source.mapping_reload_interval == console.processors_reload_interval == 1
