"""The sandbox's Salesforce emulator as a background process: start, find, stop, credentials.

`SalesforceEmulatorProcess` runs `python -m sandbox.salesforce` (app.py says what it serves and
its limits) detached, remembers it in `<data_dir>/emulator.json`, and waits until
`GET /admin/health` answers, so "started" means "serving". `salesforce_service()` is the sandbox
stack's entry: state and the org's files in `.sandbox/salesforce/`, port 8443 when free, the
sandbox config (random client secret and passwords, JWT key pair) created on first start.
`sandbox_credentials()` reads what a client needs to log in from that config.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from sandbox.paths import REPO_ROOT, state_dir
from sandbox.processes import ProcessState, free_port, port_open, spawn, stop_pid, wait_until
from sandbox.stack import Service

DEFAULT_SALESFORCE_PORT = 8443

__all__ = [
    "DEFAULT_SALESFORCE_PORT",
    "SalesforceEmulatorProcess",
    "SandboxCredentials",
    "salesforce_process",
    "salesforce_service",
    "sandbox_credentials",
]


class SalesforceEmulatorProcess:
    """One emulator on one data directory; its state file lets another process stop it."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        config_path: Path | None = None,
        api_limit: int | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.config_path = config_path
        self.api_limit = api_limit
        self._port = port
        self.state_file = data_dir / "emulator.json"

    @property
    def state(self) -> ProcessState | None:
        return ProcessState.load(self.state_file)

    @property
    def url(self) -> str:
        state = self.state
        if state is None:
            raise RuntimeError("the Salesforce emulator is not started")
        return f"http://{self.host}:{state.ports['http']}"

    def running(self) -> bool:
        state = self.state
        return state is not None and state.alive and port_open(state.ports["http"], self.host)

    def address(self) -> str | None:
        return self.url if self.running() else None

    def _choose_port(self) -> int:
        """The asked port, else the previous one if free (clients keep instance_url), else a free one."""
        if self._port is not None:
            return self._port
        previous = self.state
        if previous is not None and not port_open(previous.ports["http"], self.host):
            return previous.ports["http"]
        return free_port()

    def start(self, timeout: float = 30.0) -> str:
        """Start (or find running); returns the emulator's base URL."""
        if self.running():
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self._choose_port()
        log_path = self.data_dir / "emulator.log"
        argv = [
            sys.executable,
            "-m",
            "sandbox.salesforce",
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(port),
            "--host",
            self.host,
        ]
        if self.config_path is not None:
            argv += ["--config", str(self.config_path)]
        if self.api_limit is not None:
            argv += ["--api-limit", str(self.api_limit)]
        proc = spawn(argv, log_path, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=REPO_ROOT)
        ProcessState(name="salesforce", pid=proc.pid, log=str(log_path), ports={"http": port}).save(
            self.state_file
        )
        url = f"http://{self.host}:{port}"
        try:
            wait_until(
                lambda: _answers(url),
                timeout,
                f"Salesforce emulator on {url} (log: {log_path})",
                alive=lambda: proc.poll() is None,
            )
        except Exception:
            stop_pid(proc.pid)
            self.state_file.unlink(missing_ok=True)
            raise
        return url

    def stop(self, timeout: float = 10.0) -> bool:
        state = self.state
        if state is None:
            return True
        stopped = stop_pid(state.pid, timeout)
        if stopped:
            self.state_file.unlink(missing_ok=True)
        return stopped


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/admin/health", timeout=1) as response:  # noqa: S310 - our own http URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def salesforce_process() -> SalesforceEmulatorProcess:
    """The sandbox's emulator: `.sandbox/salesforce/`, port 8443 unless something else holds it."""
    data_dir = state_dir() / "salesforce"
    process = SalesforceEmulatorProcess(data_dir)
    if process.running():
        return process
    port = None if port_open(DEFAULT_SALESFORCE_PORT) else DEFAULT_SALESFORCE_PORT
    return SalesforceEmulatorProcess(data_dir, port=port)


@dataclass(frozen=True)
class SandboxCredentials:
    """What a client needs to log in to the sandbox emulator (secrets: never print them)."""

    url: str
    client_id: str
    client_secret: str
    username: str
    password: str
    jwt_private_key: Path


def sandbox_credentials(url: str | None = None, username: str | None = None) -> SandboxCredentials:
    """The sandbox emulator's URL, its first connected app and a user (default: the integration user)."""
    from sandbox.salesforce.config import EmulatorConfig, write_sandbox_config

    data_dir = state_dir() / "salesforce"
    config = EmulatorConfig.load(write_sandbox_config(data_dir), data_dir=data_dir)
    address = url or salesforce_process().address()
    if address is None:
        raise RuntimeError("the Salesforce emulator is not running: `sagesf sandbox salesforce start`")
    users = {user.username: user for user in config.users}
    user = users[username] if username is not None else config.users[0]
    app = config.apps[0]
    return SandboxCredentials(
        url=address,
        client_id=app.client_id,
        client_secret=app.client_secret.get_secret_value(),
        username=user.username,
        password=user.password.get_secret_value(),
        jwt_private_key=data_dir / "jwt-private.pem",
    )


def _start() -> str:
    return salesforce_process().start()


def _stop() -> bool:
    return salesforce_process().stop()


def _address() -> str | None:
    return salesforce_process().address()


def salesforce_service() -> Service:
    """The emulator as a `sandbox.stack.Service` (needs nothing else; started after the registry)."""
    return Service("salesforce", _start, _stop, _address)
