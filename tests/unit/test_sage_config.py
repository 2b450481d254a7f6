"""Sage 100 connector settings: environment, secrets, validation naming the variable."""

from __future__ import annotations

import logging

import pytest

from connectors.sage100.config import Sage100Settings
from sagesf.config import ConfigError, load_settings
from sagesf.logs import RedactingFormatter, register_settings_secrets


def test_settings_from_the_environment(monkeypatch):
    monkeypatch.delenv("SAGESF_ENV_FILE", raising=False)
    monkeypatch.setenv("SAGESF_SAGE100__DSN", "SOTAMAS90")
    monkeypatch.setenv("SAGESF_SAGE100__USER", "sgsf")
    monkeypatch.setenv("SAGESF_SAGE100__PASSWORD", "pa;ss}word")
    monkeypatch.setenv("SAGESF_SAGE100__COMPANY", "ABC")
    monkeypatch.setenv("SAGESF_SAGE100__SOURCE__POLL_INTERVAL", "2.5")
    monkeypatch.setenv("SAGESF_SAGE100__SOURCE__TABLES", '["CI_Item", "IM_ItemWarehouse"]')
    monkeypatch.setenv("SAGESF_SAGE100__UDF_COLUMNS", '{"CI_Item": ["UDF_WEB_ITEM"]}')
    settings = load_settings(Sage100Settings)
    assert settings.source.poll_interval == 2.5
    assert settings.source.tables == ["CI_Item", "IM_ItemWarehouse"]
    assert settings.tables()["CI_Item"].has("UDF_WEB_ITEM")
    assert settings.odbc_connection_string().get_secret_value() == (
        "DSN=SOTAMAS90;UID=sgsf;PWD={pa;ss}}word};Company=ABC"
    )
    assert "pa;ss" not in repr(settings)


def test_password_never_reaches_a_log_line(monkeypatch):
    monkeypatch.delenv("SAGESF_ENV_FILE", raising=False)
    monkeypatch.setenv("SAGESF_SAGE100__CONNECTION_STRING", "DSN=SOTAMAS90;UID=sgsf;PWD=Sup3rSecret!")
    settings = load_settings(Sage100Settings)
    register_settings_secrets(settings)
    record = logging.LogRecord(
        "x",
        logging.INFO,
        __file__,
        1,
        "connecting with %s",
        (settings.odbc_connection_string().get_secret_value(),),
        None,
    )
    assert "Sup3rSecret" not in RedactingFormatter("%(message)s").format(record)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({}, "SAGESF_SAGE100"),  # neither connection string nor DSN
        (
            {"SAGESF_SAGE100__DSN": "X", "SAGESF_SAGE100__SERVER_TIME_ZONE": "Mars/Olympus"},
            "SERVER_TIME_ZONE",
        ),
        ({"SAGESF_SAGE100__DSN": "X", "SAGESF_SAGE100__SOURCE__TABLES": '["GL_Account"]'}, "SOURCE__TABLES"),
        (
            {"SAGESF_SAGE100__DSN": "X", "SAGESF_SAGE100__UDF_COLUMNS": '{"AR_Customer": ["SFID"]}'},
            "UDF_COLUMNS",
        ),
        (
            {"SAGESF_SAGE100__DSN": "X", "SAGESF_SAGE100__UDF_COLUMNS": '{"AR_Customer": ["UDF_X:float"]}'},
            "UDF_COLUMNS",
        ),
        ({"SAGESF_SAGE100__DSN": "X", "SAGESF_SAGE100__SOURCE__OVERLAP_SECONDS": "-1"}, "OVERLAP_SECONDS"),
    ],
)
def test_a_bad_value_names_the_variable(monkeypatch, env, names):
    monkeypatch.delenv("SAGESF_ENV_FILE", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError, match=names):
        load_settings(Sage100Settings)


def test_a_udf_may_carry_its_sage_type(monkeypatch):
    monkeypatch.delenv("SAGESF_ENV_FILE", raising=False)
    monkeypatch.setenv("SAGESF_SAGE100__DSN", "SOTAMAS90")
    monkeypatch.setenv(
        "SAGESF_SAGE100__UDF_COLUMNS",
        '{"AR_Customer": ["UDF_PLAIN", "UDF_RATING:N12.2", "UDF_SINCE:date", "UDF_CODE:S4"]}',
    )
    table = load_settings(Sage100Settings).tables()["AR_Customer"]
    described = {name: table.column(name).kind.value for name in table.udfs}
    assert described == {
        "UDF_PLAIN": "text",
        "UDF_RATING": "decimal",
        "UDF_SINCE": "date",
        "UDF_CODE": "text",
    }
    assert (table.column("UDF_RATING").precision, table.column("UDF_RATING").scale) == (12, 2)
    assert (table.column("UDF_PLAIN").length, table.column("UDF_CODE").length) == (30, 4)
