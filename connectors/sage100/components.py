"""The Sage 100 connector's two processes, as sagesf.runner components: `sagesf run sage-source`
and `sagesf run sage-sink`. Each builder assembles the parts from the settings and hands the
core loops a connector role (`SageSource`; `SageCommandSink` and `CreditCheckResponder`). The
source also replays its dead letters (`build_source_replay`, for `sagesf dlq replay sage-source`),
loads what the company holds before go-live (`build_source_load`, for `sagesf load sage`) and
reads what it holds now for reconciliation (`build_source_snapshot`, for `sagesf reconcile`);
both check the company's catalog before going live (`preflight_source`, `preflight_sink`, for
`sagesf preflight sage`).

Both start while Sage or the registry is down and say so on /healthz (`Process.wait_for`): the
sink waits for Sage before its first write (the `odbc` writer's start-up check) and both look up
their output schemas first; the source finds Sage down on its first poll, behind its breaker."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

from connectors.sage100.availability import CircuitBreaker
from connectors.sage100.boi_writer import BoiSageWriter, BoiSettings
from connectors.sage100.catalog_metadata import CatalogReader, source_of
from connectors.sage100.commands import parse_command
from connectors.sage100.config import ENV_PREFIX, Sage100Settings, SageSinkSettings
from connectors.sage100.credit import CreditCheckResponder, CreditRules, RequestDecoder
from connectors.sage100.customer_numbers import CustomerNumbering
from connectors.sage100.initial_load import SageInitialLoad
from connectors.sage100.odbc import SageOdbc, SageUnavailable
from connectors.sage100.preflight import SageCatalogChecks
from connectors.sage100.reads import SqlSageReads
from connectors.sage100.row_replayer import SageRowReplayer
from connectors.sage100.sink import SageCommandSink
from connectors.sage100.snapshot import SageSnapshot
from connectors.sage100.source import STAGE, SageSource
from connectors.sage100.sql_writer import SqlSageWriter
from connectors.sage100.stale import NewerRowCheck
from connectors.sage100.validation import CommandValidator, ValidationRules
from connectors.sage100.writes import SageWriter
from sagesf import topic_names
from sagesf.config import ConfigError
from sagesf.errors import AuthenticationError
from sagesf.load import InitialLoad, LoadRequest, stored_progress
from sagesf.logs import register_secret
from sagesf.positions import PositionStore
from sagesf.preflight import Check
from sagesf.runner import Component, Concurrently, Process, Runnable
from sagesf.serde import AvroDecoder, AvroSerde
from sagesf.sink import Sink, SinkLoop
from sagesf.source import Replayer, SourceLoop
from sagesf.system_metadata import MetadataRequest, PulledMetadata

__all__ = ["SAGE_SINK", "SAGE_SOURCE", "build_command_loop", "build_credit_loop"]

SAGE = "sage100"  # Sage 100's name on /healthz, as the circuit breakers report it
T = TypeVar("T")


def build_source(process: Process) -> SourceLoop:
    """The source loop: positions read back first, so a restarted source resumes where it stopped."""

    sage = process.settings(Sage100Settings)
    options = sage.source
    producer = process.producer()
    positions = PositionStore(process.core.kafka, options.component, options.positions_topic, producer)
    source = SageSource(
        sage, positions.load(), odbc=_odbc(process, sage, "sage-source"), health=process.health
    )
    publisher = process.publisher(
        source.name,
        producer=producer,
        dead_letter_topic=options.dead_letter_topic,
        timeout=options.produce_timeout,
        schemas=[(table.stream.topic, table.stream.schema) for table in source.tables.values()],
    )
    return SourceLoop(source, publisher, positions, health=process.health)


def build_source_replay(process: Process) -> Replayer:
    """The source's dead letters re-read from Sage on a connection of their own, and published as
    the source publishes (its topics); no position is read or stored."""
    sage = process.settings(Sage100Settings)
    rows = SageRowReplayer(sage, _odbc(process, sage, "sage-source-replay"))
    publisher = process.publisher(
        STAGE, dead_letter_topic=sage.source.dead_letter_topic, timeout=sage.source.produce_timeout
    )
    return Replayer(rows.reread, publisher)


def build_source_load(process: Process, request: LoadRequest) -> InitialLoad:
    """The initial load (connectors/sage100/initial_load.py) on a connection of its own: the
    source's streams, topics and dead letters; its progress under `<component>-load` in
    positions.v1; the hand-over written to the source's own positions."""
    sage = process.settings(Sage100Settings)
    options = sage.source
    producer = process.producer()
    store = PositionStore(process.core.kafka, f"{options.component}-load", options.positions_topic, producer)
    stored = stored_progress(store, request, {})
    live = PositionStore(process.core.kafka, options.component, options.positions_topic, producer)
    live.load()
    load = SageInitialLoad(sage, _odbc(process, sage, "sage-source-load"), stored=stored, live_positions=live)
    publisher = process.publisher(
        STAGE,
        producer=producer,
        dead_letter_topic=options.dead_letter_topic,
        timeout=options.produce_timeout,
        schemas=sorted({(s.topic, s.schema) for s in load.streams.values()}),
    )
    if request.since is not None or request.go_live is not None:
        load.progress.note(
            "--since and --go-live concern orders: Sage's are not loaded, so they change nothing"
        )
    return InitialLoad(load, publisher, store, load.progress)


def build_source_snapshot(process: Process) -> SageSnapshot:
    """What the company holds now, for reconciliation (connectors/sage100/snapshot.py), on a
    connection of its own: the source's streams, one scan per table."""
    sage = process.settings(Sage100Settings)
    return SageSnapshot(sage, _odbc(process, sage, "sage-snapshot"))


def build_sink(process: Process) -> Runnable:
    """The command sink and, unless disabled, the credit responder, each on its own thread."""
    loops: dict[str, Runnable] = {"sage-sink": build_command_loop(process)}
    if process.settings(SageSinkSettings).credit_enabled:
        loops["credit"] = build_credit_loop(process)
    return Concurrently(loops)


def build_command_loop(
    process: Process, writer_factory: Callable[[SageOdbc, SqlSageReads], SageWriter] | None = None
) -> SinkLoop:
    """The command sink's loop on its own ODBC connection; `writer_factory(odbc, reads)` replaces
    the configured writer backend (tests)."""

    sage, sink = process.settings(Sage100Settings), process.settings(SageSinkSettings)
    tables, udf = sage.tables(), sage.salesforce_id_udf
    odbc = _odbc(process, sage, "sage-sink")
    reads = SqlSageReads(odbc, tables, order_udf=udf, customer_udf=udf)
    writer: SageWriter
    if writer_factory is not None:
        writer = writer_factory(odbc, reads)
    elif sink.writer == "boi":
        if sink.boi is None:
            raise ConfigError(
                "SAGESF_SAGE_SINK__BOI__HOME_PATH, __USER, __PASSWORD, __COMPANY: needed by writer 'boi'"
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
        writer = SqlSageWriter(
            odbc,
            tables,
            user_key=sage.integration_user_key,
            zone=sage.zone,
            order_udf=udf,
            customer_udf=udf,
            time_pad=sage.time_pad,
        )
        process.wait_for(SAGE, _login_checked(writer.check))
    process.closing(writer.close, "the Sage writer")
    handler = SageCommandSink(
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
        results_topic=sink.results_topic,
        breaker=CircuitBreaker(
            SageCommandSink.name, health=process.health, max_backoff=sage.breaker_max_backoff
        ),
        customer_udf=udf,
        default_division=sink.default_division,
        newer=NewerRowCheck(
            sage.zone, sage.integration_user_key, timedelta(seconds=sink.stale_tolerance_seconds)
        ),
    )
    auto = process.core.registry.auto_register
    return _loop(
        process,
        handler,
        sink.group_id,
        sink.commands_topic,
        sink.dead_letter_topic,
        AvroDecoder.for_topic(
            process.registry, sink.commands_topic, "SageCommand", auto_register=auto, parse=parse_command
        ),
        (sink.results_topic, "SageResult"),
    )


def build_credit_loop(process: Process) -> SinkLoop:
    """The credit responder's loop, on its own ODBC connection."""

    sage, sink = process.settings(Sage100Settings), process.settings(SageSinkSettings)
    udf = sage.salesforce_id_udf
    reads = SqlSageReads(_odbc(process, sage, "credit"), sage.tables(), order_udf=udf, customer_udf=udf)
    responder = CreditCheckResponder(
        reads=reads,
        replies_topic=sink.credit_replies_topic,
        breaker=CircuitBreaker(
            CreditCheckResponder.name, health=process.health, max_backoff=sage.breaker_max_backoff
        ),
        rules=CreditRules(
            currency_code=sink.currency_code,
            open_statuses=tuple(sink.open_order_statuses),
            active_statuses=frozenset(sink.active_customer_statuses),
            zero_limit_is_unlimited=sink.zero_credit_limit_is_unlimited,
            default_division=sink.default_division,
            max_order_amount=sink.credit_max_order_amount,
            requests_per_requester=sink.credit_requests_per_requester,
            rate_period_seconds=sink.credit_rate_period_seconds,
        ),
    )
    registry, auto, topic = process.registry, process.core.registry.auto_register, sink.credit_requests_topic
    decoder = RequestDecoder(
        AvroSerde.string_key(registry, topic, auto_register=auto),
        AvroSerde.canonical(registry, "CreditCheckRequest", topic, auto_register=auto),
    )
    return _loop(
        process,
        responder,
        sink.credit_group_id,
        topic,
        sink.credit_dead_letter_topic,
        decoder,
        (sink.credit_replies_topic, "CreditCheckReply"),
    )


def _loop(
    process: Process,
    sink: Sink,
    group_id: str,
    topic: str,
    dead_letter_topic: str | None,
    decode: Callable[..., None],
    answers: tuple[str, str],
) -> SinkLoop:
    """A sink loop of this process; `answers` is the (topic, schema) of what `sink` answers."""
    options = process.settings(SageSinkSettings)
    loop = SinkLoop(
        kafka=process.core.kafka,
        group_id=group_id,
        topics=[topic],
        sink=sink,
        publisher=process.publisher(sink.name, dead_letter_topic=dead_letter_topic, schemas=[answers]),
        decode=decode,
        batch_size=options.batch_size,
        health=process.health,
        extra_config=options.consumer_config,
    )
    process.closing(loop.close, f"the {sink.name} consumer")
    return loop


def preflight_source(process: Process) -> list[Check]:
    """`sagesf preflight sage`: the tables the source polls, with their columns and UDFs."""
    sage = process.settings(Sage100Settings)
    tables = sage.tables()
    checks = SageCatalogChecks(_odbc(process, sage, "preflight"), "sage-source")
    return _login_checked(lambda: checks.tables(tables[name] for name in sage.source.tables))()


def preflight_sink(process: Process) -> list[Check]:
    """`sagesf preflight sage`: every table the sink reads or writes, with their columns and UDFs."""
    sage = process.settings(Sage100Settings)
    checks = SageCatalogChecks(_odbc(process, sage, "preflight"), "sage-sink")
    return _login_checked(lambda: checks.tables(sage.tables().values()))()


def read_catalog(process: Process, _request: MetadataRequest) -> PulledMetadata:
    """`sagesf mappings pull --sage`: every table of the layouts as the company's catalog has it."""
    sage = process.settings(Sage100Settings)
    reader = CatalogReader(_odbc(process, sage, "metadata"), source_of(sage))
    return _login_checked(lambda: reader.read(sage.tables().values()))()


def _login_checked(check: Callable[[], T]) -> Callable[[], T]:
    """`check`, with Sage refusing the login (SQLSTATE 28xxx) as a StartupError: the connection
    layer reports it as unavailable, but waiting cannot fix a wrong password."""

    def checked() -> T:
        try:
            return check()
        except SageUnavailable as exc:
            if exc.sqlstate.startswith("28"):
                raise AuthenticationError(
                    f"{ENV_PREFIX}CONNECTION_STRING (or __USER, __PASSWORD): Sage 100 refused the "
                    f"login (SQLSTATE {exc.sqlstate})"
                ) from None
            raise

    return checked


def _odbc(process: Process, sage: Sage100Settings, name: str) -> SageOdbc:
    """An ODBC connection of this process; the string it hands the driver is a secret as a whole
    (a DSN with UID and PWD is assembled here, not set as one variable), so it is masked too."""
    connection_string = sage.odbc_connection_string()
    register_secret(connection_string)
    odbc = SageOdbc(
        connection_string,
        query_timeout=sage.query_timeout,
        login_timeout=sage.login_timeout,
        name=name,
    )
    process.closing(odbc.close, f"the {name} ODBC connection")
    return odbc


SAGE_SOURCE = Component(
    name="sage-source",
    summary="Sage 100 rows changed since the last poll (ODBC) -> canonical records on customer.v1, "
    "item.v1, inventory.v1 and orderstatus.v1.",
    build=build_source,
    settings=(Sage100Settings,),
    once=True,
    replay=build_source_replay,
    preflight=preflight_source,
    load=build_source_load,
    snapshot=build_source_snapshot,
)
SAGE_SINK = Component(
    name="sage-sink",
    summary=f"Commands on {topic_names.SAGE_COMMANDS} written to Sage 100 (ODBC/SQL or BOI), answered on "
    f"{topic_names.SAGE_RESULTS}; credit checks on {topic_names.CREDIT_REQUESTS} answered on "
    f"{topic_names.CREDIT_REPLIES}.",
    build=build_sink,
    settings=(Sage100Settings, SageSinkSettings),
    preflight=preflight_sink,
    metadata=read_catalog,
)
