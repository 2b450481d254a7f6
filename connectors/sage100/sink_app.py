"""The Sage 100 sink process: configuration, wiring and `python -m connectors.sage100.sink_app`.

Owns `SageSinkSettings` (env prefix `SAGESF_SAGE_SINK__`: writer backend, topics, consumer
groups, customer numbering, credit rules, BOI login) and the assembly of the two consumer loops
the process runs: the command sink (sink.py) on sage.commands.v1 and the credit responder
(credit.py) on credit.requests.v1, each on its own thread with its own ODBC connection and
circuit breaker (a `SageOdbc` and a breaker serve one thread). Kafka, registry and metrics come
from sagesf.config (`SAGESF_KAFKA__*`, `SAGESF_REGISTRY__*`, `SAGESF_METRICS__*`), Sage from
connectors.sage100.config (`SAGESF_SAGE100__*`: ODBC connection, integration user, UDFs, zone).

How it works: `build_command_loop` / `build_credit_loop` return a `ConsumerLoop` plus what to
close; `main()` configures redacting logs (every SecretStr registered), serves /metrics and
/healthz, runs both loops until SIGTERM/SIGINT, then closes them (uncommitted work is
redelivered to the next process; every effect is idempotent).

Limits: with writer `boi` the reads (idempotency lookups, validation, credit) still go through
the ODBC connection (ProvideX ODBC is read-only; BOI writes), so both must point at the same
company. The `boi` writer runs only on the Sage host (Windows, pywin32).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from confluent_kafka.schema_registry import SchemaRegistryClient
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.boi_writer import BoiSageWriter, BoiSettings
from connectors.sage100.commands import parse_command
from connectors.sage100.config import Sage100Settings, load_sage_settings
from connectors.sage100.credit import STAGE as CREDIT_STAGE
from connectors.sage100.credit import CreditCheckResponder, CreditRules, RequestDecoder
from connectors.sage100.customer_numbers import CustomerNumbering
from connectors.sage100.odbc import SageOdbc
from connectors.sage100.reads import SqlSageReads
from connectors.sage100.sink import STAGE as SINK_STAGE
from connectors.sage100.sink import SageCommandSink
from connectors.sage100.sql_writer import SqlSageWriter
from connectors.sage100.validation import CommandValidator, ValidationRules
from connectors.sage100.writes import SageWriter
from sagesf.config import ConfigError, Settings, describe_validation_error, load_settings
from sagesf.consumer import ConsumerLoop, close_in_order
from sagesf.dlq import DeadLetterWriter
from sagesf.logs import configure_logging, register_settings_secrets
from sagesf.metrics import Health, MetricsServer
from sagesf.producer import ConfirmedProducer
from sagesf.serde import AvroDecoder, AvroSerde

log = logging.getLogger(__name__)

__all__ = ["SageSinkSettings", "build_command_loop", "build_credit_loop", "main"]

ENV_PREFIX = "SAGESF_SAGE_SINK__"


class BoiLogin(BaseModel):
    """`SAGESF_SAGE_SINK__BOI__*`: where and as whom the `boi` writer logs in to Sage."""

    model_config = ConfigDict(extra="forbid")

    home_path: str  # ...\\MAS90\\Home of the Sage 100 client
    user: str
    password: SecretStr
    company: str
    date_format: str = "%Y%m%d"


class SageSinkSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    writer: Literal["odbc", "boi"] = "odbc"
    boi: BoiLogin | None = None
    commands_topic: str = "sage.commands.v1"
    results_topic: str = "sage.results.v1"
    credit_requests_topic: str = "credit.requests.v1"
    credit_replies_topic: str = "credit.replies.v1"
    dead_letter_topic: str | None = None  # default dlq.sage-sink.v1
    credit_dead_letter_topic: str | None = None  # default dlq.credit.v1
    group_id: str = "sagesf-sage-sink"
    credit_group_id: str = "sagesf-sage-credit"
    credit_enabled: bool = True
    batch_size: int = Field(default=100, ge=1)
    consumer_config: dict[str, Any] = Field(default_factory=dict)  # extra librdkafka settings
    default_division: str = Field(default="01", min_length=1, max_length=2)
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


def load_sink_settings(**overrides: Any) -> SageSinkSettings:
    try:
        return SageSinkSettings(_env_file=os.environ.get("SAGESF_ENV_FILE"), **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, ENV_PREFIX)) from None


@dataclass
class Built:
    """A consumer loop and what to close after it (in order)."""

    loop: ConsumerLoop
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        close_in_order([self.loop.close, *self.closers])


def _odbc(sage: Sage100Settings) -> SageOdbc:
    return SageOdbc(
        sage.odbc_connection_string(),
        query_timeout=sage.query_timeout,
        login_timeout=sage.login_timeout,
        name="sage-sink",
    )


def _registry(core: Settings) -> SchemaRegistryClient:
    return SchemaRegistryClient(core.registry.client_config())


def build_command_loop(
    core: Settings,
    sage: Sage100Settings,
    sink: SageSinkSettings,
    *,
    health: Health | None = None,
    writer_factory: Callable[[SageOdbc, SqlSageReads], SageWriter] | None = None,
) -> Built:
    """The command sink's loop; `writer_factory` replaces the configured writer backend."""
    tables = sage.tables()
    udf = sage.salesforce_id_udf
    reads_odbc = _odbc(sage)
    reads = SqlSageReads(reads_odbc, tables, order_udf=udf, customer_udf=udf)
    if writer_factory is not None:
        writer = writer_factory(reads_odbc, reads)
    elif sink.writer == "boi":
        if sink.boi is None:
            raise ConfigError(
                f"{ENV_PREFIX}BOI__HOME_PATH, __USER, __PASSWORD, __COMPANY: needed by writer 'boi'"
            )
        login = sink.boi
        writer = BoiSageWriter(
            BoiSettings(
                login.home_path,
                login.user,
                login.password.get_secret_value(),
                login.company,
                login.date_format,
            ),
            order_udf=udf,
            find_existing_order=reads.order_by_salesforce_id,
        )
    else:
        sql = SqlSageWriter(
            reads_odbc,
            tables,
            user_key=sage.integration_user_key,
            zone=sage.zone,
            order_udf=udf,
            customer_udf=udf,
            time_pad=sage.time_pad,
        )
        sql.check()
        writer = sql
    registry = _registry(core)
    auto = core.registry.auto_register
    producer = ConfirmedProducer(core.kafka)
    sink_handler = SageCommandSink(
        reads=reads,
        writer=writer,
        validator=CommandValidator(
            reads,
            ValidationRules(
                default_division=sink.default_division,
                taxable_classes=frozenset(sink.taxable_classes),
                customer_status_codes=sink.customer_status_codes,
                order_udf=udf,
                customer_udf=udf,
            ),
            tables,
        ),
        numbering=CustomerNumbering(
            sink.numbering_scheme, sink.numbering_prefix, sink.numbering_digits, sink.numbering_name_length
        ),
        producer=producer,
        results_topic=sink.results_topic,
        key_serde=AvroSerde.string_key(registry, sink.results_topic, auto_register=auto),
        result_serde=AvroSerde.canonical(registry, "SageResult", sink.results_topic, auto_register=auto),
        breaker=CircuitBreaker(SINK_STAGE, health=health),
        customer_udf=udf,
        default_division=sink.default_division,
    )
    loop = ConsumerLoop(
        kafka=core.kafka,
        group_id=sink.group_id,
        topics=[sink.commands_topic],
        stage=SINK_STAGE,
        handler=sink_handler,
        dead_letters=DeadLetterWriter(producer, SINK_STAGE, sink.dead_letter_topic),
        decode=AvroDecoder.for_topic(
            registry, sink.commands_topic, "SageCommand", auto_register=auto, parse=parse_command
        ),
        batch_size=sink.batch_size,
        health=health,
        extra_config=sink.consumer_config,
    )
    return Built(loop, [writer.close, reads_odbc.close, producer.close])


def build_credit_loop(
    core: Settings, sage: Sage100Settings, sink: SageSinkSettings, *, health: Health | None = None
) -> Built:
    """The credit responder's loop, on its own ODBC connection."""
    odbc = _odbc(sage)
    udf = sage.salesforce_id_udf
    reads = SqlSageReads(odbc, sage.tables(), order_udf=udf, customer_udf=udf)
    registry = _registry(core)
    auto = core.registry.auto_register
    producer = ConfirmedProducer(core.kafka)
    responder = CreditCheckResponder(
        reads=reads,
        producer=producer,
        replies_topic=sink.credit_replies_topic,
        key_serde=AvroSerde.string_key(registry, sink.credit_replies_topic, auto_register=auto),
        reply_serde=AvroSerde.canonical(
            registry, "CreditCheckReply", sink.credit_replies_topic, auto_register=auto
        ),
        breaker=CircuitBreaker(CREDIT_STAGE, health=health),
        rules=CreditRules(
            currency_code=sink.currency_code,
            open_statuses=tuple(sink.open_order_statuses),
            active_statuses=frozenset(sink.active_customer_statuses),
            zero_limit_is_unlimited=sink.zero_credit_limit_is_unlimited,
            default_division=sink.default_division,
        ),
    )
    loop = ConsumerLoop(
        kafka=core.kafka,
        group_id=sink.credit_group_id,
        topics=[sink.credit_requests_topic],
        stage=CREDIT_STAGE,
        handler=responder,
        dead_letters=DeadLetterWriter(producer, CREDIT_STAGE, sink.credit_dead_letter_topic),
        decode=RequestDecoder(
            AvroSerde.string_key(registry, sink.credit_requests_topic, auto_register=auto),
            AvroSerde.canonical(
                registry, "CreditCheckRequest", sink.credit_requests_topic, auto_register=auto
            ),
        ),
        batch_size=sink.batch_size,
        health=health,
        extra_config=sink.consumer_config,
    )
    return Built(loop, [odbc.close, producer.close])


def main() -> None:
    configure_logging(component="sage-sink")
    core: Settings = load_settings()
    sage = load_sage_settings()
    sink = load_sink_settings()
    for settings in (core, sage, sink):
        register_settings_secrets(settings)
    health = Health()
    metrics = MetricsServer(health, core.metrics.host, core.metrics.port)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    loops = [build_command_loop(core, sage, sink, health=health)]
    if sink.credit_enabled:
        loops.append(build_credit_loop(core, sage, sink, health=health))
    threads = [threading.Thread(target=b.loop.run, args=(stop,), name=b.loop.stage) for b in loops]
    log.info("Sage sink running (writer %s, metrics on port %d)", sink.writer, metrics.port)
    for t in threads:
        t.start()
    try:
        while not stop.wait(1.0):
            if not all(t.is_alive() for t in threads):
                log.error("a consumer loop stopped; shutting down so the supervisor restarts the process")
                stop.set()
    finally:
        for t in threads:
            t.join()
        for b in loops:
            b.close()
        metrics.stop()


if __name__ == "__main__":
    main()
