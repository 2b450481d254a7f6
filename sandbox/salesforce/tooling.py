"""The emulator's Tooling API: which objects are selected for Change Data Capture, and nothing else.

What it owns: `GET /services/data/vNN.N/tooling/query?q=SELECT <fields> FROM
PlatformEventChannelMember`, answered as Salesforce answers a Tooling query: one member of the
standard `ChangeEvents` channel per object the org selected (the sfdx project's
platformEventChannelMembers/, see org_metadata.py), with `Id`, `DeveloperName`
(`ChangeEvents_AccountChangeEvent`), `EventChannel` and `SelectedEntity` (`AccountChangeEvent`).
`sagesf preflight salesforce` reads it to check the channels the source subscribes to.

Limits: that query only (no WHERE, ORDER BY or other Tooling objects: 400 MALFORMED_QUERY or
INVALID_TYPE). Salesforce requires View Setup and Configuration for it; the emulator has no
permissions and answers every user. `EventChannel` is the channel's name here.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from sandbox.salesforce import ids
from sandbox.salesforce.org import Org, RestFailure
from sandbox.salesforce.values import ApiError

__all__ = ["ToolingApi"]

MEMBERS = "PlatformEventChannelMember"
_FIELDS = ("Id", "DeveloperName", "EventChannel", "SelectedEntity")
_QUERY = re.compile(
    r"^\s*SELECT\s+(?P<fields>\w+(?:\s*,\s*\w+)*)\s+FROM\s+(?P<object>\w+)\s*$", re.IGNORECASE
)
_KEY_PREFIX = "0v8"  # PlatformEventChannelMember's
ANSWERED = "SELECT Id, DeveloperName, EventChannel, SelectedEntity FROM PlatformEventChannelMember"


class ToolingApi:
    def __init__(self, org: Org) -> None:
        self.org = org

    def register(self, app: web.Application) -> None:
        """Mount the route; call before the REST catch-all under /services/data is added."""
        app.router.add_get(r"/services/data/v{version:\d+\.\d}/tooling/query{slash:/?}", self.query)

    async def query(self, request: web.Request) -> web.Response:
        try:
            fields = self._fields(request.query.get("q", ""))
        except RestFailure as failure:
            return failure.response()
        records = [
            self._member(request, number, entity, fields) for number, entity in enumerate(self._selected())
        ]
        return web.json_response(
            {
                "size": len(records),
                "totalSize": len(records),
                "done": True,
                "queryLocator": None,
                "entityTypeName": MEMBERS,
                "records": records,
            }
        )

    def _fields(self, soql: str) -> list[str]:
        found = _QUERY.match(soql)
        if found is None:
            raise RestFailure(
                400,
                ApiError(
                    "MALFORMED_QUERY",
                    f"the emulator's Tooling API answers one query: {ANSWERED}",
                ),
            )
        if found["object"].lower() != MEMBERS.lower():
            raise RestFailure(
                400, ApiError("INVALID_TYPE", f"sObject type '{found['object']}' is not supported.")
            )
        fields = [name.strip() for name in found["fields"].split(",")]
        by_lower = {name.lower(): name for name in _FIELDS}
        unknown = [name for name in fields if name.lower() not in by_lower]
        if unknown:
            raise RestFailure(
                400, ApiError("INVALID_FIELD", f"No such column '{unknown[0]}' on entity '{MEMBERS}'.")
            )
        return [by_lower[name.lower()] for name in fields]

    def _selected(self) -> list[str]:
        schema = self.org.schema
        return [obj.name for obj in schema.sobjects() if schema.has_change_events(obj.name)]

    def _member(self, request: web.Request, number: int, entity: str, fields: list[str]) -> dict[str, Any]:
        event = (entity[:-1] if entity.endswith("__c") else entity) + "ChangeEvent"
        record_id = ids.make_id(_KEY_PREFIX, number + 1)
        values = {
            "Id": record_id,
            "DeveloperName": f"ChangeEvents_{event}",
            "EventChannel": "ChangeEvents",
            "SelectedEntity": event,
        }
        url = f"/services/data/v{request.match_info['version']}/tooling/sobjects/{MEMBERS}/{record_id}"
        return {"attributes": {"type": MEMBERS, "url": url}, **{name: values[name] for name in fields}}
