"""One emulated org: the pieces every API surface (REST, Bulk, admin, streaming) shares.

What it owns: `Org`, which holds the schema, the record store, the query engine, tokens, API
usage, faults and the `EventSink` that committed changes and published platform events go to;
`StreamingEventSink` adapts the streaming half's `EventLog` (sandbox/salesforce/events.py) and
`Change` (cdc.py) to it, `NullEventSink` stands in when the streaming half is not installed.
`rest_errors` renders Salesforce's REST error body.

The contract with the streaming half: after every commit, `changes_committed` gets one
`ChangeRecord` per created/updated/deleted/undeleted record, in commit order, and passes each to
`EventLog.record_change(Change(**fields))`; `publish(channel, payload)` passes platform events to
`EventLog.publish`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from sandbox.salesforce.auth import TokenStore
from sandbox.salesforce.config import EmulatorConfig
from sandbox.salesforce.limits import ApiUsage, Faults
from sandbox.salesforce.metadata import ObjectDef, OrgSchema
from sandbox.salesforce.query import QueryEngine, invalid_field
from sandbox.salesforce.record_access import RecordAccess
from sandbox.salesforce.records import ChangeRecord, RecordStore
from sandbox.salesforce.values import ApiError


class EventSink(Protocol):
    def changes_committed(self, changes: Sequence[ChangeRecord]) -> None: ...

    def publish(self, channel: str, payload: dict[str, Any]) -> int | None: ...


class EventLogLike(Protocol):
    """What the streaming half's EventLog offers the REST half."""

    def record_change(self, change: Any) -> int: ...

    def publish(self, channel: str, payload: dict[str, Any]) -> int: ...


class StreamingEventSink:
    """Hands committed changes and platform events to the streaming half's event log."""

    def __init__(self, log: EventLogLike, make_change: Callable[..., Any]) -> None:
        self.log = log
        self.make_change = make_change

    def changes_committed(self, changes: Sequence[ChangeRecord]) -> None:
        made = [self.make_change(**dataclasses.asdict(change)) for change in changes]
        batch = getattr(self.log, "record_changes", None)
        if callable(batch):
            batch(made)  # one SQLite commit for the whole transaction
        else:
            for change in made:
                self.log.record_change(change)

    def publish(self, channel: str, payload: dict[str, Any]) -> int | None:
        return self.log.publish(channel, payload)


class NullEventSink:
    """Used when the streaming half is not installed: changes are counted, then dropped."""

    def __init__(self) -> None:
        self.changes = 0
        self.events = 0

    def changes_committed(self, changes: Sequence[ChangeRecord]) -> None:
        self.changes += len(changes)

    def publish(self, channel: str, payload: dict[str, Any]) -> int | None:
        self.events += 1
        return None


@dataclass
class Org:
    config: EmulatorConfig
    schema: OrgSchema
    store: RecordStore
    engine: QueryEngine
    tokens: TokenStore
    usage: ApiUsage
    faults: Faults
    sink: EventSink
    users: dict[str, str]  # username -> user record id
    access: RecordAccess

    def commit_and_publish(self, changes: Sequence[ChangeRecord]) -> None:
        if changes:
            self.sink.changes_committed(changes)

    def refuse_query(self, obj: ObjectDef) -> None:
        """The admin API's query refusal of this object, as Salesforce answers it (limits.Faults):
        REST queries and Bulk query jobs alike."""
        refusal = self.faults.query_refusal(obj.name)
        if refusal is None:
            return
        code, field = refusal
        if code == "INVALID_FIELD":
            raise RestFailure(400, invalid_field(field or "Deleted_Field__c", obj))
        raise RestFailure(
            403, ApiError(code, f"insufficient access rights on object id: this user cannot query {obj.name}")
        )


def rest_errors(errors: Sequence[ApiError], status: int = 400) -> web.Response:
    return web.json_response([e.rest() for e in errors], status=status)


class RestFailure(Exception):
    """Ends a REST request with Salesforce's error body."""

    def __init__(self, status: int, *errors: ApiError) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.status = status
        self.errors = list(errors)

    def response(self) -> web.Response:
        return rest_errors(self.errors, self.status)


def call_options_client(request: web.Request) -> str | None:
    """The `client=` value of the Sforce-Call-Options header (the changeOrigin of CDC events)."""
    header = request.headers.get("Sforce-Call-Options", "")
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "client" and value.strip():
            return value.strip()
    return None


USER_ID = web.RequestKey("user_id", str)
ORIGIN_CLIENT = web.RequestKey("origin_client", str)  # "" when the caller sent no client= option
API_VERSION = web.RequestKey("api_version", str)  # from the /services/data/vNN.N/ path

NOT_FOUND = ApiError("NOT_FOUND", "The requested resource does not exist")
