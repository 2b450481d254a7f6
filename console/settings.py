"""`SAGESF_CONSOLE__*`: where the console listens, whom it lets in, and what it reads."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from sagesf.topic_names import POSITIONS

__all__ = ["ConsoleSettings", "OidcSettings"]


class OidcSettings(BaseModel):
    """Single sign-on through an OpenID Connect provider (`SAGESF_CONSOLE__OIDC__*`), beside the
    local users. The console is a confidential client (authorization code flow); register
    `<console URL>/login/oidc/callback` as its redirect URI. A person's console roles are the
    known role names in the `roles_claim` of their ID token, plus their roles in the users file
    under the same name (`name_claim`); someone with neither is refused."""

    model_config = ConfigDict(extra="forbid")

    issuer: str  # its metadata is at <issuer>/.well-known/openid-configuration
    client_id: str
    client_secret: SecretStr
    name_claim: str = "email"
    roles_claim: str = "roles"
    label: str = "single sign-on"  # the login button says "Log in with <label>"


class ConsoleSettings(BaseSettings):
    """The console's settings. `session_secret` signs the session cookie: it is a secret (masked in
    logs) and the console refuses to start without one of 32 characters or more. `processes` maps
    a process's name to the base URL of its /healthz and /metrics (`{"processors":
    "http://127.0.0.1:9402"}`, as JSON in the environment)."""

    model_config = SettingsConfigDict(
        env_prefix="SAGESF_CONSOLE__", env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8600, ge=0, le=65535)
    users_file: Path = Path("console-users.json")
    session_secret: SecretStr | None = None
    session_max_age: int = Field(default=8 * 3600, gt=0)  # seconds a login lasts
    secure_cookie: bool = False  # send the session cookie over HTTPS only (set it behind TLS)
    audit_log: Path = Path("console-audit.jsonl")
    mappings_dir: Path = Path("mappings")
    processes: dict[str, str] = Field(default_factory=dict)
    process_timeout: float = Field(default=2.0, gt=0)  # seconds to wait for one /healthz or /metrics
    kafka_timeout: float = Field(default=15.0, gt=0)  # seconds without progress reading a topic
    dlq_markers_topic: str = POSITIONS  # where replays are marked (as `sagesf dlq --markers-topic`)
    dlq_scan: int = Field(default=1000, ge=1)  # newest dead letters per partition counted for reasons
    # the mapping editor: drafts and saved versions live here; metadata as the processors read it
    state_dir: Path = Path("console-state")
    salesforce_metadata: Path | None = None  # default: <mappings_dir>/metadata/salesforce.yaml
    sage_metadata: Path | None = None  # default: <mappings_dir>/metadata/sage100.yaml
    preview_records: int = Field(default=20, ge=1, le=500)  # newest records per topic a preview maps
    # the processors' SAGESF_PROCESSORS__MAPPINGS_RELOAD_INTERVAL, to say when a save takes effect
    processors_reload_interval: float = Field(default=10.0, ge=0)
    # the live files are rolled out some other way (e.g. a Kubernetes ConfigMap): the editor,
    # drafts and the review's diff work, save and restore are refused
    mappings_read_only: bool = False
    oidc: OidcSettings | None = None  # single sign-on, when set

    @property
    def salesforce_metadata_file(self) -> Path | None:
        return self.salesforce_metadata or _existing(self.mappings_dir / "metadata" / "salesforce.yaml")

    @property
    def sage_metadata_file(self) -> Path | None:
        return self.sage_metadata or _existing(self.mappings_dir / "metadata" / "sage100.yaml")


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None
