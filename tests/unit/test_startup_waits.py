"""`Process.wait_for`: a dependency that is down is waited for and reported; a refusal is not.

The processes themselves are started with their dependencies down in
tests/integration/test_starts_that_wait.py; these are the rules the builders rely on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from connectors.sage100.components import _login_checked
from connectors.sage100.odbc import SageUnavailable
from sagesf.config import Settings
from sagesf.errors import AuthenticationError, Retriable
from sagesf.metrics import Health
from sagesf.runner import Process, Stopped


def process() -> Process:
    return Process.of("sage-sink", Settings(), health=Health())


def failing(
    times: int, error: BaseException, seen: list[dict[str, object]], health: Health
) -> Callable[[], str]:
    """An attempt that fails `times` times, then notes what /healthz says and succeeds."""
    calls = 0

    def attempt() -> str:
        nonlocal calls
        calls += 1
        if calls <= times:
            raise error
        seen.append(dict(health.report()[1]))  # /healthz just before the dependency answered
        return "connected"

    return attempt


def test_a_dependency_that_is_down_is_waited_for_and_reported_degraded_until_it_answers() -> None:
    waiting = process()
    before: list[dict[str, object]] = []
    error = Retriable("Sage 100 ODBC error while connecting: [HY000] [SQLite]connect failed (14)")
    error.retry_after = 0.01
    result = waiting.wait_for("sage100", failing(2, error, before, waiting.health))
    assert result == "connected"
    sage = before[0]["sage100"]
    assert isinstance(sage, dict)
    assert (sage["status"], sage["detail"]) == ("degraded", "Sage 100 ODBC error while connecting")
    assert waiting.health.report()[0] == "ok"


def test_a_refusal_is_raised_at_once() -> None:
    refused = AuthenticationError("SAGESF_SALESFORCE__PASSWORD: invalid_grant")
    with pytest.raises(AuthenticationError):
        process().wait_for("salesforce", failing(1, refused, [], Health()))


def test_a_stop_signal_ends_the_wait() -> None:
    waiting = process()
    threading.Timer(0.2, waiting.stop.set).start()
    with pytest.raises(Stopped, match="stopped while waiting for schema-registry"):
        waiting.wait_for("schema-registry", failing(10**6, Retriable("unreachable"), [], waiting.health))


def test_sage_refusing_the_login_is_a_startup_error_not_a_wait() -> None:
    def check() -> None:
        raise SageUnavailable(
            "Sage 100 ODBC error while connecting: [28000] [ProvideX]Invalid password", "28000"
        )

    with pytest.raises(AuthenticationError, match="SAGESF_SAGE100__CONNECTION_STRING"):
        process().wait_for("sage100", _login_checked(check))
