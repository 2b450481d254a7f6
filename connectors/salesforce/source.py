"""The Salesforce CDC source: change and platform events -> canonical records (`SalesforceCdcSource`).

It is a sagesf.source `Source` (`sagesf run salesforce-source` drives it with the core
SourceLoop). What it owns: `SalesforceSourceSettings` (env prefix `SAGESF_SALESFORCE__SOURCE__`;
the org, login and our Sforce-Call-Options client come from the shared `SalesforceSettings`,
`SAGESF_SALESFORCE__*`), and the streaming: subscribe with aiosfstream-ng to the configured
channels (CDC `/data/<Object>ChangeEvent` or `/data/ChangeEvents`, platform events
`/event/<Name>__e`) on a thread of its own, gather delivered events into small batches, and hand
each to `read()`, where the `ChangeReader` (connectors/salesforce/change_reader.py) turns it into
what the loop publishes before it stores the replay IDs.

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
- Failures while handling a batch: `Backpressure` (REQUEST_LIMIT_EXCEEDED on a read) and
  `Retriable` (Salesforce 5xx, Kafka not acknowledging, the registry down) go to the loop, which
  waits or backs off and asks again: the batch stays in hand until its checkpoint is stored.
  Anything else re-runs the batch one message at a time and dead-letters the message that still
  fails, so one poison event cannot stop the stream. Meanwhile aiocometd keeps its connection and
  buffers up to `max_pending` events (the streaming thread waits for each batch's checkpoint).
- /metrics and /healthz (sagesf.metrics): components `salesforce-streaming` (connected or not),
  `salesforce-source` (degraded while a batch is being retried or paused; unhealthy when events
  wait and none was handled for 120 s). Metrics: connectors/salesforce/source_metrics.py.

Limits: one process per org and component name (positions have one writer); events are handled
in delivery order, one batch at a time. The Pub/Sub API (gRPC) is not supported: the streaming
transport is aiosfstream's Bayeux long-polling; `ChangeReader` takes plain messages, so another
transport could feed it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiosfstream_ng.client import ReplayMarkerStoragePolicy
from aiosfstream_ng.exceptions import AiosfstreamException, ServerError
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.salesforce.change_reader import ChangeReader
from connectors.salesforce.client import SalesforceConnection, is_user_id
from connectors.salesforce.mapping_reload import SourceMappingReload
from connectors.salesforce.replay_storage import PositionReplayStorage
from connectors.salesforce.source_mapping import DEFAULT_MAPPING_FILE, SourceMapping
from connectors.salesforce.source_metrics import BATCH_SECONDS
from connectors.salesforce.streaming_client import ConnectionAuthenticator, StreamingClient
from sagesf import topic_names
from sagesf.config import ConfigError
from sagesf.errors import Backpressure, Retriable, StartupError
from sagesf.metrics import Health
from sagesf.retry import RetryPolicy
from sagesf.source import SourceBatch

log = logging.getLogger(__name__)

__all__ = [
    "ENV_PREFIX",
    "ChannelRefused",
    "SalesforceCdcSource",
    "SalesforceSourceSettings",
    "check_channels",
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
    positions_topic: str = topic_names.POSITIONS
    dead_letter_topic: str = topic_names.dead_letter_topic(SOURCE)
    # changeOrigin clients whose changes are echoes, besides SAGESF_SALESFORCE__CALL_OPTIONS_CLIENT
    echo_clients: list[str] = Field(default_factory=list)
    # users (Ids) whose changes with such a client are echoes, besides the logged-in integration user
    echo_users: list[str] = Field(default_factory=list)
    start_lookback_seconds: float = Field(default=60.0, ge=0)  # first start: events since now minus this
    overflow_lookback_seconds: float = Field(default=300.0, ge=0)  # GAP_OVERFLOW: re-read since commit - this
    max_batch: int = Field(default=500, ge=1)  # events handled (and checkpointed) together at most
    batch_linger: float = Field(default=0.02, ge=0)  # seconds to wait for more events after the first
    max_pending: int = Field(default=1000, ge=1)  # events aiocometd buffers before pausing its connect
    read_batch_size: int = Field(default=200, ge=1, le=200)  # record IDs per SOQL query
    connection_timeout: float = Field(default=30.0, gt=0)  # lost connection: give up and reconnect after
    produce_timeout: float = Field(default=60.0, gt=0)
    check_fields: bool = True  # check the mapped fields against the org at start-up
    # seconds between looks for an edited mapping_file (reloaded between batches); 0: never
    mapping_reload_interval: float = Field(default=10.0, ge=0)
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

    @field_validator("echo_users")
    @classmethod
    def _users(cls, users: list[str]) -> list[str]:
        bad = [u for u in users if not is_user_id(u)]
        if bad:
            raise ValueError(f"{bad} are not Salesforce user Ids (005 and 12 or 15 more letters and digits)")
        return users


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


class ChannelRefused(StartupError):
    """The server refused a subscription for good (unknown channel, no permission)."""


@dataclass
class _Work:
    """Something the streaming thread hands over: a delivered batch, or a catch-up read it needs
    done before it subscribes again. `done` resolves once all of it is published and checkpointed."""

    messages: list[dict[str, Any]] = field(default_factory=list)
    catch_up: tuple[str, int] | None = None  # (channel, since ms)
    done: concurrent.futures.Future[None] = field(default_factory=concurrent.futures.Future)


class SalesforceCdcSource:
    """The streaming source (see the module doc): `start()`, then the loop calls `read()`."""

    name = SOURCE

    def __init__(
        self,
        settings: SalesforceSourceSettings,
        connection: SalesforceConnection,
        changes: ChangeReader,
        storage: PositionReplayStorage,
        health: Health | None = None,
        mapping_reload: SourceMappingReload | None = None,
    ) -> None:
        self.settings = settings
        self.connection = connection
        self.changes = changes
        self.storage = storage
        self.health = health or Health()
        self.mapping_reload = mapping_reload
        self.retry = RetryPolicy(initial=settings.retry_initial, maximum=settings.retry_maximum)
        self._handed: queue.Queue[_Work] = queue.Queue()
        self._in_hand: _Work | None = None  # taken, not yet checkpointed: handled again after a failure
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._failure: BaseException | None = None

    # --- the source ---------------------------------------------------------------------------

    def start(self) -> None:
        """Give new channels their by-time start position, then start streaming on a thread."""
        self.storage.start(self.settings.channels, self.settings.start_lookback_seconds)
        self._thread = threading.Thread(target=self._stream_thread, name="salesforce-streaming", daemon=True)
        self._thread.start()

    def read(self) -> Iterator[SourceBatch]:
        """The next delivered batch (waiting up to a second for one) as batches to publish."""
        if self._failure is not None:
            raise self._failure
        work = self._in_hand
        if work is None and self.mapping_reload is not None:
            self.mapping_reload.reload_if_edited()  # between batches: none is half handled
        if work is None:
            try:
                work = self._in_hand = self._handed.get(timeout=1.0)
            except queue.Empty:
                return
        if work.catch_up is not None:
            channel, since = work.catch_up
            yield from self.changes.catch_up(channel, since, "replay_id_invalid")
        else:
            yield from self._messages(work.messages)
        # the loop asks for more only after committing every batch above: all of it is stored
        self._in_hand = None
        work.done.set_result(None)

    def _messages(self, messages: list[dict[str, Any]]) -> Iterator[SourceBatch]:
        try:
            with BATCH_SECONDS.time():
                yield from self.changes.read(messages)
        except (Retriable, Backpressure):
            raise
        except Exception as exc:
            if len(messages) == 1:
                log.exception("dead-lettering an event the source cannot handle")
                yield self.changes.reject(messages[0], exc)
                return
            log.warning("batch failed unexpectedly (%s): handling its events one by one", exc)
            for message in messages:
                yield from self._messages([message])

    def close(self) -> None:
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended between the check and the call
                self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(timeout=30)

    # --- the streaming thread -----------------------------------------------------------------

    def _stream_thread(self) -> None:
        try:
            asyncio.run(self._stream())
        except BaseException as exc:  # noqa: BLE001 - handed to the loop's thread, which raises it
            log.error("streaming stopped: %s", exc)
            self._failure = exc

    async def _stream(self) -> None:
        self._loop = asyncio.get_running_loop()
        stop = self._stopping = asyncio.Event()
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

    def _client(self) -> StreamingClient:
        return StreamingClient(
            ConnectionAuthenticator(self.connection),
            replay=self.storage,
            replay_storage_policy=ReplayMarkerStoragePolicy.MANUAL,
            connection_timeout=self.settings.connection_timeout,
            max_pending_count=self.settings.max_pending,
        )

    async def _hand_over(self, work: _Work) -> None:
        """Give `work` to the loop's thread and wait until it is published and checkpointed."""
        assert self._stopping is not None
        self._handed.put(work)
        handled: asyncio.Future[Any] = asyncio.wrap_future(work.done)
        stopping: asyncio.Future[Any] = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({handled, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()

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
                    f"{ENV_PREFIX}CHANNELS: Salesforce refused the subscription to {channel}: {exc.error}"
                ) from exc
        position = self.storage.position(channel)
        since = position.checkpoint_ms if position is not None else 0
        log.warning(
            "the stored replay ID of %s is outside retention: reading records modified since %s",
            channel,
            datetime.fromtimestamp(since / 1000, UTC).isoformat(),
        )
        await self._hand_over(_Work(catch_up=(channel, since)))
        await client.subscribe(channel)

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
                await self._hand_over(_Work(messages=await self._more(client, first)))
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


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
