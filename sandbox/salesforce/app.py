"""The emulator as one aiohttp application: OAuth, REST, Bulk 2.0, limits, admin, streaming.

What it owns: `create_app(config)`, which opens the org's SQLite file (`<data_dir>/org.sqlite3`:
records, tokens, API usage, Bulk jobs), makes sure the configured users and the Standard Price
Book exist, mounts

- `POST /services/oauth2/token` (auth.py),
- `/services/data...` (rest.py; Bulk 2.0 ingest and query jobs in bulk.py; the Tooling API's
  Change Data Capture selection in tooling.py) behind the REST gate below,
- `/admin/...` (admin.py),

and hands the streaming half (sandbox/salesforce/streaming.py, events.py, cdc.py, owned by the
streaming engineer) its `EventLog` (`<data_dir>/events.sqlite3`) and an `authenticate(token) ->
user id | None` callback through `streaming.setup(app, events, authenticate, channel_exists=...)`
(channels are the org's objects' change events and its platform events). Those modules are
imported only if present, so the REST half runs alone; committed changes then go nowhere.

The REST gate runs for every request under /services/data, in this order: added latency; a
rate-limit storm (403 REQUEST_LIMIT_EXCEEDED); a queued 500/503; the bearer token (401
INVALID_SESSION_ID, except for the version list `GET /services/data/`); the daily API limit (403
REQUEST_LIMIT_EXCEEDED); then the request is counted and served. Every response under
/services/data carries `Sforce-Limit-Info: api-usage=<used>/<max>`. An unexpected exception
answers 500 UNKNOWN_EXCEPTION and is logged without request bodies or headers.

Limits: plain HTTP only (clients rewrite https URLs with sandbox/salesforce/client.py); one org.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from sandbox.salesforce.admin import AdminApi
from sandbox.salesforce.auth import OAuthEndpoint, TokenStore
from sandbox.salesforce.bulk import BulkIngest, BulkQuery
from sandbox.salesforce.config import EmulatorConfig, SandboxUser
from sandbox.salesforce.limits import LIMIT_EXCEEDED, SERVER_UNAVAILABLE, UNKNOWN_EXCEPTION, ApiUsage, Faults
from sandbox.salesforce.metadata import OrgSchema
from sandbox.salesforce.org import (
    ORIGIN_CLIENT,
    USER_ID,
    EventLogLike,
    EventSink,
    NullEventSink,
    Org,
    StreamingEventSink,
    call_options_client,
)
from sandbox.salesforce.org_metadata import load_org
from sandbox.salesforce.query import QueryEngine
from sandbox.salesforce.record_access import RecordAccess
from sandbox.salesforce.records import ChangeRecord, RecordStore
from sandbox.salesforce.rest import RestApi
from sandbox.salesforce.tooling import ToolingApi

log = logging.getLogger("sandbox.salesforce")

ORG = web.AppKey("org", Org)
INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]
MAX_BODY = 150 * 1024 * 1024  # Bulk API 2.0 accepts up to 150 MB of CSV per upload
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _optional(module: str) -> ModuleType | None:
    """A module of the streaming half, or None when it is not there (yet)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            return None
        raise


def _ensure_users(store: RecordStore, users: list[SandboxUser]) -> dict[str, str]:
    user_obj = store.schema.objects["User"]
    username = user_obj.fields["Username"]
    found: dict[str, str] = {}
    for user in users:
        existing = store.find_unique(user_obj, username, user.username)
        if existing:
            found[user.username] = existing[0]
            continue
        name = " ".join(p for p in (user.first_name, user.last_name) if p)
        found[user.username] = store.insert_silently(
            user_obj,
            {
                "Username": user.username,
                "FirstName": user.first_name or None,
                "LastName": user.last_name,
                "Name": name,
                "Email": user.email or user.username,
                "IsActive": True,
            },
            user_id="",
        )
    return found


def _ensure_standard_pricebook(store: RecordStore, user_id: str) -> None:
    if any(rec.get("IsStandard") for rec in store.of_type("Pricebook2")):
        return
    store.insert_silently(
        store.schema.objects["Pricebook2"],
        {"Name": "Standard Price Book", "IsActive": True, "IsStandard": True},
        user_id,
    )


def _channel_exists(schema: OrgSchema) -> Callable[[str], bool]:
    """Whether the org has a streaming channel: the change events of the objects selected for
    Change Data Capture, and its platform events."""

    def exists(channel: str) -> bool:
        if channel == "/data/ChangeEvents":
            return True
        if channel.startswith("/data/") and channel.endswith("ChangeEvent"):
            name = channel[len("/data/") : -len("ChangeEvent")]
            name = name + "c" if name.endswith("__") else name  # /data/Foo__ChangeEvent is Foo__c
            return schema.has_change_events(name)
        if channel.startswith("/event/"):
            event = schema.objects.get(channel[len("/event/") :])
            return event is not None and event.is_event
        return False

    return exists


def _rest_gate(org: Org) -> Middleware:
    @web.middleware
    async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith("/services/data"):
            return await handler(request)
        response = await _gated(org, request, handler)
        response.headers["Sforce-Limit-Info"] = org.usage.header()
        return response

    return gate


async def _gated(org: Org, request: web.Request, handler: Handler) -> web.StreamResponse:
    faults = org.faults
    if faults.latency_seconds > 0:
        await asyncio.sleep(faults.latency_seconds)
    if faults.storming():
        return web.json_response(LIMIT_EXCEEDED, status=403)
    failure = faults.take_failure()
    if failure is not None:
        return web.json_response(SERVER_UNAVAILABLE if failure == 503 else UNKNOWN_EXCEPTION, status=failure)
    if request.path.rstrip("/") != "/services/data":
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        user_id = org.tokens.user_for_access(token.strip()) if scheme.lower() in ("bearer", "oauth") else None
        if user_id is None:
            return web.json_response(INVALID_SESSION, status=401, headers={"WWW-Authenticate": "Token"})
        if org.usage.exhausted():
            return web.json_response(LIMIT_EXCEEDED, status=403)
        org.usage.count()
        request[USER_ID] = user_id
        request[ORIGIN_CLIENT] = call_options_client(request) or ""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return web.json_response(UNKNOWN_EXCEPTION, status=500)


def create_app(
    config: EmulatorConfig,
    event_log: EventLogLike | None = None,
    mount_streaming: bool | None = None,
) -> web.Application:
    """The emulator for `config`. `event_log` replaces the streaming half's EventLog (tests);
    streaming routes are mounted when the real EventLog is used, unless `mount_streaming` says."""
    if not config.users:
        raise ValueError("the emulator needs at least one user in its config")
    config.data_dir.mkdir(parents=True, exist_ok=True)
    schema = load_org(config.metadata_path, config.sfdx_project)
    store = RecordStore(schema, config.data_dir / "org.sqlite3")
    users = _ensure_users(store, config.users)
    _ensure_standard_pricebook(store, users[config.users[0].username])
    tokens = TokenStore(store.db, store.org_id, config.session_timeout_seconds)

    cdc = _optional("sandbox.salesforce.cdc")
    make_change: Callable[..., Any] = cdc.Change if cdc is not None else ChangeRecord
    sink: EventSink
    log_to_close: Any = None
    if event_log is None:
        events = _optional("sandbox.salesforce.events")
        if events is not None:
            event_log = events.EventLog(
                config.data_dir / "events.sqlite3", retention_hours=config.event_retention_hours
            )
            log_to_close = event_log
            mount_streaming = True if mount_streaming is None else mount_streaming
    sink = StreamingEventSink(event_log, make_change) if event_log is not None else NullEventSink()

    org = Org(
        config=config,
        schema=schema,
        store=store,
        engine=QueryEngine(store),
        tokens=tokens,
        usage=ApiUsage(store.db, config.api_daily_limit),
        faults=Faults(),
        sink=sink,
        users=users,
        # no profiles here: the first configured user, the integration user, has View All Data
        access=RecordAccess(store, frozenset({users[config.users[0].username]})),
    )
    bulk = BulkIngest(org)
    bulk_query = BulkQuery(org)
    rest = RestApi(org, bulk, bulk_query)
    oauth = OAuthEndpoint(config, tokens, {u.username: (u, users[u.username]) for u in config.users})

    app = web.Application(client_max_size=MAX_BODY, middlewares=[_rest_gate(org)])
    app[ORG] = org
    app.router.add_post("/services/oauth2/token", oauth.token)
    ToolingApi(org).register(app)  # before the catch-all below, which would take its path
    app.router.add_route("*", "/services/data{tail:.*}", rest.handle)
    AdminApi(org).register(app)

    streaming = _optional("sandbox.salesforce.streaming") if mount_streaming else None
    if streaming is not None and event_log is not None:
        streaming.setup(app, event_log, tokens.user_for_access, channel_exists=_channel_exists(schema))

    async def close(app: web.Application) -> None:
        await bulk.close()
        await bulk_query.close()
        closer = getattr(log_to_close, "close", None)
        if callable(closer):
            closer()
        store.close()

    app.on_cleanup.append(close)
    return app
