"""Configuration errors name the setting; secrets never reach a log line."""

from __future__ import annotations

import io
import logging

import pytest
from pydantic import SecretStr

from sagesf.config import ConfigError, KafkaSettings, Settings, load_settings
from sagesf.logs import MASK, RedactingFormatter, redact, register_settings_secrets


def test_bad_setting_names_the_environment_variable(monkeypatch):
    monkeypatch.setenv("SAGESF_KAFKA__SECURITY_PROTOCOL", "CARRIER_PIGEON")
    with pytest.raises(ConfigError) as err:
        load_settings(Settings)
    assert "SAGESF_KAFKA__SECURITY_PROTOCOL" in str(err.value)
    assert "CARRIER_PIGEON" not in str(err.value)  # values are not echoed: they may be secrets


def test_sasl_needs_its_credentials_and_they_reach_the_client_config(monkeypatch):
    monkeypatch.setenv("SAGESF_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError, match="SAGESF_KAFKA__SASL_PASSWORD"):
        load_settings(Settings)
    monkeypatch.setenv("SAGESF_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("SAGESF_KAFKA__SASL_USERNAME", "sagesf")
    monkeypatch.setenv("SAGESF_KAFKA__SASL_PASSWORD", "s3cr3t-Pa55")
    settings = load_settings(Settings)
    assert "s3cr3t-Pa55" not in repr(settings)
    assert settings.kafka.client_config()["sasl.password"] == "s3cr3t-Pa55"


def test_env_file_is_read(tmp_path, monkeypatch):
    env = tmp_path / "sagesf.env"
    env.write_text("SAGESF_KAFKA__BOOTSTRAP_SERVERS=10.0.0.1:9093\nSAGESF_REGISTRY__URL=http://reg:8081\n")
    monkeypatch.setenv("SAGESF_ENV_FILE", str(env))
    settings = load_settings(Settings)
    assert settings.kafka.bootstrap_servers == "10.0.0.1:9093"
    assert settings.registry.url == "http://reg:8081"


def logged(*records: tuple[str, tuple[object, ...]], exc: BaseException | None = None) -> str:
    """What the process's log handler writes for these warnings (and `exc`, logged as an exception)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(message)s"))
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for msg, args in records:
            logger.warning(msg, *args)
        if exc is not None:
            try:
                raise exc
            except type(exc):
                logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_registered_secrets_are_masked_in_messages_args_and_tracebacks():
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="u",
        sasl_password=SecretStr("hunter2-very-secret"),
    )
    register_settings_secrets(settings)
    out = logged(
        ("connecting with %s", (settings.client_config(),)),
        ("settings %r", (settings,)),
        exc=RuntimeError("login failed for u/hunter2-very-secret"),
    )
    assert "hunter2-very-secret" not in out
    assert MASK in out
    assert "login failed" in out  # the rest of the line is kept


@pytest.mark.parametrize(
    "line",
    [
        "POST /services/oauth2/token grant_type=password&password=Tr0ub4dor&client_secret=abc123xyz",
        'response {"access_token": "00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog", "instance_url": "x"}',
        "headers {'Authorization': 'Bearer 00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog'}",
    ],
)
def test_credential_shapes_are_masked_even_when_not_registered(line):
    out = redact(line)
    for secret in ("Tr0ub4dor", "abc123xyz", "00Dxx0000001gPL!AR8AQJXg5oj8jXSgxJfA0lBog"):
        assert secret not in out
    assert MASK in out
