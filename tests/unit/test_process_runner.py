"""`sagesf run <component>`: every process starts the same way, and says what is wrong on one line.

Each process is started for real (`python -m sagesf run <name>`), with nothing listening on the
Kafka, registry, Salesforce or Sage addresses it is given: a wrong setting must stop it before it
reaches for any of them, and `--help` must print and start nothing, even with a wrong setting.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sagesf.runner import components

# enough for every component's settings to load, pointing at nothing that answers
VALID = {
    "SAGESF_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:9",
    "SAGESF_REGISTRY__URL": "http://127.0.0.1:9",
    "SAGESF_METRICS__PORT": "0",
    "SAGESF_SAGE100__CONNECTION_STRING": "Driver={SQLite3};Database=/nonexistent/sage.db",
    "SAGESF_SALESFORCE__LOGIN_URL": "http://127.0.0.1:9",
    "SAGESF_SALESFORCE__AUTH_FLOW": "password",
    "SAGESF_SALESFORCE__CLIENT_ID": "id",
    "SAGESF_SALESFORCE__CLIENT_SECRET": "secret",
    "SAGESF_SALESFORCE__USERNAME": "user@example.com",
    "SAGESF_SALESFORCE__PASSWORD": "password",
    "SAGESF_CONSOLE__SESSION_SECRET": "a-session-secret-long-enough-for-the-console-0123456789",
}

# one wrong variable per component (its own prefix), and one every component reads
WRONG = {
    "sage-source": ("SAGESF_SAGE100__SOURCE__POLL_INTERVAL", "-1"),
    "sage-sink": ("SAGESF_SAGE_SINK__WRITER", "carrier-pigeon"),
    "salesforce-source": ("SAGESF_SALESFORCE__SOURCE__MAX_BATCH", "0"),
    "salesforce-sink": ("SAGESF_SALESFORCE__AUTH_FLOW", "telepathy"),
    "processors": ("SAGESF_PROCESSORS__SESSION_TIMEOUT", "-5"),
    "reconciler": ("SAGESF_RECONCILE__INTERVAL_SECONDS", "-1"),
    "console": ("SAGESF_CONSOLE__PORT", "-1"),
}
SHARED_WRONG = ("SAGESF_KAFKA__SECURITY_PROTOCOL", "PIGEON")


def start(name: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SAGESF_")}
    return subprocess.run(
        [sys.executable, "-m", "sagesf", "run", name, *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_every_installed_component_has_a_wrong_variable_case() -> None:
    assert set(WRONG) == set(components())


@pytest.mark.parametrize("name", sorted(WRONG))
@pytest.mark.parametrize("shared", [False, True], ids=["own-variable", "kafka-variable"])
def test_a_wrong_variable_stops_the_process_with_one_line_naming_it_and_exit_2(
    name: str, shared: bool
) -> None:
    variable, value = SHARED_WRONG if shared else WRONG[name]
    done = start(name, env={**VALID, variable: value})

    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{name}: {variable}: "), lines[0]
    assert value not in lines[0].removeprefix(f"{name}: {variable}: ")  # names the variable, not its value
    assert done.stdout == ""


@pytest.mark.parametrize("name", sorted(WRONG))
def test_help_prints_what_the_process_reads_and_starts_nothing(name: str) -> None:
    variable, value = WRONG[name]
    done = start(name, "--help", env={**VALID, variable: value})  # help does not even read settings

    assert done.returncode == 0, done.stderr
    assert f"Usage: sagesf run {name}" in done.stdout
    assert "--log-level" in done.stdout
    prefix = variable.rsplit("__", 1)[0].split("__")[0] + "__"
    assert prefix in done.stdout  # its own settings are listed
    assert "running" not in done.stderr  # the runner logs "<name> running" once it has started


def test_run_without_a_component_lists_them_and_an_unknown_one_is_refused() -> None:
    listed = start("--help", env={})
    assert listed.returncode == 0
    assert (
        "Components: console, processors, reconciler, sage-sink, sage-source, salesforce-sink, "
        "salesforce-source" in listed.stdout
    )
    unknown = start("sage-sauce", env={})
    assert unknown.returncode == 2
    assert "no component 'sage-sauce'" in unknown.stderr
