"""The Salesforce CDC source: change and platform events -> canonical records in Kafka, as a process.

    python -m connectors.salesforce.source [--log-level INFO]

What it owns: `SalesforceSourceSettings` (env prefix `SAGESF_SALESFORCE__SOURCE__`; the org,
login and our Sforce-Call-Options client come from the shared `SalesforceSettings`,
`SAGESF_SALESFORCE__*`), and `SalesforceCdcSource`, the streaming loop: subscribe with
aiosfstream-ng to the configured channels (CDC `/data/<Object>ChangeEvent` or
`/data/ChangeEvents`, platform events `/event/<Name>__e`), gather delivered events into small
batches and hand each to the `ChangeProcessor` (connectors/salesforce/change_processor.py says
what happens to a batch: read, map, produce, acknowledge, then store the replay IDs).

How it works:
- Replay: the client's replay storage is `PositionReplayStorage` (positions.v1), with
  aiosfstream's MANUAL storing policy: a replay ID is stored only after Kafka acknowledged the
  records of its event, and every (re-)subscribe sends a real position, never the -1 constant
  that skips events after a re-handshake. A channel with no position starts from the time the
  source first ran (minus `start_lookback_seconds`).
- A stored replay ID outside the retention window (`400::The replayId {N} you provided was
  invalid`): the source reads every record of the channel's objects modified since the last
  checkpoint (SystemModstamp, queryAll), produces them, counts it in
  `sagesf_salesforce_catchup_reads_total{reason="replay_id_invalid"}`, and subscribes again
  with -2, skipping retained events older than the checkpoint. aiocometd re-subscribes by
  itself after a re-handshake and silently forgets a subscription the server refuses, so a
  watchdog re-subscribes (through the same path) any channel missing from the client.
- Token expiry: the authenticator (connectors/salesforce/streaming_client.py) renews the shared
  connection's token when the server answers 401/403 and aiocometd re-sends the request, so the
  stream continues where it was. A lost connection, a refused handshake or a server disconnect
  closes the client; a new one re-subscribes from the stored positions after a backoff.
- Failures while handling a batch: `Backpressure` (REQUEST_LIMIT_EXCEEDED on a read) waits
  `retry_after`; `Retriable` (Salesforce 5xx, Kafka not acknowledging, the registry down) retries
  with exponential backoff and jitter; anything else re-runs the batch one message at a time and
  dead-letters the message that still fails, so one poison event cannot stop the stream.
  Meanwhile aiocometd keeps its connection and buffers up to `max_pending` events.
- /metrics and /healthz (sagesf.metrics): components `salesforce-streaming` (connected or not),
  `salesforce` (degraded while Salesforce asks to slow down), `salesforce-source` (degraded while
  a batch is being retried; unhealthy when events wait and none was handled for 120 s).
  Metrics: connectors/salesforce/source_metrics.py.

Limits: one process per org and component name (positions have one writer); events are handled
in delivery order, one batch at a time. The Pub/Sub API (gRPC) is not supported: the streaming
transport is aiosfstream's Bayeux long-polling; `ChangeProcessor` takes plain messages, so
another transport could feed it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosfstream_ng.client import ReplayMarkerStoragePolicy
from aiosfstream_ng.exceptions import AiosfstreamException, ServerError
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.salesforce.change_processor import ChangeProcessor
from connectors.salesforce.client import SalesforceConnection
from connectors.salesforce.replay_storage import PositionReplayStorage
from connectors.salesforce.source_mapping import DEFAULT_MAPPING_FILE, SourceMapping
from connectors.salesforce.source_metrics import BATCH_SECONDS
from connectors.salesforce.streaming_client import ConnectionAuthenticator, StreamingClient, quiet_close_noise
from sagesf.config import ConfigError, describe_validation_error
from sagesf.consumer import RetryPolicy
from sagesf.errors import Backpressure, Retriable
from sagesf.metrics import Health

log = logging.getLogger(__name__)

__all__ = [
    "ENV_PREFIX",
    "ChannelRefused",
    "SalesforceCdcSource",
    "SalesforceSourceSettings",
    "load_source_settings",
    "main",
]

ENV_PREFIX = "SAGESF_SALESFORCE__SOURCE__"
DEFAULT_CHANNELS = [
    *(
        f"/data/{entity}ChangeEvent"
        for entity in (
            "Account",
            "Contact",
            "Opportunity",
            "OpportunityLineItem",
            "Order",
            "OrderItem",
            "Product2",
        )
    ),
    "/event/Credit_Check_Request__e",  # the credit check (request/reply with Sage)
]
_CHANNEL = re.compile(
    r"^/(data/(ChangeEvents|[A-Za-z][A-Za-z0-9_]*ChangeEvent)|event/[A-Za-z][A-Za-z0-9_]*__e)$"
)
STREAMING = "salesforce-streaming"
SOURCE = "salesforce-source"


class SalesforceSourceSettings(BaseSettings):
    """`SAGESF_SALESFORCE__SOURCE__*`: what the CDC source subscribes to and where it writes."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    component: str = "salesforce-source"  # its name in positions.v1 (<component>/<channel>)
    channels: list[str] = Field(default_factory=lambda: list(DEFAULT_CHANNELS))
    mapping_file: Path = DEFAULT_MAPPING_FILE
    # canonical topic name -> the topic to write instead (a tenant prefix, a test's own topics)
    topics: dict[str, str] = Field(default_factory=dict)
    positions_topic: str = "positions.v1"
    dead_letter_topic: str = "dlq.salesforce-source.v1"
    # changeOrigin clients whose changes are echoes, besides SAGESF_SALESFORCE__CALL_OPTIONS_CLIENT
    echo_clients: list[str] = Field(default_factory=list)
    start_lookback_seconds: float = Field(default=60.0, ge=0)  # first start: events since now minus this
    overflow_lookback_seconds: float = Field(default=300.0, ge=0)  # GAP_OVERFLOW: re-read since commit - this
    max_batch: int = Field(default=500, ge=1)  # events handled (and checkpointed) together at most
    batch_linger: float = Field(default=0.02, ge=0)  # seconds to wait for more events after the first
    max_pending: int = Field(default=1000, ge=1)  # events aiocometd buffers before pausing its connect
    read_batch_size: int = Field(default=200, ge=1, le=200)  # record IDs per SOQL query
    connection_timeout: float = Field(default=30.0, gt=0)  # lost connection: give up and reconnect after
    produce_timeout: float = Field(default=60.0, gt=0)
    check_fields: bool = True  # check the mapped fields against the org at start-up
    retry_initial: float = Field(default=0.5, gt=0)
    retry_maximum: float = Field(default=30.0, gt=0)

    @field_validator("channels")
    @classmethod
    def _channels(cls, channels: list[str]) -> list[str]:
        bad = [c for c in channels if not _CHANNEL.match(c)]
        if bad:
            raise ValueError(
                f"{bad} are not streaming channels "
                "(/data/<Object>ChangeEvent, /data/ChangeEvents, /event/<Name>__e)"
            )
        if not channels:
            raise ValueError("subscribe to at least one channel")
        return list(dict.fromkeys(channels))


def load_source_settings(**overrides: Any) -> SalesforceSourceSettings:
    try:
        return SalesforceSourceSettings(_env_file=os.environ.get("SAGESF_ENV_FILE"), **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, ENV_PREFIX)) from None


def check_channels(settings: SalesforceSourceSettings, mapping: SourceMapping) -> None:
    """Every channel must carry something the mapping knows; ConfigError naming the channel otherwise."""
    for channel in settings.channels:
        if channel.startswith("/event/"):
            if channel not in mapping.platform_events:
                raise ConfigError(
                    f"{ENV_PREFIX}CHANNELS: {channel} has no entry under platform_events "
                    f"in {settings.mapping_file}"
                )
        elif channel != "/data/ChangeEvents":
            name = channel.removeprefix("/data/").removesuffix("ChangeEvent")
            entity = name + "c" if name.endswith("__") else name
            if entity not in mapping.objects:
                raise ConfigError(
                    f"{ENV_PREFIX}CHANNELS: {channel} carries {entity}, which has no entry under objects "
                    f"in {settings.mapping_file}"
                )


class ChannelRefused(RuntimeError):
    """The server refused a subscription for good (unknown channel, no permission)."""


class SalesforceCdcSource:
    """The streaming loop (see the module doc); `run(stop)` until `stop` is set."""

    def __init__(
        self,
        settings: SalesforceSourceSettings,
        connection: SalesforceConnection,
        processor: ChangeProcessor,
        storage: PositionReplayStorage,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.processor = processor
        self.storage = storage
        self.health = health or Health()
        self.retry = RetryPolicy(initial=settings.retry_initial, maximum=settings.retry_maximum)
        self._work = asyncio.Lock()  # one batch or catch-up at a time on the worker thread

    def _client(self) -> StreamingClient:
        return StreamingClient(
            ConnectionAuthenticator(self.connection),
            replay=self.storage,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
            connection_timeout=self.settings.connection_timeout,
            max_pending_count=self.settings.max_pending,
        )

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.to_thread(
            self.storage.start, self.settings.channels, self.settings.start_lookback_seconds
        )
        attempt = 0
        while not stop.is_set():
            client = self._client()
            try:
                await client.open()
                for channel in self.settings.channels:
                    await self._subscribe(client, channel)
                self.health.dependency(STREAMING, True)
                log.info("streaming from %s", ", ".join(self.settings.channels))
                attempt = 0
                await self._consume(client, stop)
            except (AiosfstreamException, OSError, Retriable) as exc:
                self.health.dependency(STREAMING, False, f"{type(exc).__name__}: {exc}")
                delay = self.retry.delay(attempt)
                attempt += 1
                log.warning(
                    "streaming interrupted (%s: %s); reconnecting in %.1f s", type(exc).__name__, exc, delay
                )
                await _sleep_unless(stop, delay)
            finally:
                with contextlib.suppress(Exception):
                    await client.close()

    # --- subscriptions ------------------------------------------------------------------------

    async def _subscribe(self, client: StreamingClient, channel: str) -> None:
        try:
            await client.subscribe(channel)
            return
        except ServerError as exc:
            message = str(exc.error_message or exc.error or "")
            if exc.error_code != 400:
                raise  # 401/403 (token, unknown client): the client reconnects
            if "replayid" not in message.replace(" ", "").lower():
                raise ChannelRefused(
                    f"Salesforce refused the subscription to {channel}: {exc.error}"
                ) from exc
        position = self.storage.position(channel)
        since = position.checkpoint_ms if position is not None else 0
        log.warning(
            "the stored replay ID of %s is outside retention: reading records modified since %s",
            channel,
            datetime.fromtimestamp(since / 1000, UTC).isoformat(),
        )
        await self._in_worker(self._catch_up, channel, since)
        await client.subscribe(channel)

    def _catch_up(self, channel: str, since: int) -> None:
        self.processor.catch_up(channel, since, "replay_id_invalid")
        self.storage.restart_by_time(channel)

    async def _watch(self, client: StreamingClient) -> None:
        """Every second: position ages, health, and re-subscribing channels the client lost."""
        while True:
            await asyncio.sleep(1.0)
            self.storage.refresh_age()
            self.health.waiting(SOURCE, client.pending_count)
            missing = [c for c in self.settings.channels if c not in client.subscriptions]
            for channel in missing:
                log.warning(
                    "subscription to %s was lost (refused on re-subscribe): subscribing again", channel
                )
                try:
                    await self._subscribe(client, channel)
                except (AiosfstreamException, Retriable, OSError) as exc:
                    log.warning("re-subscribing %s failed (%s); next try in a second", channel, exc)

    # --- events -------------------------------------------------------------------------------

    async def _consume(self, client: StreamingClient, stop: asyncio.Event) -> None:
        watchdog = asyncio.ensure_future(self._watch(client))
        stopping = asyncio.ensure_future(stop.wait())
        # A pending receive is never cancelled while the client lives: cancelling it could drop a
        # message already taken from aiocometd's queue, and later checkpoints would skip it.
        receive: asyncio.Future[Any] | None = None
        try:
            while not stop.is_set():
                if watchdog.done():
                    watchdog.result()  # a ChannelRefused stops the source
                if receive is None:
                    receive = asyncio.ensure_future(client.receive())
                done, _ = await asyncio.wait(
                    {receive, stopping, watchdog}, timeout=5.0, return_when=asyncio.FIRST_COMPLETED
                )
                if receive not in done:
                    continue
                first, receive = receive.result(), None
                await self._handle(await self._more(client, first), stop)
        finally:
            for task in (watchdog, stopping, receive):
                if task is not None:
                    task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watchdog

    async def _more(self, client: StreamingClient, first: dict[str, Any]) -> list[dict[str, Any]]:
        """`first` and whatever else is buffered or arrives within `batch_linger`, up to max_batch."""
        batch = [first]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.batch_linger
        while len(batch) < self.settings.max_batch:
            if client.pending_count > 0:
                batch.append(await client.receive())  # buffered: returns at once
            elif loop.time() < deadline:
                await asyncio.sleep(0.005)
            else:
                break
        return batch

    async def _handle(self, batch: Sequence[dict[str, Any]], stop: asyncio.Event) -> None:
        """Process a batch, retrying as the error says; returns early (nothing stored) on stop."""
        attempt = 0
        while not stop.is_set():
            try:
                with BATCH_SECONDS.time():
                    await self._in_worker(self.processor.process, batch)
            except Backpressure as exc:
                self.health.dependency("salesforce", False, str(exc))
                log.warning("Salesforce asks to slow down (%s): pausing %.0f s", exc, exc.retry_after)
                await _sleep_unless(stop, exc.retry_after)
                continue
            except Retriable as exc:
                self.health.dependency(SOURCE, False, f"{type(exc).__name__}: {exc}")
                delay = self.retry.delay(attempt)
                attempt += 1
                log.warning("batch of %d events failed (%s); retrying in %.1f s", len(batch), exc, delay)
                await _sleep_unless(stop, delay)
                continue
            except Exception as exc:
                if len(batch) == 1:
                    log.exception("dead-lettering an event the source cannot handle")
                    await self._in_worker(self.processor.reject, batch[0], exc)
                    return
                log.warning("batch failed unexpectedly (%s): handling its events one by one", exc)
                for message in batch:
                    await self._handle([message], stop)
                return
            self.health.dependency("salesforce", True)
            self.health.dependency(SOURCE, True)
            self.health.progress(SOURCE)
            return

    async def _in_worker(self, function: Any, *args: Any) -> None:
        async with self._work:
            await asyncio.to_thread(function, *args)


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# --- the process --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """`python -m connectors.salesforce.source`: run the CDC source until SIGINT/SIGTERM."""
    import argparse

    from confluent_kafka.schema_registry import SchemaRegistryClient

    from connectors.salesforce.auth import AuthenticationFailed
    from connectors.salesforce.change_processor import CanonicalPublisher
    from connectors.salesforce.client import connect
    from connectors.salesforce.config import load_salesforce_settings
    from connectors.salesforce.record_mapper import RecordMapper
    from connectors.salesforce.record_reader import RecordReader
    from connectors.salesforce.source_mapping import MappingError, load_source_mapping
    from sagesf.config import Settings, load_settings
    from sagesf.dlq import DeadLetterWriter
    from sagesf.logs import configure_logging, register_settings_secrets
    from sagesf.metrics import MetricsServer
    from sagesf.positions import PositionStore
    from sagesf.producer import ConfirmedProducer
    from sagesf.serde import SchemaRegistrationError

    parser = argparse.ArgumentParser(
        prog="python -m connectors.salesforce.source", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    configure_logging(args.log_level, component=SOURCE)
    quiet_close_noise()
    try:
        core = load_settings(Settings)
        salesforce = load_salesforce_settings()
        settings = load_source_settings()
        mapping = load_source_mapping(settings.mapping_file)
        check_channels(settings, mapping)
    except (ConfigError, MappingError) as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    register_settings_secrets(core)
    register_settings_secrets(salesforce)

    health = Health()
    server = MetricsServer(health, core.metrics.host, core.metrics.port)
    producer = ConfirmedProducer(core.kafka)
    try:
        try:
            connection = connect(salesforce)
        except AuthenticationFailed as exc:
            log.error("%s", exc)
            raise SystemExit(2) from None
        mapper = RecordMapper(mapping)
        reader = RecordReader(connection.sf, mapping, settings.read_batch_size)
        if settings.check_fields:
            try:
                reader.check_fields()
            except MappingError as exc:
                log.error("%s: %s", settings.mapping_file, exc)
                raise SystemExit(2) from None
        publisher = CanonicalPublisher(
            producer,
            SchemaRegistryClient(core.registry.client_config()),
            DeadLetterWriter(producer, "salesforce-source", settings.dead_letter_topic),
            auto_register=core.registry.auto_register,
            topics=settings.topics,
            timeout=settings.produce_timeout,
        )
        schemas = [
            (s.topic, s.produces) for s in [*mapping.objects.values(), *mapping.platform_events.values()]
        ]
        try:
            publisher.prepare([(topic, schema) for topic, schema in schemas if topic and schema])
        except SchemaRegistrationError as exc:
            log.error("%s", exc)
            raise SystemExit(2) from None
        positions = PositionStore(
            core.kafka, settings.component, topic=settings.positions_topic, producer=producer
        )
        storage = PositionReplayStorage(positions)
        processor = ChangeProcessor(
            mapping=mapping,
            reader=reader,
            mapper=mapper,
            publisher=publisher,
            storage=storage,
            echo_clients=[salesforce.call_options_client, *settings.echo_clients],
            overflow_lookback_ms=int(settings.overflow_lookback_seconds * 1000),
        )
        source = SalesforceCdcSource(settings, connection, processor, storage, health)
        asyncio.run(_run_until_signalled(source))
    except ChannelRefused as exc:
        log.error("%s", exc)
        raise SystemExit(2) from None
    finally:
        producer.close()
        server.stop()


async def _run_until_signalled(source: SalesforceCdcSource) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await source.run(stop)


if __name__ == "__main__":
    main()
