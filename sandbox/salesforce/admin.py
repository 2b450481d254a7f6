"""The emulator's admin API: limits, faults, tokens and org facts for tests and operators.

Not part of Salesforce: these routes let a test or an operator drive every failure the connectors
must survive. JSON in, JSON out, no authentication (the emulator listens on 127.0.0.1). Requests to
`/admin` are never counted against the API limit and never hit by faults.

| route | body | effect |
|---|---|---|
| `GET /admin` | | this table as JSON |
| `GET /admin/health` | | 200 `{"status": "ok", ...}` once the emulator serves |
| `GET /admin/info` | | instance URL, org id, API version, users (username -> id), client ids |
| `GET /admin/api-usage` | | `{"used": N, "max": M}`: the rolling 24 h REST request count |
| `PUT /admin/api-usage` | `{"used"?: N, "max"?: M}` | set the count and/or the daily limit |
| `GET /admin/faults` | | the faults switched on now |
| `POST /admin/faults/storm` | `{"seconds": S}` | 403 REQUEST_LIMIT_EXCEEDED on every REST request for S s |
| `POST /admin/faults/errors` | `{"count": N, "status": 500 or 503}` | fail the next N REST requests |
| `POST /admin/faults/latency` | `{"ms": N}` | delay every REST request by N ms (0 clears) |
| `POST /admin/faults/query-refusal` | `{"object", "errorCode", "field"?}` | refuse its queries (3) |
| `POST /admin/faults/hide-records` | `{"ids": [...], "username"?: U}` | leave them out of U's queries (4) |
| `DELETE /admin/faults` | | clear all faults |
| `POST /admin/sharing` | `{"object", "sharingModel"}` | the org-wide default (5) |
| `POST /admin/tokens/expire` | | expire every access token: next calls get 401 INVALID_SESSION_ID |
| `POST /admin/oauth/refresh-token` | `{"client_id", "username"}` | issue a refresh token (1) |
| `POST /admin/undelete` | `{"ids": [...], "username"?: U, "client"?: C}` | restore; emits UNDELETE (2) |

(1) stands in for the one-time browser consent of the web-server flow. (2) Salesforce's Recycle
Bin; the REST API has no undelete, so this is how tests and operators trigger one. It acts as
`username` (default: the first configured user) with no client option, like a user in the UI,
unless `client` names the `Sforce-Call-Options` client to record as the change's origin.
(3) errorCode INSUFFICIENT_ACCESS answers 403 (the user lost its permission on the object),
INVALID_FIELD answers 400 naming `field` (a field the query reads was deleted); for every user,
until `DELETE /admin/faults`. (4) As sharing hides records a user may not see: `username`
(default: the first configured user, the integration user) no longer finds them with query or
queryAll; other users, REST rows by ID and change events still see them.
(5) Private, Read or ReadWrite, as Setup > Sharing Settings sets it, until the emulator restarts:
only `UserRecordAccess` follows it (record_access.py), ordinary queries do not enforce sharing.

The streaming half adds its own routes (drop clients, gap and overflow events) under `/admin/`.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from sandbox.salesforce import ids
from sandbox.salesforce.limits import QUERY_REFUSALS
from sandbox.salesforce.metadata import SHARING_MODELS
from sandbox.salesforce.org import Org
from sandbox.salesforce.values import RecordError

ROUTES = [
    ("GET", "/admin", "this list"),
    ("GET", "/admin/health", "liveness and record count"),
    ("GET", "/admin/info", "instance URL, org id, API version, users, client ids"),
    ("GET", "/admin/api-usage", "rolling 24 h REST request count and the daily limit"),
    ("PUT", "/admin/api-usage", "set used and/or max"),
    ("GET", "/admin/faults", "active faults"),
    ("POST", "/admin/faults/storm", "{seconds}: 403 REQUEST_LIMIT_EXCEEDED on every REST request"),
    ("POST", "/admin/faults/errors", "{count, status}: fail the next N REST requests with 500/503"),
    ("POST", "/admin/faults/latency", "{ms}: delay every REST request"),
    (
        "POST",
        "/admin/faults/query-refusal",
        "{object, errorCode, field?}: 403 INSUFFICIENT_ACCESS / 400 INVALID_FIELD",
    ),
    ("POST", "/admin/faults/hide-records", "{ids, username?}: leave records out of that user's queries"),
    ("DELETE", "/admin/faults", "clear all faults"),
    ("POST", "/admin/sharing", "{object, sharingModel}: the org-wide default UserRecordAccess follows"),
    ("POST", "/admin/tokens/expire", "expire all access tokens (401 INVALID_SESSION_ID)"),
    ("POST", "/admin/oauth/refresh-token", "{client_id, username}: issue a refresh token"),
    ("POST", "/admin/undelete", "{ids, username?, client?}: restore deleted records, emitting UNDELETE"),
]


def _bad(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=f'{{"error": "{message}"}}', content_type="application/json")


async def _body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        raise _bad("the body must be JSON") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    return body


def _number(body: dict[str, Any], key: str, default: float | None = None) -> float:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _bad(f"{key} must be a non-negative number")
    return float(value)


class AdminApi:
    def __init__(self, org: Org) -> None:
        self.org = org

    def register(self, app: web.Application) -> None:
        router = app.router
        router.add_get("/admin", self.index)
        router.add_get("/admin/health", self.health)
        router.add_get("/admin/info", self.info)
        router.add_get("/admin/api-usage", self.get_usage)
        router.add_put("/admin/api-usage", self.set_usage)
        router.add_get("/admin/faults", self.get_faults)
        router.add_delete("/admin/faults", self.clear_faults)
        router.add_post("/admin/faults/storm", self.storm)
        router.add_post("/admin/faults/errors", self.errors)
        router.add_post("/admin/faults/latency", self.latency)
        router.add_post("/admin/faults/query-refusal", self.query_refusal)
        router.add_post("/admin/faults/hide-records", self.hide_records)
        router.add_post("/admin/sharing", self.sharing)
        router.add_post("/admin/tokens/expire", self.expire_tokens)
        router.add_post("/admin/oauth/refresh-token", self.refresh_token)
        router.add_post("/admin/undelete", self.undelete)

    async def index(self, request: web.Request) -> web.Response:
        return web.json_response([{"method": m, "path": p, "what": w} for m, p, w in ROUTES])

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "records": self.org.store.count()})

    async def info(self, request: web.Request) -> web.Response:
        config = self.org.config
        return web.json_response(
            {
                "instance_url": config.instance_url,
                "org_id": self.org.store.org_id,
                "api_version": config.api_version,
                "users": self.org.users,
                "client_ids": [app.client_id for app in config.apps],
            }
        )

    async def get_usage(self, request: web.Request) -> web.Response:
        usage = self.org.usage
        return web.json_response({"used": usage.used(), "max": usage.limit})

    async def set_usage(self, request: web.Request) -> web.Response:
        body = await _body(request)
        usage = self.org.usage
        if "max" in body:
            usage.limit = int(_number(body, "max"))
        if "used" in body:
            usage.set_used(int(_number(body, "used")))
        return web.json_response({"used": usage.used(), "max": usage.limit})

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.org.faults.describe())

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.org.faults.clear()
        return web.json_response(self.org.faults.describe())

    async def storm(self, request: web.Request) -> web.Response:
        seconds = _number(await _body(request), "seconds")
        self.org.faults.storm_until = time.monotonic() + seconds
        return web.json_response(self.org.faults.describe())

    async def errors(self, request: web.Request) -> web.Response:
        body = await _body(request)
        status = int(_number(body, "status", 500))
        if status not in (500, 502, 503, 504):
            raise _bad("status must be 500, 502, 503 or 504")
        self.org.faults.fail_next = int(_number(body, "count", 1))
        self.org.faults.fail_status = status
        return web.json_response(self.org.faults.describe())

    async def latency(self, request: web.Request) -> web.Response:
        self.org.faults.latency_seconds = _number(await _body(request), "ms") / 1000
        return web.json_response(self.org.faults.describe())

    async def query_refusal(self, request: web.Request) -> web.Response:
        body = await _body(request)
        obj = self.org.schema.get(str(body.get("object", "")))
        if obj is None or obj.is_event:
            raise _bad("object must name an object of the org")
        code = body.get("errorCode")
        if code not in QUERY_REFUSALS:
            raise _bad(f"errorCode must be one of {', '.join(QUERY_REFUSALS)}")
        field = body.get("field")
        if field is not None and not isinstance(field, str):
            raise _bad("field must be a field name")
        self.org.faults.query_refusals[obj.name] = (code, field)
        return web.json_response(self.org.faults.describe())

    async def hide_records(self, request: web.Request) -> web.Response:
        record_ids, user_id = self._ids_and_user(await _body(request))
        normal = [ids.normalize(i) for i in record_ids]
        if not all(normal):
            raise _bad("ids must be 15 or 18 character record ids")
        self.org.faults.hidden.setdefault(user_id, set()).update(n for n in normal if n)
        return web.json_response(self.org.faults.describe())

    def _ids_and_user(self, body: dict[str, Any]) -> tuple[list[str], str]:
        """The body's `ids` and the Id of its `username` (default: the first configured user)."""
        record_ids = body.get("ids")
        if not isinstance(record_ids, list) or not all(isinstance(i, str) for i in record_ids):
            raise _bad("ids must be a list of record ids")
        username = body.get("username") or next(iter(self.org.users))
        if username not in self.org.users:
            raise _bad("unknown username")
        return record_ids, self.org.users[username]

    async def sharing(self, request: web.Request) -> web.Response:
        body = await _body(request)
        obj = self.org.schema.get(str(body.get("object", "")))
        model = body.get("sharingModel")
        if obj is None or obj.is_event:
            raise _bad("object must name an object of the org")
        if model not in SHARING_MODELS:
            raise _bad(f"sharingModel must be one of {sorted(SHARING_MODELS)}")
        obj.sharing_model = model
        return web.json_response({"object": obj.name, "sharingModel": model})

    async def expire_tokens(self, request: web.Request) -> web.Response:
        return web.json_response({"expired": self.org.tokens.expire_all()})

    async def refresh_token(self, request: web.Request) -> web.Response:
        body = await _body(request)
        client_id = str(body.get("client_id", ""))
        username = str(body.get("username", ""))
        if client_id not in {app.client_id for app in self.org.config.apps}:
            raise _bad("unknown client_id")
        if username not in self.org.users:
            raise _bad("unknown username")
        token = self.org.tokens.issue_refresh(self.org.users[username], client_id)
        return web.json_response({"refresh_token": token})

    async def undelete(self, request: web.Request) -> web.Response:
        body = await _body(request)
        record_ids, user_id = self._ids_and_user(body)
        client = body.get("client")
        if client is not None and not isinstance(client, str):
            raise _bad("client must be a string")
        tx = self.org.store.begin(user_id, client or None)
        results: list[dict[str, Any]] = []
        for record_id in record_ids:
            point = tx.savepoint()
            try:
                restored = tx.undelete(record_id)
            except RecordError as err:
                tx.rollback_to(point)
                results.append(
                    {"id": record_id, "success": False, "errors": [e.result() for e in err.errors]}
                )
                continue
            results.append({"id": restored, "success": True, "errors": []})
        self.org.commit_and_publish(tx.commit())
        return web.json_response(results)
