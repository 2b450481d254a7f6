"""A registered secret never leaves the process: not in a log line, a /healthz detail, the error
headers of a dead letter, or the reason a Sage result carries to Salesforce.

The hard case is the Sage ODBC password: the driver sees it brace-quoted with `}` doubled
(`PWD={pa}}ss}`), and a driver error may echo the whole connection string. Each password below has
one of the characters that ended a mask early (`}`, a space, `,`, `&`), so a masked line that
still shows any piece of it fails.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import pyodbc
import pytest
from pydantic import SecretStr

from connectors.sage100.commands import CommandKind, Outcome, result_record
from connectors.sage100.config import Sage100Settings
from connectors.sage100.odbc import SageRejected, classify
from sagesf.dead_letter_writer import STAGE_TASK_PUT, FailedRecord, error_headers
from sagesf.logs import redact, register_settings_secrets
from sagesf.metrics import Health, MetricsServer
from tests.unit.test_config_and_logs import logged

PASSWORDS = ["Tr0ub}4dor-Horse", "Tr0ub 4dor Horse", "Tr0ub,4dor,Horse", "Tr0ub&4dor&Horse", "a}} b,&c}dEfgh"]


def pieces(password: str) -> list[str]:
    """The parts of a password a half-masked line would still show (3 characters or more)."""
    return [p for p in re.split(r"[}\s,&]+", password) if len(p) >= 3]


def assert_hidden(text: str, password: str) -> None:
    shown = [p for p in pieces(password) if p in text]
    assert not shown, f"{shown} of the password in: {text}"


def sage_settings(password: str) -> Sage100Settings:
    settings = Sage100Settings(dsn="SOTAMAS90", user="sgsf", password=SecretStr(password), company="ABC")
    register_settings_secrets(settings)
    return settings


def driver_echo(
    settings: Sage100Settings, error: type[pyodbc.Error] = pyodbc.OperationalError
) -> pyodbc.Error:
    """A driver error that repeats the connection string it was given (some drivers do)."""
    echoed = settings.odbc_connection_string().get_secret_value()
    sqlstate = "23000" if error is pyodbc.IntegrityError else "08001"
    return error(sqlstate, f"[{sqlstate}] [ProvideX][ODBC Driver]Failed with {echoed}")


def log_line(message: str, *args: object) -> str:
    return logged((message, args))


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_connection_string_the_driver_gets_is_masked_in_a_log_line(password: str) -> None:
    settings = sage_settings(password)
    line = log_line("connecting with %s", settings.odbc_connection_string().get_secret_value())
    assert_hidden(line, password)
    assert "SOTAMAS90" in line  # the rest of the line is kept


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_driver_error_that_echoes_the_connection_string_is_masked(password: str) -> None:
    error = classify(driver_echo(sage_settings(password)), "connecting")
    assert_hidden(str(error), password)  # what every later surface starts from
    assert_hidden(log_line("Sage failed: %s", error), password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_password_inside_a_given_connection_string_is_masked_on_its_own(password: str) -> None:
    password = password[::-1]  # never registered by another test
    quoted = "{" + password.replace("}", "}}") + "}"
    register_settings_secrets(
        Sage100Settings(connection_string=SecretStr(f"DSN=SOTAMAS90;UID=sgsf;PWD={quoted};Company=ABC"))
    )
    # the driver repeats some attributes only, or the password in another form
    assert_hidden(log_line("login refused: UID=sgsf;PWD=%s", quoted), password)
    assert_hidden(log_line("login refused for password %r", password), password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_an_unregistered_odbc_password_is_masked_by_its_shape(password: str) -> None:
    password = password.swapcase()  # never registered by another test
    quoted = "{" + password.replace("}", "}}") + "}"
    assert_hidden(redact(f"Driver={{X}};UID=u;PWD={quoted};Company=ABC"), password)
    assert_hidden(redact(f"Driver={{X}};UID=u;Password={quoted}"), password)


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_dead_letters_error_headers_mask_the_secret(password: str) -> None:
    settings = sage_settings(password)
    raw = settings.odbc_connection_string().get_secret_value()
    failed = FailedRecord("sage.commands.v1", 0, 7, b"key", b"value")
    for error in (RuntimeError(f"opened {raw} and failed"), RuntimeError(f"bad login {password!r}")):
        try:
            raise error
        except RuntimeError as raised:
            headers = dict(
                error_headers(failed, raised, pipeline="sage-sink", step=STAGE_TASK_PUT, where="x")
            )
        assert_hidden(headers["__connect.errors.exception.message"].decode(), password)
        assert_hidden(headers["__connect.errors.exception.stacktrace"].decode(), password)
        assert "and failed" in headers["__connect.errors.exception.message"].decode() or "bad login" in (
            headers["__connect.errors.exception.message"].decode()
        )


@pytest.fixture
def served() -> Iterator[tuple[Health, int]]:
    health = Health()
    server = MetricsServer(health, port=0)
    try:
        yield health, server.port
    finally:
        server.stop()


@pytest.mark.parametrize("password", PASSWORDS)
def test_a_healthz_detail_masks_the_secret(served: tuple[Health, int], password: str) -> None:
    health, port = served
    settings = sage_settings(password)
    health.dependency("sage100", False, f"login failed with password {password}")
    health.blocked("sage-sink", 1, 5.0, f"retry 1: {settings.odbc_connection_string().get_secret_value()}")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        body = resp.read().decode()
    assert_hidden(body, password)
    assert json.loads(body)["components"]["sage100"]["status"] == "degraded"


@pytest.mark.parametrize("password", PASSWORDS)
def test_the_reason_a_sage_result_carries_to_salesforce_masks_the_secret(password: str) -> None:
    rejected = classify(driver_echo(sage_settings(password), pyodbc.IntegrityError), "writing")
    assert isinstance(rejected, SageRejected)
    result = result_record(
        command_id="c1",
        correlation_id=None,
        salesforce_record_id="006000000000001AAA",
        kind=CommandKind.CREATE_SALES_ORDER,
        outcome=Outcome.REJECTED,
        error=rejected,
    )
    assert_hidden(json.dumps(result["error"], default=str), password)


def test_the_commands_console_masks_a_registered_secret(capsys) -> None:
    from sagesf.cli.output import new_console
    from sagesf.logs import register_secret

    register_secret("Console-S3cret-9f2")
    new_console().print("dead letter value: PWD=Console-S3cret-9f2;UID=x")

    out = capsys.readouterr().out
    assert "Console-S3cret-9f2" not in out
    assert "dead letter value" in out
