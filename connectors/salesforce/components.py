"""The Salesforce connector's two processes, as sagesf.runner components: `sagesf run
salesforce-source` and `sagesf run salesforce-sink`. Each builder logs in, assembles the parts
from the settings and hands the core loops a connector role (`SalesforceCdcSource`,
`SalesforceSink`). The source also replays its dead letters (`build_source_replay`, for
`sagesf dlq replay salesforce-source`), loads what the org holds before go-live
(`build_source_load`, for `sagesf load salesforce`) and reads what it holds now for
reconciliation (`build_source_snapshot`, for `sagesf reconcile`); both check the org before going
live (connectors/salesforce/preflight.py, for `sagesf preflight salesforce`).

Both start while Salesforce or the registry is down and say so on /healthz (`Process.wait_for`):
the login (and the source's field check) waits for Salesforce, the output schemas for the
registry. Credentials Salesforce refuses still stop the process (AuthenticationFailed, exit 2)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from connectors.salesforce.budget import ApiBudget
from connectors.salesforce.bulk_query import BulkQuery, RecordShape
from connectors.salesforce.change_reader import ChangeReader
from connectors.salesforce.client import SalesforceConnection, connect
from connectors.salesforce.config import SalesforceSettings
from connectors.salesforce.event_replayer import SalesforceEventReplayer
from connectors.salesforce.initial_load import SalesforceInitialLoad, SalesforceLoadSettings
from connectors.salesforce.mapping_reload import SourceMappingReload
from connectors.salesforce.org_metadata import describe_org
from connectors.salesforce.preflight import check_sink, check_source
from connectors.salesforce.record_mapper import RecordMapper
from connectors.salesforce.record_reader import RecordReader
from connectors.salesforce.replay_storage import PositionReplayStorage
from connectors.salesforce.sink import DEPENDENCY as SALESFORCE
from connectors.salesforce.sink import SalesforceSink
from connectors.salesforce.snapshot import SalesforceSnapshot
from connectors.salesforce.source import SalesforceCdcSource, SalesforceSourceSettings, check_channels
from connectors.salesforce.source_mapping import SourceMapping, load_source_mapping
from connectors.salesforce.stale_guard import StaleGuard
from connectors.salesforce.streaming_client import quiet_close_noise
from connectors.salesforce.writer import SalesforceWriter
from sagesf import topic_names
from sagesf.errors import MappingError
from sagesf.load import InitialLoad, LoadRequest, stored_progress
from sagesf.positions import PositionStore
from sagesf.producer import ConfirmedProducer
from sagesf.publisher import CanonicalPublisher
from sagesf.retry import RetryPolicy
from sagesf.runner import Component, Process
from sagesf.serde import AvroDecoder
from sagesf.sink import SinkLoop
from sagesf.source import Replayer, SourceLoop

__all__ = ["SALESFORCE_SINK", "SALESFORCE_SOURCE", "build_sink_loop", "build_source", "build_stale_guard"]


def build_source(process: Process) -> SourceLoop:
    """The CDC source: the mapping checked against the org and the registry before streaming."""
    salesforce = process.settings(SalesforceSettings)
    settings = process.settings(SalesforceSourceSettings)
    mapping = load_source_mapping(settings.mapping_file)
    check_channels(settings, mapping)
    quiet_close_noise()
    connection = _connect(process, salesforce)
    reader = RecordReader(connection.sf, mapping, settings.read_batch_size)
    if settings.check_fields:
        process.wait_for(SALESFORCE, lambda: _check_fields(reader, settings.mapping_file))
    producer = process.producer()
    publisher = _source_publisher(process, settings, mapping, producer)
    positions = PositionStore(process.core.kafka, settings.component, settings.positions_topic, producer)
    storage = PositionReplayStorage(positions)
    changes = ChangeReader(
        mapping=mapping,
        reader=reader,
        mapper=RecordMapper(mapping),
        storage=storage,
        echo_clients=[salesforce.call_options_client, *settings.echo_clients],
        echo_users=[connection.user_id, *settings.echo_users],
        overflow_lookback_ms=int(settings.overflow_lookback_seconds * 1000),
    )
    reload = SourceMappingReload(
        settings.mapping_file,
        settings.mapping_reload_interval,
        check=lambda fresh: _check_reloaded(fresh, mapping, settings, connection),
        use=changes.use,
        health=process.health,
    )
    source = SalesforceCdcSource(settings, connection, changes, storage, process.health, reload)
    source.start()
    process.closing(source.close, "the streaming client")
    retry = RetryPolicy(initial=settings.retry_initial, maximum=settings.retry_maximum)
    return SourceLoop(source, publisher, positions, health=process.health, retry=retry)


def _source_publisher(
    process: Process, settings: SalesforceSourceSettings, mapping: SourceMapping, producer: ConfirmedProducer
) -> CanonicalPublisher:
    """What the source and its load publish with: the source's topics, dead letters and schemas."""
    return process.publisher(
        SalesforceCdcSource.name,
        producer=producer,
        topics=settings.topics,
        dead_letter_topic=settings.dead_letter_topic,
        timeout=settings.produce_timeout,
        schemas=_published(mapping),
    )


def build_source_replay(process: Process) -> Replayer:
    """The source's dead-lettered events processed again with the mapping in use (logged in, no
    streaming, no position read or stored), published as the source publishes."""
    salesforce = process.settings(SalesforceSettings)
    settings = process.settings(SalesforceSourceSettings)
    mapping = load_source_mapping(settings.mapping_file)
    connection = _connect(process, salesforce)
    events = SalesforceEventReplayer(
        mapping,
        RecordReader(connection.sf, mapping, settings.read_batch_size),
        RecordMapper(mapping),
        echo_clients=[salesforce.call_options_client, *settings.echo_clients],
        echo_users=[connection.user_id, *settings.echo_users],
    )
    publisher = process.publisher(
        SalesforceCdcSource.name,
        topics=settings.topics,
        dead_letter_topic=settings.dead_letter_topic,
        timeout=settings.produce_timeout,
    )
    return Replayer(events.reread, publisher)


def build_source_load(process: Process, request: LoadRequest) -> InitialLoad:
    """The initial load (connectors/salesforce/initial_load.py): the source's mapping, topics and
    dead letters; its progress under `<component>-load` in positions.v1; the hand-over written to
    the source's own positions. The mapped fields are checked against the org first, as the
    source does."""
    salesforce = process.settings(SalesforceSettings)
    settings = process.settings(SalesforceSourceSettings)
    options = process.settings(SalesforceLoadSettings)
    mapping = load_source_mapping(settings.mapping_file)
    connection = _connect(process, salesforce)
    reader = RecordReader(connection.sf, mapping, settings.read_batch_size)
    process.wait_for(SALESFORCE, lambda: _check_fields(reader, settings.mapping_file))
    api = _bulk_query(connection, salesforce, options)
    producer = process.producer()
    publisher = _source_publisher(process, settings, mapping, producer)
    kafka, topic = process.core.kafka, settings.positions_topic
    store = PositionStore(kafka, f"{settings.component}-load", topic, producer)
    stored = stored_progress(store, request, request.options())
    live = PositionStore(kafka, settings.component, topic, producer)
    live.load()
    load = SalesforceInitialLoad(
        mapping=mapping,
        mapper=RecordMapper(mapping),
        api=api,
        shape=RecordShape(lambda entity: api.call("GET", f"sobjects/{entity}/describe").json()),
        request=request,
        stored=stored,
        live_positions=live,
        channels=settings.channels,
        settings=options,
    )
    return InitialLoad(load, publisher, store, load.progress)


def build_source_snapshot(process: Process) -> SalesforceSnapshot:
    """What the org holds now, for reconciliation (connectors/salesforce/snapshot.py): the
    source's mapping, Bulk API 2.0 query jobs as the load runs them, each call counted."""
    salesforce = process.settings(SalesforceSettings)
    settings = process.settings(SalesforceSourceSettings)
    options = process.settings(SalesforceLoadSettings)
    api = _bulk_query(_connect(process, salesforce), salesforce, options)
    calls = _Calls()
    api.conn.add_listener(calls.listener)
    return SalesforceSnapshot(
        mapping=load_source_mapping(settings.mapping_file),
        api=api,
        shape=RecordShape(lambda entity: api.call("GET", f"sobjects/{entity}/describe").json()),
        calls=lambda: calls.made,
        result_set_records=options.result_set_records,
    )


def _bulk_query(
    connection: SalesforceConnection, salesforce: SalesforceSettings, options: SalesforceLoadSettings
) -> BulkQuery:
    """Bulk API 2.0 query jobs on `connection`, under the API budget (the load's and the snapshot's)."""
    return BulkQuery(
        connection,
        _budget(connection, salesforce),
        rate_limit_pause=salesforce.rate_limit_pause,
        poll_interval=options.poll_interval,
        timeout=options.job_timeout,
    )


def _budget(connection: SalesforceConnection, settings: SalesforceSettings) -> ApiBudget:
    """The API budget governor of `connection`, fed by its responses."""
    budget = ApiBudget(settings.api_budget_share, settings.budget_recheck_seconds)
    connection.add_listener(budget.listener)
    return budget


class _Calls:
    """The API calls a connection made (a response listener)."""

    made = 0

    def listener(self, *_: object) -> None:
        self.made += 1


def build_sink_loop(
    process: Process, *, connection: SalesforceConnection | None = None, retry: RetryPolicy | None = None
) -> SinkLoop:
    """The sink's loop; logs in unless given a connection (which the caller then closes)."""
    settings = process.settings(SalesforceSettings)
    conn = connection or _connect(process, settings)
    budget = _budget(conn, settings)
    writer = SalesforceWriter(
        conn,
        budget,
        bulk_threshold=settings.bulk_threshold,
        rate_limit_pause=settings.rate_limit_pause,
        poll_interval=settings.bulk_poll_interval,
        bulk_timeout=settings.bulk_timeout,
    )
    options = settings.sink
    guard = build_stale_guard(conn, budget, settings)
    process.wait_for(SALESFORCE, guard.check_fields)
    sink = SalesforceSink(
        writer=writer, results_topic=options.results_topic, health=process.health, guard=guard
    )
    loop = SinkLoop(
        kafka=process.core.kafka,
        group_id=options.group_id,
        topics=[options.commands_topic],
        sink=sink,
        publisher=process.publisher(
            sink.name,
            dead_letter_topic=options.dead_letter_topic,
            schemas=[(options.results_topic, "SalesforceResult")],
        ),
        decode=AvroDecoder.for_topic(
            process.registry,
            options.commands_topic,
            "SalesforceCommand",
            auto_register=process.core.registry.auto_register,
        ),
        batch_size=settings.max_batch_records,
        batch_timeout=settings.batch_window,
        retry=retry,
        health=process.health,
        extra_config=options.consumer_config,
    )
    process.closing(loop.close, "the sink's consumer")
    return loop


def build_stale_guard(
    conn: SalesforceConnection, budget: ApiBudget, settings: SalesforceSettings
) -> StaleGuard:
    """The sink's check of old and replayed commands, from `SAGESF_SALESFORCE__SINK__*`."""
    options = settings.sink
    return StaleGuard(
        conn,
        budget,
        objects=options.stale_guard_objects,
        version_field=options.version_field,
        check_after=timedelta(seconds=options.stale_check_after),
        tolerance=timedelta(seconds=options.stale_tolerance),
        rate_limit_pause=settings.rate_limit_pause,
    )


def _check_reloaded(
    fresh: SourceMapping,
    started: SourceMapping,
    settings: SalesforceSourceSettings,
    connection: SalesforceConnection,
) -> None:
    """An edited mapping passes the start-up checks (channels, fields against the org) and
    publishes to no topic or record kind the running source was not started with."""
    check_channels(settings, fresh)
    published = set(_published(started))
    new = sorted(f"{kind} on {topic}" for topic, kind in _published(fresh) if (topic, kind) not in published)
    if new:
        raise MappingError([f"{settings.mapping_file}: {', '.join(new)} needs a restart of the source"])
    if settings.check_fields:
        _check_fields(RecordReader(connection.sf, fresh, settings.read_batch_size), settings.mapping_file)


def _published(mapping: SourceMapping) -> list[tuple[str, str]]:
    """(topic, record kind) of everything the mapping produces."""
    return [
        (spec.topic, spec.produces)
        for spec in [*mapping.objects.values(), *mapping.platform_events.values()]
        if spec.topic and spec.produces
    ]


def _check_fields(reader: RecordReader, mapping_file: Path) -> None:
    """The mapped fields against the org; a refusal names the mapping file, as the loader's problems do."""
    try:
        reader.check_fields()
    except MappingError as exc:
        raise MappingError([f"{mapping_file}: {problem}" for problem in exc.problems]) from None


def _connect(process: Process, settings: SalesforceSettings) -> SalesforceConnection:
    """Logged in, once Salesforce answers (AuthenticationUnavailable, a Retriable, until then);
    AuthenticationFailed (a StartupError) when it refuses the credentials."""
    connection = process.wait_for(SALESFORCE, lambda: connect(settings))
    process.closing(connection.close, "the Salesforce connection")
    return connection


SALESFORCE_SOURCE = Component(
    name="salesforce-source",
    summary="Salesforce change data capture and platform events -> canonical records on "
    f"{topic_names.SALES_ORDERS}, {topic_names.CUSTOMERS} and {topic_names.CREDIT_REQUESTS}.",
    build=build_source,
    settings=(SalesforceSettings, SalesforceSourceSettings, SalesforceLoadSettings),
    replay=build_source_replay,
    preflight=check_source,
    load=build_source_load,
    snapshot=build_source_snapshot,
)
SALESFORCE_SINK = Component(
    name="salesforce-sink",
    summary=f"Commands on {topic_names.SALESFORCE_COMMANDS} written to Salesforce (sObject Collections, "
    f"Bulk API 2.0), answered on {topic_names.SALESFORCE_RESULTS}.",
    build=build_sink_loop,
    settings=(SalesforceSettings,),
    preflight=check_sink,
    metadata=describe_org,
)
