"""Typed configuration for every sagesf process.

Settings come from the environment with one prefix per component and `__` between levels
(`SAGESF_KAFKA__BOOTSTRAP_SERVERS`, `SAGESF_REGISTRY__URL`), or from an env file named by
`SAGESF_ENV_FILE`. Secrets are `SecretStr`: their repr is `**********`, so they never reach a log
line, and only `client_config()` reveals them, to the client library that needs them.
A bad value fails at start-up with `ConfigError` naming the variable to fix. Every settings class
of every component loads through `load_settings(cls)`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sagesf.errors import ConfigError

__all__ = [
    "ENV_PREFIX",
    "ConfigError",
    "KafkaSettings",
    "MetricsSettings",
    "RegistrySettings",
    "Settings",
    "describe_validation_error",
    "known_topic_renames",
    "load_settings",
]

ENV_PREFIX = "SAGESF_"
S = TypeVar("S", bound=BaseSettings)


class KafkaSettings(BaseModel):
    """How to reach the Kafka cluster (any Apache Kafka compatible one)."""

    model_config = ConfigDict(extra="forbid")

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None
    client_id: str = "sagesf"

    @model_validator(mode="after")
    def _sasl_complete(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL") and not (
            self.sasl_mechanism and self.sasl_username and self.sasl_password
        ):
            raise ValueError(
                "SASL needs SAGESF_KAFKA__SASL_MECHANISM, SAGESF_KAFKA__SASL_USERNAME and "
                "SAGESF_KAFKA__SASL_PASSWORD"
            )
        return self

    def client_config(self) -> dict[str, str]:
        """librdkafka settings for confluent-kafka clients (reveals the password to the client only)."""
        conf = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
            "client.id": self.client_id,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf


class RegistrySettings(BaseModel):
    """A Confluent-compatible schema registry."""

    model_config = ConfigDict(extra="forbid")

    url: str = "http://127.0.0.1:8081"
    basic_auth_user: str | None = None
    basic_auth_password: SecretStr | None = None
    # Outside the sandbox schemas are registered by `sagesf schemas register`, never on first use.
    auto_register: bool = False

    def client_config(self) -> dict[str, str]:
        conf = {"url": self.url}
        if self.basic_auth_user and self.basic_auth_password:
            conf["basic.auth.user.info"] = (
                f"{self.basic_auth_user}:{self.basic_auth_password.get_secret_value()}"
            )
        return conf


class MetricsSettings(BaseModel):
    """Where a process serves /metrics and /healthz (`SAGESF_METRICS__*`).

    Loopback unless configured: a container scraped from outside sets `HOST=0.0.0.0` (the
    Kubernetes base and docker-compose.yml do), so nothing else on a host reaches the endpoint
    by accident. A connection that sends nothing for `idle_timeout` seconds is closed.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = 9400
    idle_timeout: float = Field(default=5.0, gt=0)


class Settings(BaseSettings):
    """Settings shared by every sagesf process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    kafka: KafkaSettings = KafkaSettings()
    registry: RegistrySettings = RegistrySettings()
    metrics: MetricsSettings = MetricsSettings()
    topics_file: Path = Path("topics.yaml")
    schemas_dir: Path = Path("schemas")


def load_settings(cls: type[S] = Settings, **overrides: Any) -> S:  # type: ignore[assignment]
    """Settings of class `cls` from the environment (and SAGESF_ENV_FILE), or ConfigError naming
    each variable to fix (with the class's own prefix)."""
    env_file = os.environ.get("SAGESF_ENV_FILE")
    try:
        return cls(_env_file=env_file, **overrides)
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix") or ENV_PREFIX)
        raise ConfigError(describe_validation_error(exc, prefix)) from None


def describe_validation_error(exc: ValidationError, prefix: str = ENV_PREFIX) -> list[str]:
    """One problem per error, naming the environment variable to set (never echoing its value)."""
    problems = []
    for err in exc.errors(include_input=False, include_url=False):
        path = [str(p) for p in err["loc"]]
        message = str(err["msg"]).removeprefix("Value error, ")
        if not path and "SAGESF_" in message:  # a check across fields names its variables itself
            problems.append(message)
            continue
        var = prefix + "__".join(p.upper() for p in path) if path else prefix.rstrip("_")
        problems.append(f"{var}: {message}")
    return problems


def known_topic_renames(value: dict[str, str], known: Sequence[str], owner: str) -> dict[str, str]:
    """`value` (a component's `topics`: topics.yaml name -> the topic to use instead) when it
    renames only topics of `owner`; ValueError listing the others."""
    unknown = sorted(set(value) - set(known))
    if unknown:
        raise ValueError(f"not topics of {owner}: {unknown} (known: {', '.join(known)})")
    return value
