"""Configuration of the Sage 100 connector (source and sink): env prefix `SAGESF_SAGE100__`.

Owns the typed settings both sides of the connector read: how to reach Sage over ODBC (a full
connection string, or a DSN with user and password; the password is a `SecretStr` that only the
driver sees), the integration's own Sage user key (whose writes the source ignores and the sink
stamps), the installation's UDF columns, the Sage server's time zone, and the source's polling
settings under `SAGESF_SAGE100__SOURCE__*`; and the sink's own settings (`SageSinkSettings`,
env prefix `SAGESF_SAGE_SINK__`: writer backend, topics, consumer groups, customer numbering,
credit rules, BOI login).

How it works: pydantic-settings reads `SAGESF_SAGE100__<FIELD>` (nested with `__`, lists and
dicts as JSON, e.g. `SAGESF_SAGE100__UDF_COLUMNS='{"AR_Customer": ["UDF_SALESFORCE_ID",
"UDF_RATING:N12.2"]}'`: a UDF is `NAME`, text of 30, or `NAME:TYPE` with Sage's type, S10, N12.2
or date) or the env file named by `SAGESF_ENV_FILE`; `sagesf.config.load_settings` turns a bad value into
`ConfigError` naming the variable. Every value is checked at start-up: tables
and UDF columns against sage100.tables, the zone against the tz database.

Limits: `time_pad` says how the database writes hours before 10:00 in TimeUpdated ("0" ->
"09.5012", the sandbox; " " -> " 9.5012"; "" -> "9.5012"). It is unverified which a given
Sage release uses: the source reads correctly whatever the data holds when this is "" or "0"
(see sage100.odbc `Q.changed_since`), and exactly when it matches.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.sage100.tables import TABLES, Table, layouts, udf_column
from sagesf import topic_names

__all__ = [
    "ENV_PREFIX",
    "POLLABLE_TABLES",
    "SINK_ENV_PREFIX",
    "BoiLogin",
    "Sage100Settings",
    "SageSinkSettings",
    "SourceSettings",
]

ENV_PREFIX = "SAGESF_SAGE100__"
SINK_ENV_PREFIX = "SAGESF_SAGE_SINK__"
# the tables the source knows how to turn into canonical records
POLLABLE_TABLES = (
    "AR_Customer",
    "AR_CustomerContact",
    "CI_Item",
    "IM_ItemWarehouse",
    "SO_SalesOrderHeader",
    "SO_SalesOrderDetail",
)


class SourceSettings(BaseModel):
    """How the source polls (`SAGESF_SAGE100__SOURCE__*`)."""

    model_config = ConfigDict(extra="forbid")

    component: str = "sage-source"  # its name in positions.v1 and in metrics
    tables: list[str] = Field(default_factory=lambda: list(POLLABLE_TABLES))
    poll_interval: float = Field(default=5.0, gt=0)  # seconds between polls of one table
    overlap_seconds: float = Field(default=10.0, ge=0)  # re-read window behind the watermark
    # how far past the Sage server's clock a watermark may go: a row stamped later still publishes
    future_skew_seconds: float = Field(default=300.0, ge=0)
    batch_rows: int = Field(default=20_000, ge=1)  # rows between Kafka acknowledgement + checkpoint
    sweep_interval: float = Field(default=3600.0, gt=0)  # seconds between key sweeps (deletes, deactivations)
    produce_timeout: float = Field(default=60.0, gt=0)
    # canonical topic name -> the topic to use instead (a prefix per tenant, a test's own topics)
    topics: dict[str, str] = Field(default_factory=dict)
    positions_topic: str = topic_names.POSITIONS
    dead_letter_topic: str = topic_names.dead_letter_topic("sage-source")

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, tables: list[str]) -> list[str]:
        unknown = [t for t in tables if t not in POLLABLE_TABLES]
        if unknown:
            raise ValueError(f"cannot poll {unknown}; the source polls {list(POLLABLE_TABLES)}")
        return tables


class Sage100Settings(BaseSettings):
    """Settings of the Sage 100 connector."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    # Either a full ODBC connection string (it may hold PWD=...; it is a secret as a whole) ...
    connection_string: SecretStr | None = None
    # ... or a DSN (ProvideX: SOTAMAS90) with user, password and company.
    dsn: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    company: str | None = None
    login_timeout: int = Field(default=10, ge=1)  # seconds to open a connection
    query_timeout: int = Field(default=30, ge=1)  # seconds one statement may take (drivers that support it)
    # when Sage is unavailable the circuit breaker tries again after 1 s, doubling up to this
    breaker_max_backoff: float = Field(default=60.0, gt=0)

    integration_user_key: str = Field(default="SGSF", min_length=1, max_length=10)
    udf_columns: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "AR_Customer": ["UDF_SALESFORCE_ID"],
            "SO_SalesOrderHeader": ["UDF_SALESFORCE_ID"],
        }
    )
    salesforce_id_udf: str = "UDF_SALESFORCE_ID"  # the UDF holding the Salesforce record ID
    server_time_zone: str = "America/New_York"
    time_pad: Literal["0", " ", ""] = "0"

    source: SourceSettings = SourceSettings()

    @field_validator("server_time_zone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use a tz database name: America/Chicago)"
            ) from None
        return value

    @field_validator("udf_columns")
    @classmethod
    def _udfs_valid(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = [t for t in value if t not in TABLES]
        if unknown:
            raise ValueError(f"UDF columns for unknown tables {unknown}")
        for table, names in value.items():
            for spec in names:
                try:
                    udf_column(spec)
                except ValueError as exc:
                    raise ValueError(f"{table}: {exc}") from None
        return value

    @model_validator(mode="after")
    def _connection_given(self) -> Sage100Settings:
        if self.connection_string is None and self.dsn is None:
            raise ValueError(
                f"set {ENV_PREFIX}CONNECTION_STRING (a full ODBC connection string) or {ENV_PREFIX}DSN"
            )
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.server_time_zone)

    def tables(self) -> dict[str, Table]:
        """Every Sage table layout with this installation's UDF columns."""
        return layouts(self.udf_columns)

    def odbc_connection_string(self) -> SecretStr:
        """The string handed to the driver, still a secret (reveal it only to pyodbc)."""
        if self.connection_string is not None:
            return self.connection_string
        parts = [f"DSN={self.dsn}"]
        if self.user:
            parts.append(f"UID={self.user}")
        if self.password:
            parts.append("PWD={" + self.password.get_secret_value().replace("}", "}}") + "}")
        if self.company:
            parts.append(f"Company={self.company}")
        return SecretStr(";".join(parts))


class BoiLogin(BaseModel):
    """`SAGESF_SAGE_SINK__BOI__*`: where and as whom the `boi` writer logs in to Sage."""

    model_config = ConfigDict(extra="forbid")

    home_path: str  # ...\\MAS90\\Home of the Sage 100 client
    user: str
    password: SecretStr
    company: str
    date_format: str = "%Y%m%d"


class SageSinkSettings(BaseSettings):
    """`SAGESF_SAGE_SINK__*`: the Sage sink process (command sink and credit responder)."""

    model_config = SettingsConfigDict(
        env_prefix=SINK_ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    writer: Literal["odbc", "boi"] = "odbc"
    boi: BoiLogin | None = None
    commands_topic: str = topic_names.SAGE_COMMANDS
    results_topic: str = topic_names.SAGE_RESULTS
    credit_requests_topic: str = topic_names.CREDIT_REQUESTS
    credit_replies_topic: str = topic_names.CREDIT_REPLIES
    dead_letter_topic: str | None = None  # default dlq.sage-sink.v1
    credit_dead_letter_topic: str | None = None  # default dlq.credit.v1
    group_id: str = "sagesf-sage-sink"
    credit_group_id: str = "sagesf-sage-credit"
    credit_enabled: bool = True
    batch_size: int = Field(default=100, ge=1)
    consumer_config: dict[str, Any] = Field(default_factory=dict)  # extra librdkafka settings
    default_division: str = Field(default="01", min_length=1, max_length=2)
    # a Sage user's change counts as newer than a command only when later by more than this
    # (TimeUpdated is truncated to 0.36 s; Sage's and Salesforce's clocks differ): stale.py
    stale_tolerance_seconds: float = Field(default=2.0, ge=0, le=3600)
    numbering_scheme: Literal["sequence", "name"] = "sequence"
    numbering_prefix: str = "SF"
    numbering_digits: int = Field(default=6, ge=1, le=19)
    numbering_name_length: int = Field(default=8, ge=3, le=20)
    taxable_classes: list[str] = Field(default_factory=lambda: ["TX"])
    customer_status_codes: dict[str, str] = Field(default_factory=lambda: {"ACTIVE": "A", "INACTIVE": "I"})
    currency_code: str = Field(default="USD", min_length=3, max_length=3)
    open_order_statuses: list[str] = Field(default_factory=lambda: ["N", "O", "H"])
    active_customer_statuses: list[str] = Field(default_factory=lambda: ["A"])
    zero_credit_limit_is_unlimited: bool = True
    # a credit request's order amount must be above 0 and at most this (the request's
    # decimal(15, 2) holds up to 9999999999999.99)
    credit_max_order_amount: Decimal = Field(
        default=Decimal("1000000000"), gt=0, le=Decimal("9999999999999.99"), decimal_places=2
    )
    # each Salesforce user gets this many credit answers per period; more are answered RATE_LIMITED
    credit_requests_per_requester: int = Field(default=20, ge=1)
    credit_rate_period_seconds: float = Field(default=60.0, gt=0)
