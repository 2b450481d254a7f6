"""Configuration of the Salesforce connector: `SalesforceSettings`, env prefix `SAGESF_SALESFORCE__`.

What it owns: how to reach and log in to an org (login URL, API version, OAuth flow and its
credentials), the `Sforce-Call-Options: client=<id>` the connector stamps on every call (the
echo guard: the CDC source drops change events whose changeOrigin names it and whose commitUser
is the integration user), the API budget
(share of the org's daily request limit the integration may use), and the sink's knobs (bulk
threshold, batch window, topics, consumer group) under `SAGESF_SALESFORCE__SINK__*`.

Auth flows (`SAGESF_SALESFORCE__AUTH_FLOW`) and what each needs:
- `jwt` (production, server to server): CLIENT_ID, USERNAME, and PRIVATE_KEY (a PEM file path)
  or PRIVATE_KEY_PEM (the PEM itself, e.g. from a Kubernetes secret);
- `client_credentials` (production): CLIENT_ID, CLIENT_SECRET; LOGIN_URL must be the org's My
  Domain URL (Salesforce refuses this grant on login.salesforce.com);
- `password` (sandbox, the emulator): CLIENT_ID, CLIENT_SECRET, USERNAME, PASSWORD (and
  SECURITY_TOKEN when the org wants it appended); Salesforce is retiring this grant;
- `refresh_token` (sandbox): CLIENT_ID, REFRESH_TOKEN (CLIENT_SECRET if the app has one).
A missing credential fails at start-up with `ConfigError` naming the variables to set.

Secrets are `SecretStr`; `register_settings_secrets` (sagesf.logs) masks them in every log line.

Plain http: a login URL over http sends the credentials in clear, so it is refused at start-up
(`ConfigError` naming SAGESF_SALESFORCE__LOGIN_URL) unless its host is loopback (127.0.0.0/8,
::1, localhost: the sandbox emulator) or the one host named by `plain_http_host` (an emulator in
a private network, e.g. `salesforce` in docker compose). The connector then talks plain http to
the instance URL the token response names only when that is such a host too, and never when the
login URL is https (client.py).

Limits: one org per process.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from sagesf import topic_names
from sagesf.config import ConfigError

__all__ = [
    "ENV_PREFIX",
    "VERSION_FIELD",
    "AuthFlow",
    "SalesforceSettings",
    "SalesforceSinkOptions",
    "plain_http_allowed",
]

ENV_PREFIX = "SAGESF_SALESFORCE__"
AuthFlow = Literal["jwt", "client_credentials", "password", "refresh_token"]
_VERSION = re.compile(r"^\d{2,3}\.\d$")
_CALL_OPTIONS_CLIENT = re.compile(r"^[A-Za-z0-9_./-]{1,80}$")
VERSION_FIELD = "Sage_Synced_At__c"  # the stale guard's version field, as salesforce/ deploys it


class SalesforceSinkOptions(BaseModel):
    """`SAGESF_SALESFORCE__SINK__*`: the sink's topics and consumer group."""

    model_config = ConfigDict(extra="forbid")

    commands_topic: str = topic_names.SALESFORCE_COMMANDS
    results_topic: str = topic_names.SALESFORCE_RESULTS
    dead_letter_topic: str | None = None  # default dlq.salesforce-sink.v1
    group_id: str = "sagesf-salesforce-sink"
    consumer_config: dict[str, Any] = Field(default_factory=dict)  # extra librdkafka settings
    # old commands never overwrite newer changes (connectors/salesforce/stale_guard.py): commands
    # of these objects older than stale_check_after seconds, or replayed, are compared first
    stale_guard_objects: list[str] = Field(default_factory=lambda: ["Account"])
    stale_check_after: float = Field(default=300.0, ge=0)
    stale_tolerance: float = Field(default=2.0, ge=0)  # seconds a change must be later to be newer
    version_field: str | None = VERSION_FIELD  # datetime: the last written change's event time


class SalesforceSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    # --- the org and the login -------------------------------------------------------------------
    login_url: str = "https://login.salesforce.com"  # test.salesforce.com, My Domain, or the emulator
    plain_http_host: str | None = None  # a non-loopback emulator host plain http may reach (compose)
    api_version: str = "62.0"
    auth_flow: AuthFlow = "jwt"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    security_token: SecretStr | None = None
    private_key: Path | None = None  # PEM file for the JWT bearer flow
    private_key_pem: SecretStr | None = None  # the PEM itself, instead of a file
    jwt_audience: str | None = None  # default: login/test.salesforce.com, else the login URL
    refresh_token: SecretStr | None = None
    request_timeout: float = Field(default=60.0, gt=0)  # seconds, per HTTP request

    # --- echo guard ------------------------------------------------------------------------------
    call_options_client: str = "sagesf"  # sent as `Sforce-Call-Options: client=<this>`

    # --- API budget ------------------------------------------------------------------------------
    api_budget_share: float = Field(default=0.5, gt=0, le=1)  # of the org's daily request limit
    budget_recheck_seconds: float = Field(default=300.0, gt=0)  # one probe call per interval when spent
    rate_limit_pause: float = Field(default=60.0, ge=0)  # pause after REQUEST_LIMIT_EXCEEDED

    # --- the sink --------------------------------------------------------------------------------
    bulk_threshold: int = Field(default=2000, ge=1)  # more records than this per object: Bulk API 2.0
    batch_window: float = Field(default=1.0, gt=0)  # seconds the sink gathers commands to coalesce
    max_batch_records: int = Field(default=10_000, ge=1)  # commands per window at most
    bulk_poll_interval: float = Field(default=1.0, gt=0)  # first Bulk job poll; doubles up to 10 s
    bulk_timeout: float = Field(default=900.0, gt=0)  # then the job is retried (resumed) later
    sink: SalesforceSinkOptions = SalesforceSinkOptions()

    @field_validator("login_url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value.strip())
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://login.salesforce.com")
        if parts.path.strip("/") or parts.query:
            raise ValueError("must be the site only, without a path (the token path is added)")
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _https_unless_local(self) -> SalesforceSettings:
        login = urlsplit(self.login_url)
        if login.scheme == "http" and not plain_http_allowed(login.hostname, self.plain_http_host):
            raise ValueError(
                f"{ENV_PREFIX}LOGIN_URL: must be https: plain http would send the credentials in clear "
                f"(allowed only to loopback or to {ENV_PREFIX}PLAIN_HTTP_HOST, for an emulator)"
            )
        return self

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        value = value.strip().lstrip("v")
        if not _VERSION.match(value):
            raise ValueError("must look like 62.0")
        return value

    @field_validator("call_options_client")
    @classmethod
    def _client(cls, value: str) -> str:
        if not _CALL_OPTIONS_CLIENT.match(value):
            raise ValueError("1-80 characters: letters, digits, _ . / - (no commas, semicolons or spaces)")
        return value

    @model_validator(mode="after")
    def _credentials_for_the_flow(self) -> SalesforceSettings:
        needed: dict[str, object] = {"client_id": self.client_id}
        if self.auth_flow == "jwt":
            needed["username"] = self.username
            if self.private_key is None and self.private_key_pem is None:
                needed["private_key (or private_key_pem)"] = None
        elif self.auth_flow == "client_credentials":
            needed["client_secret"] = self.client_secret
        elif self.auth_flow == "password":
            needed.update(client_secret=self.client_secret, username=self.username, password=self.password)
        else:
            needed["refresh_token"] = self.refresh_token
        missing = [name for name, value in needed.items() if not value]
        if missing:
            names = ", ".join(ENV_PREFIX + name.upper() for name in missing)
            raise ValueError(f"auth flow '{self.auth_flow}' needs {names}")
        if self.private_key is not None and not self.private_key.is_file():
            raise ValueError(f"{ENV_PREFIX}PRIVATE_KEY: no file at {self.private_key}")
        return self

    def private_key_text(self) -> str:
        """The JWT signing key (PEM), from PRIVATE_KEY_PEM or the PRIVATE_KEY file."""
        if self.private_key_pem is not None:
            return self.private_key_pem.get_secret_value()
        if self.private_key is None:
            raise ConfigError(f"{ENV_PREFIX}PRIVATE_KEY: needed by the jwt auth flow")
        return self.private_key.read_text(encoding="utf-8")


def plain_http_allowed(host: str | None, named: str | None = None) -> bool:
    """Whether plain http may reach `host`: loopback, or the one host the settings name."""
    if not host:
        return False
    if named is not None and host.lower() == named.lower():
        return True
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
