"""Salesforce Streaming API for the emulator: Bayeux/CometD long-polling at `/cometd/NN.N`.

What it owns: the `POST /cometd/{version}` endpoint that unmodified CometD clients
(aiosfstream-ng, EMP Connector) talk to, the in-memory streaming client sessions, and the admin
routes that break streaming on purpose.

How it works (Salesforce's dialect of Bayeux 1.0, long-polling only):
- Every request carries `Authorization: Bearer <token>` (or `OAuth <token>`), checked with the
  app's `authenticate(token) -> user id | None` on every request. The body is a JSON array of
  messages (a single object is accepted too); over 32,768 bytes gets HTTP 413.
- `/meta/handshake` answers a clientId, `supportedConnectionTypes: ["long-polling"]` and
  `ext: {"replay": true, "payload.format": true}`. A bad token gets `403::Handshake denied` with
  `ext.sfdc.failureReason` `401::Authentication invalid` (or `401::Request requires
  authentication` when no token was sent) and `advice.reconnect: none`.
- `/meta/subscribe` reads the replay extension `ext.replay[<channel>]`: -1 (also the default)
  delivers only events published after the subscription, -2 every retained event, a replay ID
  the events after it. An ID that is not retained (unknown, or purged by the retention window)
  is refused with `400::The replayId {N} you provided was invalid.  Please provide a valid ID,
  -2 to replay all events, or -1 to replay only new events.` (Salesforce's wording, two spaces
  included). Channels: `/data/ChangeEvents`, `/data/<Object>ChangeEvent`,
  `/data/<Custom>__ChangeEvent`, `/event/<Name>__e`; others get `400::The channel you requested
  to subscribe to does not exist {<channel>}` (a `channel_exists` callback narrows this to the
  objects and platform events the org declares).
- `/meta/connect`: the first one after a handshake answers at once with advice
  `{interval: 0, timeout: <connect timeout ms>, reconnect: retry}`, and so does one that carries
  `advice.timeout: 0`; later ones are held until an event for one of the client's subscriptions
  exists, or the timeout passes. Events ride in the same response array as the connect reply,
  up to `max_batch` per response, in replay ID order per channel; the client's position per
  subscription moves only past what was sent. A held connect re-checks the token every
  `auth_check_interval_s` (Salesforce "regularly validates the OAuth token") and answers
  `401::Authentication invalid` with `advice.reconnect: none` once it expired. A second connect
  for the same client releases the held one.
- An unknown client id (dropped by the admin route, timed out after `max_interval_s` without a
  connect, or from before a restart) gets `403::Unknown client` with `advice.reconnect:
  handshake` on connect, subscribe, unsubscribe and disconnect.
- Replies echo `id` and `channel`, always carry `successful`, Content-Type application/json.

Admin routes (sandbox only, no authentication; JSON in and out):
- `POST /admin/streaming/drop-clients` -> `{"dropped": n}`: forget every streaming client; held
  connects answer `403::Unknown client` at once, so clients re-handshake and resubscribe.
- `POST /admin/streaming/gap` `{"entity": "Account", "changeType": "GAP_UPDATE",
  "recordIds": ["001..."], "commitUser": "005..." (optional)}` -> `{"replayId": N}`; with
  `"changeType": "GAP_OVERFLOW"` no recordIds are needed.
- `POST /admin/streaming/inject` `{"channel": "/data/AccountChangeEvent", "data": {...}}` ->
  `{"replayId": N}`: an event whose body is `data` exactly as given, malformed or not (fuzzing).
- `POST /admin/streaming/age-out` `{"beforeReplayId": N}` -> `{"purged": n}`: every event below
  N is gone, as if older than the retention window.
- `POST /admin/streaming/settings` `{"connectTimeoutMs", "maxIntervalMs", "maxBatch"}` (any of
  them) -> the settings now in force.
- `GET /admin/streaming/clients` -> the live clients, their user and subscriptions.

Limits (where the emulator differs from Salesforce):
- No websocket or callback-polling transports (Salesforce has none either), no session cookie
  (`BAYEUX_BROWSER`) stickiness and so no "no cookie present" error, no PushTopics (`/topic/`)
  or generic streaming (`/u/`), no event filtering on custom channels (`/event/*__chn`).
- CometD publish is refused (`403::Publish denied`); Salesforce also publishes platform events
  only through its REST/SOAP APIs.
- No per-org client or subscription limits, no daily event delivery allocation.
- Client sessions live in memory: a restart drops them all (a client that comes back gets
  `403::Unknown client` and re-handshakes), while the event log and its replay IDs survive.
- After a 401 the client session is kept, so a connect resent with a fresh token carries on;
  Salesforce may instead end the session (the client then re-handshakes after a 403).
- Replay IDs are one sequence across channels (see events.py).
- Error texts checked against Salesforce's documentation or its observed answers: the replayId,
  Unknown client, Handshake denied, Authentication invalid, Request requires authentication,
  unsupported API version and unknown channel errors. The emulator's own wording (no source
  found): `413::Request Entity Too Large`, `403::Publish denied`, `400::Unknown channel`,
  `400::Invalid JSON`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from aiohttp import web

from sandbox.salesforce.cdc import DEFAULT_API_VERSION, GAP_TYPES, gap_change
from sandbox.salesforce.events import EventLog

log = logging.getLogger("sandbox.salesforce.streaming")

MAX_BODY_BYTES = 32_768
MIN_API_VERSION = 37.0
DEFAULT_GAP_USER = "005000000000001AAA"

_VERSION = re.compile(r"^\d{2,3}\.\d$")
_CHANNEL = re.compile(r"^/(data/(ChangeEvents|\w+ChangeEvent)|event/\w+__e)$")
_ID_ALPHABET = string.ascii_lowercase + string.digits

Message = dict[str, Any]


@dataclass
class StreamingSettings:
    connect_timeout_s: float = 110.0  # how long a /meta/connect is held (Salesforce: 110 s)
    max_interval_s: float = 40.0  # a client that does not reconnect within this is dropped
    max_batch: int = 1000  # events in one /meta/connect response
    auth_check_interval_s: float = 1.0  # how often a held connect re-validates its token


@dataclass
class _Client:
    id: str
    user: str
    subscriptions: dict[str, int] = field(default_factory=dict)  # channel -> last replay id sent
    connected: bool = False  # the first connect after the handshake has been answered
    dropped: bool = False
    connect_seq: int = 0
    held: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    waiters: set[asyncio.Event] = field(default_factory=set)

    def wake(self) -> None:
        for waiter in self.waiters:
            waiter.set()


def setup(
    app: web.Application,
    events: EventLog,
    authenticate: Callable[[str], str | None],
    *,
    channel_exists: Callable[[str], bool] | None = None,
    settings: StreamingSettings | None = None,
) -> StreamingServer:
    """Mount `POST /cometd/{version}` and the streaming admin routes on `app`.

    `authenticate(access_token)` returns the user id, or None for an invalid or expired token.
    `channel_exists(channel)` (optional) refuses subscriptions to objects or platform events
    the org does not have; without it any well-formed channel name is accepted.
    """
    server = StreamingServer(events, authenticate, channel_exists, settings or StreamingSettings())
    app[STREAMING_KEY] = server
    app.router.add_post("/cometd/{version}", server.handle)
    app.router.add_post("/admin/streaming/drop-clients", server.admin_drop_clients)
    app.router.add_post("/admin/streaming/gap", server.admin_gap)
    app.router.add_post("/admin/streaming/inject", server.admin_inject)
    app.router.add_post("/admin/streaming/age-out", server.admin_age_out)
    app.router.add_post("/admin/streaming/settings", server.admin_settings)
    app.router.add_get("/admin/streaming/clients", server.admin_clients)
    app.on_shutdown.append(server.on_shutdown)
    return server


def _reply(message: Message, successful: bool, **extra: Any) -> Message:
    reply: Message = {"channel": message.get("channel")}
    if "id" in message:
        reply["id"] = message["id"]
    reply.update(extra)
    reply["successful"] = successful
    return reply


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json")


class StreamingServer:
    """The CometD endpoint's state: client sessions and their subscription positions."""

    def __init__(
        self,
        events: EventLog,
        authenticate: Callable[[str], str | None],
        channel_exists: Callable[[str], bool] | None,
        settings: StreamingSettings,
    ) -> None:
        self.events = events
        self.settings = settings
        self._authenticate = authenticate
        self._channel_exists = channel_exists
        self._clients: dict[str, _Client] = {}
        self._closing = False

    # -- the endpoint ----------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            parsed = json.loads(raw) if raw else []
        except ValueError:
            parsed = None
        items: list[Any] = parsed if isinstance(parsed, list) else [parsed]
        messages: list[Message] = [m for m in items if isinstance(m, dict)]
        if len(messages) != len(items) or not messages:
            messages = [{"channel": None}]
            if len(raw) <= MAX_BODY_BYTES:
                return _json([_reply(messages[0], False, error="400::Invalid JSON")], 400)
        if len(raw) > MAX_BODY_BYTES:
            error = "413::Request Entity Too Large"
            return _json([_reply(m, False, error=error) for m in messages], 413)
        version = request.match_info["version"]
        if not _VERSION.match(version) or float(version) < MIN_API_VERSION:
            error = (
                "400::Unsupported API version. Only API versions '37.0' and later are supported. "
                f"URI format: '/cometd/{DEFAULT_API_VERSION}'"
            )
            return _json([_reply(m, False, error=error) for m in messages], 400)

        token = _bearer(request)
        user = self._authenticate(token) if token else None
        self._sweep()

        replies: list[Message | None] = [None] * len(messages)
        deliveries: list[str] = []
        connect_at: int | None = None
        for index, message in enumerate(messages):
            if message.get("channel") == "/meta/connect" and connect_at is None:
                connect_at = index  # answered last: it may be held
                continue
            replies[index] = self._dispatch(message, token, user)
        if connect_at is not None:
            reply, deliveries = await self._connect(messages[connect_at], token, user)
            replies[connect_at] = reply
        parts = [json.dumps(reply) for reply in replies if reply is not None]
        return web.Response(text="[" + ",".join(parts + deliveries) + "]", content_type="application/json")

    def _dispatch(self, message: Message, token: str | None, user: str | None) -> Message:
        channel = message.get("channel")
        if channel == "/meta/handshake":
            return self._handshake(message, token, user)
        if channel == "/meta/connect":
            return _reply(message, False, error="400::Only one /meta/connect per request")
        if user is None:
            return self._auth_error(message, token)
        if channel in ("/meta/subscribe", "/meta/unsubscribe", "/meta/disconnect"):
            client = self._clients.get(str(message.get("clientId")))
            if client is None:
                return self._unknown_client(message)
            client.last_seen = time.monotonic()
            if channel == "/meta/subscribe":
                return self._subscribe(message, client)
            if channel == "/meta/unsubscribe":
                return self._unsubscribe(message, client)
            return self._disconnect(message, client)
        if isinstance(channel, str) and channel.startswith("/meta/"):
            return _reply(message, False, error=f"400::Unknown channel {{{channel}}}")
        return _reply(message, False, error="403::Publish denied")

    def _handshake(self, message: Message, token: str | None, user: str | None) -> Message:
        if user is None:
            reason = "401::Authentication invalid" if token else "401::Request requires authentication"
            return _reply(
                message,
                False,
                error="403::Handshake denied",
                ext={"sfdc": {"failureReason": reason}},
                advice={"reconnect": "none"},
            )
        types = message.get("supportedConnectionTypes") or []
        if "long-polling" not in types:
            error = f"400::Invalid connection type {{{','.join(map(str, types))}}}"
            return _reply(message, False, error=error)
        client = _Client(id="".join(secrets.choice(_ID_ALPHABET) for _ in range(27)), user=user)
        self._clients[client.id] = client
        log.info("streaming client %s handshake for user %s", client.id, user)
        return _reply(
            message,
            True,
            version="1.0",
            minimumVersion="1.0",
            clientId=client.id,
            supportedConnectionTypes=["long-polling"],
            ext={"replay": True, "payload.format": True},
        )

    def _subscribe(self, message: Message, client: _Client) -> Message:
        channel = message.get("subscription")
        if not channel:
            return _reply(message, False, clientId=client.id, error="400::Channel name not specified")
        if not isinstance(channel, str) or not channel.startswith("/"):
            error = "400::Channel subscriptions must start with a leading '/'"
            return _reply(message, False, clientId=client.id, subscription=channel, error=error)
        if not _CHANNEL.match(channel) or (
            self._channel_exists is not None and not self._channel_exists(channel)
        ):
            error = f"400::The channel you requested to subscribe to does not exist {{{channel}}}"
            return _reply(message, False, clientId=client.id, subscription=channel, error=error)
        replay_map = (message.get("ext") or {}).get("replay") or {}
        replay = replay_map.get(channel, -1) if isinstance(replay_map, dict) else -1
        if replay == -1:
            cursor = self.events.last_replay_id
        elif replay == -2:
            cursor = 0
        elif isinstance(replay, int) and not isinstance(replay, bool) and self.events.is_retained(replay):
            cursor = replay
        else:
            error = (
                f"400::The replayId {{{replay}}} you provided was invalid.  Please provide a valid ID, "
                "-2 to replay all events, or -1 to replay only new events."
            )
            return _reply(message, False, clientId=client.id, subscription=channel, error=error)
        client.subscriptions[channel] = cursor
        client.wake()  # a held connect may now have a backlog to deliver
        log.info("streaming client %s subscribed to %s from replay id %s", client.id, channel, replay)
        return _reply(message, True, clientId=client.id, subscription=channel)

    def _unsubscribe(self, message: Message, client: _Client) -> Message:
        channel = message.get("subscription")
        client.subscriptions.pop(str(channel), None)
        return _reply(message, True, clientId=client.id, subscription=channel)

    def _disconnect(self, message: Message, client: _Client) -> Message:
        self._drop(client)
        log.info("streaming client %s disconnected", client.id)
        return _reply(message, True, clientId=client.id)

    async def _connect(
        self, message: Message, token: str | None, user: str | None
    ) -> tuple[Message, list[str]]:
        if user is None:
            return self._auth_error(message, token), []
        client = self._clients.get(str(message.get("clientId")))
        if client is None:
            return self._unknown_client(message), []
        if message.get("connectionType") not in (None, "long-polling"):
            error = f"400::Invalid connection type {{{message.get('connectionType')}}}"
            return _reply(message, False, clientId=client.id, error=error), []
        client.last_seen = time.monotonic()
        if not client.connected:
            client.connected = True
            advice = {
                "interval": 0,
                "timeout": int(self.settings.connect_timeout_s * 1000),
                "reconnect": "retry",
            }
            return _reply(message, True, clientId=client.id, advice=advice), self._collect(client)

        advised = message.get("advice")
        if isinstance(advised, dict) and advised.get("timeout") == 0:  # "answer at once", per Bayeux
            return _reply(message, True, clientId=client.id), self._collect(client)
        client.connect_seq += 1
        seq = client.connect_seq
        client.wake()  # release a connect this one replaces
        waiter = asyncio.Event()
        client.waiters.add(waiter)
        self.events.add_listener(waiter)
        client.held += 1
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.connect_timeout_s
        next_auth_check = loop.time() + self.settings.auth_check_interval_s
        try:
            while True:
                waiter.clear()
                if client.dropped:
                    return self._unknown_client(message), []
                if self._closing or seq != client.connect_seq:
                    return _reply(message, True, clientId=client.id), []
                deliveries = self._collect(client)
                now = loop.time()
                if deliveries or now >= deadline:
                    return _reply(message, True, clientId=client.id), deliveries
                if now >= next_auth_check:
                    next_auth_check = now + self.settings.auth_check_interval_s
                    if token is None or self._authenticate(token) is None:
                        return self._auth_error(message, token), []
                wait = min(deadline, next_auth_check) - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), timeout=max(wait, 0.0))
        finally:
            client.held -= 1
            client.last_seen = time.monotonic()
            client.waiters.discard(waiter)
            self.events.remove_listener(waiter)

    def _collect(self, client: _Client) -> list[str]:
        """The client's pending events as JSON texts; moves its positions past them."""
        budget = self.settings.max_batch
        out: list[str] = []
        for channel, cursor in list(client.subscriptions.items()):
            if budget <= 0:
                break
            found = self.events.events_after(channel, cursor, budget)
            if not found:
                continue
            prefix = '{"channel":' + json.dumps(channel) + ',"data":'
            out.extend(prefix + event.data_json + "}" for event in found)
            client.subscriptions[channel] = found[-1].replay_id
            budget -= len(found)
        return out

    # -- errors and client bookkeeping -----------------------------------------------------

    def _auth_error(self, message: Message, token: str | None) -> Message:
        error = "401::Authentication invalid" if token else "401::Request requires authentication"
        extra: dict[str, Any] = {"advice": {"reconnect": "none", "interval": 0}}
        if "clientId" in message:
            extra["clientId"] = message["clientId"]
        return _reply(message, False, error=error, **extra)

    def _unknown_client(self, message: Message) -> Message:
        extra: dict[str, Any] = {"advice": {"reconnect": "handshake", "interval": 0}}
        if "clientId" in message:
            extra["clientId"] = message["clientId"]
        if "subscription" in message:
            extra["subscription"] = message["subscription"]
        return _reply(message, False, error="403::Unknown client", **extra)

    def _drop(self, client: _Client) -> None:
        client.dropped = True
        self._clients.pop(client.id, None)
        client.wake()

    def _sweep(self) -> None:
        """Forget clients that stopped reconnecting, as a CometD server times them out."""
        limit = time.monotonic() - self.settings.max_interval_s
        for client in list(self._clients.values()):
            if client.held == 0 and client.last_seen < limit:
                log.info("streaming client %s timed out", client.id)
                self._drop(client)

    def drop_all(self) -> int:
        clients = list(self._clients.values())
        for client in clients:
            self._drop(client)
        return len(clients)

    async def on_shutdown(self, _app: web.Application) -> None:
        self._closing = True
        for client in list(self._clients.values()):
            client.wake()

    # -- admin routes ----------------------------------------------------------------------

    async def admin_drop_clients(self, _request: web.Request) -> web.Response:
        dropped = self.drop_all()
        log.info("admin dropped %d streaming clients", dropped)
        return _json({"dropped": dropped})

    async def admin_gap(self, request: web.Request) -> web.Response:
        body = await _admin_body(request)
        entity, kind = body.get("entity"), body.get("changeType")
        if not isinstance(entity, str) or not entity or kind not in GAP_TYPES:
            return _json({"error": f"entity and changeType (one of {', '.join(GAP_TYPES)}) are needed"}, 400)
        record_ids = body.get("recordIds") or []
        if not isinstance(record_ids, list) or not all(isinstance(r, str) for r in record_ids):
            return _json({"error": "recordIds must be a list of record ids"}, 400)
        try:
            user = str(body.get("commitUser") or DEFAULT_GAP_USER)
            change = gap_change(entity, str(kind), record_ids, user)
        except ValueError as error:
            return _json({"error": str(error)}, 400)
        return _json({"replayId": self.events.record_change(change)})

    async def admin_inject(self, request: web.Request) -> web.Response:
        body = await _admin_body(request)
        channel, data = body.get("channel"), body.get("data")
        if not isinstance(channel, str) or not channel.startswith(("/data/", "/event/")):
            return _json({"error": "channel must be a /data/... or /event/... channel"}, 400)
        if not isinstance(data, dict):
            return _json({"error": "data must be a JSON object (the event's body)"}, 400)
        return _json({"replayId": self.events.inject(channel, data)})

    async def admin_age_out(self, request: web.Request) -> web.Response:
        body = await _admin_body(request)
        before = body.get("beforeReplayId")
        if not isinstance(before, int) or isinstance(before, bool):
            return _json({"error": "beforeReplayId (an integer) is needed"}, 400)
        return _json({"purged": self.events.age_out(before)})

    async def admin_settings(self, request: web.Request) -> web.Response:
        body = await _admin_body(request)
        for key, attr, scale in (
            ("connectTimeoutMs", "connect_timeout_s", 1000.0),
            ("maxIntervalMs", "max_interval_s", 1000.0),
        ):
            if key in body:
                value = body[key]
                if not isinstance(value, int | float) or value <= 0:
                    return _json({"error": f"{key} must be a positive number"}, 400)
                setattr(self.settings, attr, value / scale)
        if "maxBatch" in body:
            if not isinstance(body["maxBatch"], int) or body["maxBatch"] <= 0:
                return _json({"error": "maxBatch must be a positive integer"}, 400)
            self.settings.max_batch = body["maxBatch"]
        return _json(asdict(self.settings))

    async def admin_clients(self, _request: web.Request) -> web.Response:
        clients = [
            {"clientId": c.id, "user": c.user, "subscriptions": dict(c.subscriptions), "held": c.held}
            for c in self._clients.values()
        ]
        return _json({"clients": clients, "lastReplayId": self.events.last_replay_id})


STREAMING_KEY = web.AppKey("sagesf.salesforce.streaming", StreamingServer)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and token.strip():
        return token.strip()
    return None


async def _admin_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


__all__ = ["STREAMING_KEY", "StreamingServer", "StreamingSettings", "setup"]
