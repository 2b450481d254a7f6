"""The emulator's configuration: connected apps, users, limits, where it listens and stores.

What it owns: `EmulatorConfig` (pydantic, secrets as `SecretStr` so they never print), read from
a YAML file (`EmulatorConfig.load`) with command-line overrides, and `write_sandbox_config`, which
creates the sandbox's own config on first start: one connected app with a random client secret,
one integration user with a random password, and an RSA key pair for the JWT bearer flow (the
private key beside the config, the certificate's public key inside it), all files mode 0600.

A config file looks like:

    api_daily_limit: 100000          # rolling 24 h, reported in Sforce-Limit-Info
    session_timeout_seconds: 7200    # access tokens expire after this (or on /admin/tokens/expire)
    api_version: "62.0"              # the newest version /services/data lists
    apps:
      - client_id: sagesf-sandbox
        client_secret: "..."
        jwt_certificate: |            # PEM: an X.509 certificate or a public key (JWT bearer flow)
          -----BEGIN PUBLIC KEY-----
          ...
        run_as: integration@sagesf.sandbox   # the user of the client credentials flow
    sfdx_project: /path/to/salesforce   # the sfdx project the org's custom parts come from
    users:
      - username: integration@sagesf.sandbox
        password: "..."
        security_token: ""
        first_name: Sage
        last_name: Integration

Limits: one org per emulator; no profiles, permission sets or IP restrictions.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, SecretStr

from connectors.salesforce.sfdx_project import DEFAULT_PROJECT
from sandbox.salesforce.org_metadata import STANDARD_OBJECTS

DEFAULT_CLIENT_ID = "sagesf-sandbox"
DEFAULT_USERNAME = "integration@sagesf.sandbox"
SALES_USERNAME = "sales@sagesf.sandbox"  # the operator scenarios act as this user, not the integration
DEFAULT_API_VERSION = "62.0"


class ConnectedApp(BaseModel):
    client_id: str
    client_secret: SecretStr
    jwt_certificate: str | None = None
    run_as: str | None = None


class SandboxUser(BaseModel):
    username: str
    password: SecretStr
    security_token: SecretStr = SecretStr("")
    first_name: str = ""
    last_name: str = "User"
    email: str | None = None


class EmulatorConfig(BaseModel):
    data_dir: Path
    metadata_path: Path = STANDARD_OBJECTS  # the standard objects (standard_objects.yaml)
    sfdx_project: Path | None = DEFAULT_PROJECT  # their custom parts: what users deploy (salesforce/)
    apps: list[ConnectedApp] = Field(default_factory=list)
    users: list[SandboxUser] = Field(default_factory=list)
    api_daily_limit: int = 100_000
    api_version: str = DEFAULT_API_VERSION
    host: str = "127.0.0.1"
    port: int = 8443
    base_url: str | None = None
    session_timeout_seconds: float = 7200.0
    event_retention_hours: float = 72.0
    query_batch_size: int = 2000

    @property
    def instance_url(self) -> str:
        """What token responses name as instance_url: the emulator itself."""
        return (self.base_url or f"http://{self.host}:{self.port}").rstrip("/")

    @classmethod
    def load(cls, path: Path | None, **overrides: Any) -> EmulatorConfig:
        """The config in `path` (YAML; None for none) with `overrides` (None values ignored)."""
        values: dict[str, Any] = {}
        if path is not None:
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ValueError(f"{path}: expected a mapping")
            values.update(loaded)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def secrets(self) -> list[str]:
        """Every secret value, so the process's log filter can mask them."""
        found = [app.client_secret.get_secret_value() for app in self.apps]
        for user in self.users:
            found += [user.password.get_secret_value(), user.security_token.get_secret_value()]
        return [s for s in found if s]


def key_pair() -> tuple[str, str]:
    """A new RSA key pair as PEM text: (private key, public key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def _write_private(path: Path, text: str) -> None:
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(text)


def write_sandbox_config(directory: Path) -> Path:
    """`<directory>/config.yaml` (and `jwt-private.pem`), created with fresh secrets if missing."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.yaml"
    if path.exists():
        return path
    private, public = key_pair()
    _write_private(directory / "jwt-private.pem", private)
    config = {
        "apps": [
            {
                "client_id": DEFAULT_CLIENT_ID,
                "client_secret": secrets.token_urlsafe(24),
                "jwt_certificate": public,
                "run_as": DEFAULT_USERNAME,
            }
        ],
        "users": [
            {
                "username": DEFAULT_USERNAME,
                "password": secrets.token_urlsafe(12),
                "first_name": "Sage",
                "last_name": "Integration",
            },
            {
                "username": SALES_USERNAME,
                "password": secrets.token_urlsafe(12),
                "first_name": "Sam",
                "last_name": "Seller",
            },
        ],
    }
    _write_private(path, yaml.safe_dump(config, sort_keys=False))
    return path
