"""`sagesf run console` as a process: its pages on the console port, /healthz and /metrics on the
metrics port like every component, a clean stop on SIGTERM, and one line naming the variable
when the session secret is missing. (The entry point `console` runs `console.component:CONSOLE`;
the test starts that object through the runner, as the entry point does.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from sandbox.processes import free_port

RUN = (
    "import sys; from sagesf.runner import run; from console.component import CONSOLE; sys.exit(run(CONSOLE))"
)
REPO = Path(__file__).resolve().parents[2]


def start(env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", RUN],
        env={**os.environ, "PYTHONPATH": str(REPO), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:  # noqa: S310 - http to the test's process
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(url: str, process: subprocess.Popen[str]) -> tuple[int, str]:
    deadline = time.monotonic() + 30
    while True:
        try:
            return get(url)
        except OSError:
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, f"{url} did not answer"
            time.sleep(0.2)


def test_the_console_serves_its_pages_and_health_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    process = start(
        {
            "SAGESF_CONSOLE__PORT": str(port),
            "SAGESF_CONSOLE__SESSION_SECRET": "x" * 40,
            "SAGESF_CONSOLE__USERS_FILE": str(tmp_path / "users.json"),
            "SAGESF_METRICS__PORT": str(metrics),
        }
    )
    try:
        status, page = wait_for(f"http://127.0.0.1:{port}/login", process)
        assert status == 200
        assert 'name="csrf_token"' in page
        assert wait_for(f"http://127.0.0.1:{metrics}/healthz", process)[0] == 200
        assert "python_info" in get(f"http://127.0.0.1:{metrics}/metrics")[1]
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert "x" * 40 not in output


@pytest.mark.parametrize("secret", [None, "too-short"])
def test_the_console_refuses_to_start_without_a_good_session_secret(
    tmp_path: Path, secret: str | None
) -> None:
    env = {"SAGESF_METRICS__PORT": str(free_port()), "SAGESF_CONSOLE__PORT": str(free_port())}
    if secret is not None:
        env["SAGESF_CONSOLE__SESSION_SECRET"] = secret
    process = start(env)
    output = process.communicate(timeout=60)[0]
    assert process.returncode == 2, output
    assert "SAGESF_CONSOLE__SESSION_SECRET" in output.splitlines()[-1]
    assert "too-short" not in output
