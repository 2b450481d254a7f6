"""The standard `UserRecordAccess` object: whether one user may read or edit given records.

What it owns: `RecordAccess.answer(text)`, which answers a SOQL query FROM UserRecordAccess in
the one shape Salesforce accepts (None for a query of any other object):

    SELECT RecordId, HasReadAccess, HasEditAccess FROM UserRecordAccess
    WHERE UserId = '005...' AND RecordId IN ('001...', ...)      (or RecordId = '001...')

UserId is required and single; RecordId is `=` or `IN` of at most 200 IDs; the select list takes
RecordId, HasReadAccess, HasEditAccess. Anything else is refused with MALFORMED_QUERY.

How access is decided, from the object's org-wide default (`sharing_model`, which the admin API's
`POST /admin/sharing` may change at run time): ReadWrite -> read and edit for everyone; Read ->
read for everyone, edit for the owner; Private -> read and edit only for the record's owner
(OwnerId) and for users with View All Data. The emulator has no profiles: the first configured
user (the integration user, as the admin API's defaults have it) is the one with View All Data.
A record that does not exist or is deleted is answered with no access, as Salesforce answers an
ID the user cannot see. There are no sharing rules, roles or teams.

Limits: only this check knows the sharing model. Ordinary queries, REST reads and change events
still ignore it (the hide-records fault stands in for sharing there).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.salesforce import ids
from sandbox.salesforce.records import RecordStore
from sandbox.salesforce.soql import BoolOp, Comparison, FieldRef, Literal, Select, SoqlSyntaxError, parse
from sandbox.salesforce.values import ApiError

OBJECT = "UserRecordAccess"
MAX_RECORD_IDS = 200
COLUMNS = {"recordid": "RecordId", "hasreadaccess": "HasReadAccess", "haseditaccess": "HasEditAccess"}


def _malformed(message: str) -> ApiError:
    return ApiError("MALFORMED_QUERY", message)


@dataclass
class RecordAccess:
    store: RecordStore
    view_all_users: frozenset[str]  # user IDs with View All Data

    def answer(self, text: str) -> list[dict[str, Any]] | None:
        """The rows of a UserRecordAccess query, None when `text` queries another object."""
        if OBJECT.lower() not in text.lower():
            return None  # not parsed twice: the ordinary path parses every other query
        try:
            select = parse(text)
        except SoqlSyntaxError:
            return None  # the ordinary path answers the syntax error
        if select.sobject.lower() != OBJECT.lower():
            return None
        columns = self._columns(select)
        user_id, record_ids = self._filter(select)
        return [self._row(user_id, record_id, columns) for record_id in record_ids]

    @staticmethod
    def _columns(select: Select) -> list[str]:
        if select.order or select.limit is not None or select.offset is not None:
            raise _malformed(f"{OBJECT} supports no ORDER BY, LIMIT or OFFSET")
        columns = []
        for item in select.items:
            name = COLUMNS.get(item.text.lower()) if isinstance(item, FieldRef) else None
            if name is None:
                raise _malformed(f"{OBJECT} selects only {', '.join(COLUMNS.values())}")
            columns.append(name)
        return columns

    @staticmethod
    def _filter(select: Select) -> tuple[str, list[str]]:
        """(UserId, RecordIds) of `WHERE UserId = '...' AND RecordId IN (...)`."""
        where = select.where
        parts = where.operands if isinstance(where, BoolOp) and where.op == "AND" else [where]
        user: list[str] = []
        records: list[str] = []
        for part in parts:
            if not isinstance(part, Comparison):
                raise _malformed(f"{OBJECT} is filtered by UserId = and RecordId = or IN, joined by AND")
            name = part.field.text.lower()
            if name == "userid" and part.op == "=" and isinstance(part.value, Literal) and not user:
                user.append(_id(part.value))
            elif name == "recordid" and part.op in ("=", "IN") and not records:
                values = part.value if isinstance(part.value, list) else [part.value]
                records = [_id(v) for v in values if isinstance(v, Literal)]
                if len(records) != len(values):
                    raise _malformed(f"{OBJECT}: RecordId IN takes a list of IDs")
            else:
                raise _malformed(f"{OBJECT} is filtered by one UserId = and one RecordId = or IN")
        if not user:
            raise _malformed(f"{OBJECT}: the query must filter on one UserId")
        if not records:
            raise _malformed(f"{OBJECT}: the query must filter on RecordId")
        if len(records) > MAX_RECORD_IDS:
            raise _malformed(f"{OBJECT}: at most {MAX_RECORD_IDS} RecordId values may be queried")
        return user[0], records

    def _row(self, user_id: str, record_id: str, columns: list[str]) -> dict[str, Any]:
        read, edit = self.access(user_id, record_id)
        values = {"RecordId": record_id, "HasReadAccess": read, "HasEditAccess": edit}
        return {"attributes": {"type": OBJECT}, **{c: values[c] for c in columns}}

    def access(self, user_id: str, record_id: str) -> tuple[bool, bool]:
        """(read, edit) of the user on the record, by its object's org-wide default."""
        rec = self.store.get(record_id)
        obj = self.store.schema.by_prefix(ids.key_prefix(record_id))
        if rec is None or obj is None or rec.get("IsDeleted"):
            return False, False
        privileged = user_id in self.view_all_users or rec.get("OwnerId") == user_id
        if obj.sharing_model == "ReadWrite":
            return True, True
        if obj.sharing_model == "Read":
            return True, privileged
        return privileged, privileged


def _id(value: Literal) -> str:
    normal = ids.normalize(value.value) if value.kind == "string" else None
    if normal is None:
        raise ApiError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {value.raw}")
    return normal
