"""The sandbox's Salesforce emulator as a background process: start, find, stop, credentials.

`SalesforceEmulatorProcess` runs `python -m sandbox.salesforce` (app.py says what it serves and
its limits) detached, remembers it in `<data_dir>/emulator.json`, and waits until
`GET /admin/health` answers, so "started" means "serving". `salesforce_service()` is the sandbox
stack's entry: state and the org's files in `.sandbox/salesforce/`, port 8443 when free, the
sandbox config (random client secret and passwords, JWT key pair) created on first start.
`sandbox_credentials()` reads what a client needs to log in from that config.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.paths import REPO_ROOT, state_dir
from sandbox.processes import HttpProcess, port_open
from sandbox.service import Service

DEFAULT_SALESFORCE_PORT = 8443

__all__ = [
    "DEFAULT_SALESFORCE_PORT",
    "SalesforceEmulatorProcess",
    "SandboxCredentials",
    "salesforce_process",
    "salesforce_service",
    "sandbox_credentials",
]


class SalesforceEmulatorProcess(HttpProcess):
    """One emulator on one data directory; its state file lets another process stop it."""

    name = "salesforce"
    health_path = "/admin/health"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        host: str = "127.0.0.1",
        config_path: Path | None = None,
        api_limit: int | None = None,
    ) -> None:
        super().__init__(data_dir, port, host, state_name="emulator.json")
        self.config_path = config_path
        self.api_limit = api_limit

    def start(self, timeout: float = 30.0) -> str:
        """Start (or find running); returns the emulator's base URL."""

        def argv(port: int) -> list[str]:
            args = [
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
                args += ["--config", str(self.config_path)]
            if self.api_limit is not None:
                args += ["--api-limit", str(self.api_limit)]
            return args

        return self._launch(argv, timeout, cwd=REPO_ROOT)


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
    """The emulator as a `sandbox.service.Service` (needs nothing else; started after the registry)."""
    return Service("salesforce", _start, _stop, _address)
