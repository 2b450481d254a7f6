"""A throwaway emulator for tests and benchmarks: own directory, free port, known credentials.

What it owns: `start_emulator(directory)` writes a config with one connected app (random secret,
a fresh RSA key pair for the JWT bearer flow, a client-credentials user) and two users, starts
`python -m sandbox.salesforce` as a real subprocess on a free port, and returns a
`RunningEmulator` with the URL, the credentials, `admin(method, path, body)` for the admin API,
`session()`/`connect()`/`connect_other()` for logged-in simple-salesforce clients, and `restart()`/`stop()`.
The tests' `salesforce_emulator` fixture and bench/salesforce_emulator.py use it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import requests
import yaml
from simple_salesforce.api import Salesforce

from sandbox.processes import free_port
from sandbox.salesforce import SalesforceEmulatorProcess
from sandbox.salesforce.client import API_VERSION, connect, emulator_session
from sandbox.salesforce.config import key_pair

if TYPE_CHECKING:
    from connectors.salesforce.config import SalesforceSettings


@dataclass
class RunningEmulator:
    process: SalesforceEmulatorProcess
    url: str
    config_path: Path
    client_id: str
    client_secret: str
    username: str
    password: str
    security_token: str
    private_key_pem: str
    other_username: str
    other_password: str
    user_ids: dict[str, str] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path:
        return self.process.data_dir

    def admin(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call the admin API (`/admin/...`); returns the decoded JSON answer."""
        response = requests.request(method, f"{self.url}{path}", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def settings(self, **extra: Any) -> SalesforceSettings:
        """The connector's Salesforce settings for the integration user (password flow), with
        `extra` fields (batch_window, sink, call_options_client, ...)."""
        from pydantic import SecretStr

        from connectors.salesforce.config import SalesforceSettings

        return SalesforceSettings(
            login_url=self.url,
            auth_flow="password",
            client_id=self.client_id,
            client_secret=SecretStr(self.client_secret),
            username=self.username,
            password=SecretStr(self.password),
            **extra,
        )

    def login_env(self) -> dict[str, str]:
        """The same login as `settings()`, as the environment of a `sagesf` process or command."""
        prefix = "SAGESF_SALESFORCE__"
        return {
            f"{prefix}LOGIN_URL": self.url,
            f"{prefix}AUTH_FLOW": "password",
            f"{prefix}CLIENT_ID": self.client_id,
            f"{prefix}CLIENT_SECRET": self.client_secret,
            f"{prefix}USERNAME": self.username,
            f"{prefix}PASSWORD": self.password,
        }

    def session(self, client: str | None = None) -> requests.Session:
        return emulator_session(self.url, client)

    def connect(self, client: str | None = None, version: str = API_VERSION) -> Salesforce:
        """simple-salesforce logged in as the integration user (password grant; refreshes on 401)."""
        return self._connect_as(self.username, self.password, client, version)

    def connect_other(self, client: str | None = None) -> Salesforce:
        """simple-salesforce logged in as the other user (a seller, not the integration user)."""
        return self._connect_as(self.other_username, self.other_password, client, API_VERSION)

    def _connect_as(self, username: str, password: str, client: str | None, version: str) -> Salesforce:
        return connect(
            self.url,
            username=username,
            password=password,
            client_id=self.client_id,
            client_secret=self.client_secret,
            client=client,
            version=version,
        )

    def restart(self) -> None:
        """Stop and start again on the same port and data directory."""
        if not self.process.stop():
            raise RuntimeError("the emulator did not stop")
        self.url = self.process.start()

    def stop(self) -> None:
        self.process.stop()


def start_emulator(
    directory: Path,
    api_limit: int | None = None,
    session_timeout_seconds: float | None = None,
    port: int | None = None,
    sfdx_project: Path | None = None,
) -> RunningEmulator:
    """Start an emulator in `directory` (config, data and log) on `port` or a free one; its org's
    custom parts from `sfdx_project` (default: the repository's salesforce/)."""
    directory.mkdir(parents=True, exist_ok=True)
    private_key, public_key = key_pair()
    client_secret = secrets.token_urlsafe(24)
    password, other_password = secrets.token_urlsafe(12), secrets.token_urlsafe(12)
    security_token = secrets.token_urlsafe(8)
    username, other_username = "integration@test.sagesf", "seller@test.sagesf"
    config: dict[str, Any] = {
        "apps": [
            {
                "client_id": "sagesf-tests",
                "client_secret": client_secret,
                "jwt_certificate": public_key,
                "run_as": username,
            }
        ],
        "users": [
            {
                "username": username,
                "password": password,
                "security_token": security_token,
                "first_name": "Test",
                "last_name": "Integration",
            },
            {
                "username": other_username,
                "password": other_password,
                "first_name": "Sam",
                "last_name": "Seller",
            },
        ],
    }
    if session_timeout_seconds is not None:
        config["session_timeout_seconds"] = session_timeout_seconds
    if sfdx_project is not None:
        config["sfdx_project"] = str(sfdx_project)
    config_path = directory / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    config_path.chmod(0o600)
    process = SalesforceEmulatorProcess(
        directory, port=port or free_port(), config_path=config_path, api_limit=api_limit
    )
    url = process.start()
    emulator = RunningEmulator(
        process=process,
        url=url,
        config_path=config_path,
        client_id="sagesf-tests",
        client_secret=client_secret,
        username=username,
        password=password,
        security_token=security_token,
        private_key_pem=private_key,
        other_username=other_username,
        other_password=other_password,
    )
    emulator.user_ids = emulator.admin("GET", "/admin/info")["users"]
    return emulator
