"""Whether a Salesforce command is older than the record it would write: replays never regress Salesforce.

Owns `StaleGuard`: which commands are checked, the SOQL query that checks them, the rule that
finds a record newer, and the version field stamped on every write of a guarded object.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from connectors.salesforce.budget import ApiBudget
from connectors.salesforce.client import SalesforceConnection
from connectors.salesforce.commands import Operation, SalesforceCommand, Write
from connectors.salesforce.errors import from_exception
from connectors.salesforce.metrics import STALE_CHECKED, STALE_COMMANDS
from connectors.salesforce.soql import id_list, identifier
from sagesf.errors import Permanent
from sagesf.stale import Stale

log = logging.getLogger(__name__)

__all__ = ["CHECK_CHUNK", "StaleGuard"]

CHECK_CHUNK = 200  # records per query: as many as one sObject Collections write


class StaleGuard:
    """Keeps old commands from overwriting newer changes of guarded objects (`objects`).

    Which commands are checked: an UPDATE or UPSERT of a guarded object with a source_event_time
    that is older than `check_after`, or that came back from a dead letter (the sink passes
    those, `__sagesf.replayed.from`). Live traffic is seconds old and costs nothing; a replay, a
    repair, a re-read source record or a sink that lagged behind costs one query per object and
    200 records (`SELECT Id, LastModifiedDate, LastModifiedById, <key>, <version> ... WHERE <key>
    IN (...)`), about as much as the write itself. An UPSERT that matches no record creates one
    and is not stale.

    The rule: a record is newer than a command when
    1. its version field (`version_field`, Sage_Synced_At__c: the source event time of the last
       change the sink wrote, stamped by `stamp` on every write) is later than the command's
       source_event_time: the sink wrote a newer change from the source already; or
    2. someone other than the integration user changed it last and its LastModifiedDate is later
       than the command's source_event_time by more than `tolerance`: a user or another system
       changed it after the change the command carries.
    Equal is not newer: a redelivery of the change the record holds is written again
    (idempotently). The integration's own LastModifiedDate is never compared: it is when the sink
    wrote, not when the change happened, so a sink that lagged behind would lose the second of
    two changes to the first. The tolerance covers the clocks of the source (Sage's server) and
    of Salesforce, which stamp the two times.

    Why both: LastModifiedDate alone cannot order the integration's own writes, and the version
    alone does not see a user's edit. Neither knows fields: a record changed after the command is
    newer whatever fields either touched, so guard only objects whose synced fields users edit
    too (Account by default; not Product2 stock or order write-backs, which only the integration
    writes and whose records users edit for other reasons). An object without the version field
    in the org (checked by describe at start-up) is guarded by rule 2 alone.
    """

    def __init__(
        self,
        connection: SalesforceConnection,
        budget: ApiBudget,
        *,
        objects: Iterable[str],
        version_field: str | None,
        check_after: timedelta,
        tolerance: timedelta,
        rate_limit_pause: float = 60.0,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.conn = connection
        self.budget = budget
        self.objects = {identifier(o).lower(): o for o in objects}
        self.version_field = identifier(version_field) if version_field else None
        self.versioned: set[str] = set()  # guarded objects that have the version field
        self.check_after = check_after
        self.tolerance = tolerance
        self.rate_limit_pause = rate_limit_pause
        self.clock = clock

    def check_fields(self) -> None:
        """At start-up: which guarded objects have the version field (one describe per object)."""
        if self.version_field is None:
            return
        for lowered, name in self.objects.items():
            described = self._call(
                functools.partial(self.conn.sf.restful, f"sobjects/{name}/describe"), "describe"
            )
            fields = {str(f.get("name", "")).lower() for f in described.get("fields", [])}
            if self.version_field.lower() in fields:
                self.versioned.add(lowered)
            else:
                log.warning(
                    "%s has no field %s: old commands are checked against other users' changes only, "
                    "not against newer changes the sink wrote (add the field; see docs/architecture.md)",
                    name,
                    self.version_field,
                )

    # --- the version -------------------------------------------------------------------------

    def stamp(self, writes: Sequence[Write]) -> None:
        """Set the version field of each write of a versioned object to its latest source event."""
        for w in writes:
            if w.source_event_time is None or w.operation is Operation.INSERT:
                continue
            field = self.version_field
            if field and w.sobject.lower() in self.versioned and _field(w.fields, field) is None:
                w.fields[field] = _iso(w.source_event_time)

    # --- the check ---------------------------------------------------------------------------

    def stale(
        self, commands: Sequence[tuple[int, SalesforceCommand]], replayed: set[int]
    ) -> dict[int, Stale]:
        """The commands (by position) that must not be written, each with why. Raises what the
        query raised (Backpressure, Retriable); a query Salesforce refuses for good is logged and
        checks nothing (the commands are written, as before the guard)."""
        now = self.clock()
        groups: dict[tuple[str, str], list[tuple[int, SalesforceCommand]]] = {}
        for position, command in commands:
            if self._checked(command, position in replayed, now):
                group = (command.sobject.lower(), command.key_field)
                groups.setdefault(group, []).append((position, command))
        found: dict[int, Stale] = {}
        for (lowered, key_field), members in groups.items():
            keys = sorted({_key(c.operation, c.key_value) for _, c in members})
            records: dict[str, Mapping[str, Any]] = {}
            for start in range(0, len(keys), CHECK_CHUNK):
                chunk = keys[start : start + CHECK_CHUNK]
                records.update(self._records(self.objects[lowered], key_field, members, chunk))
            STALE_CHECKED.labels(self.objects[lowered]).inc(len(members))
            for position, command in members:
                record = records.get(_key(command.operation, command.key_value))
                stale = self._newer(command, record) if record is not None else None
                if stale is not None:
                    STALE_COMMANDS.labels(command.sobject, stale.compared_with.split(".", 1)[1]).inc()
                    found[position] = stale
        return found

    def _checked(self, command: SalesforceCommand, replayed: bool, now: datetime) -> bool:
        when = command.source_event_time
        if when is None or command.operation is Operation.INSERT:
            return False
        if command.sobject.lower() not in self.objects:
            return False
        return replayed or now - _aware(when) > self.check_after

    def _records(
        self,
        sobject: str,
        key_field: str,
        members: Sequence[tuple[int, SalesforceCommand]],
        keys: Sequence[str],
    ) -> dict[str, Mapping[str, Any]]:
        """The records whose key is one of `keys`, by key (one query)."""
        spelled = {_key(c.operation, c.key_value): c.key_value for _, c in members}
        columns = ["Id", "LastModifiedDate", "LastModifiedById"]
        if key_field != "Id":
            columns.append(identifier(key_field))
        if self.version_field and sobject.lower() in self.versioned:
            columns.append(self.version_field)
        soql = (
            f"SELECT {', '.join(columns)} FROM {identifier(sobject)} "  # noqa: S608 - names checked, values quoted
            f"WHERE {identifier(key_field)} IN {id_list(spelled[k] for k in keys)}"
        )
        operation = members[0][1].operation
        answer = self._call(lambda: self.conn.sf.query_all(soql), f"stale check on {sobject}")
        return {_key(operation, str(_field(r, key_field) or "")): r for r in answer.get("records", [])}

    def _call(self, call: Callable[[], Any], what: str) -> Any:
        self.budget.check()
        try:
            return call()
        except Exception as exc:
            error = from_exception(exc, rate_limit_pause=self.rate_limit_pause, what=what)
            if isinstance(error, Permanent):
                log.warning("%s refused, nothing checked: %s", what, error)
                return {}
            if error is exc:
                raise
            raise error from exc

    def _newer(self, command: SalesforceCommand, record: Mapping[str, Any]) -> Stale | None:
        assert command.source_event_time is not None
        when = _aware(command.source_event_time)
        name = command.sobject
        if self.version_field and name.lower() in self.versioned:
            version = _parse(_field(record, self.version_field))
            if version is not None and version > when:
                reason = f"the sink already wrote a newer change of it, made at {_iso(version)}"
                return self._stale(command, when, version, f"{name}.{self.version_field}", reason)
        changed = _parse(record.get("LastModifiedDate"))
        editor = str(record.get("LastModifiedById") or "")
        if changed is None or editor[:15] == self.conn.user_id[:15]:
            return None
        if changed - when > self.tolerance:
            reason = f"user {editor} changed it at {_iso(changed)}"
            return self._stale(command, when, changed, f"{name}.LastModifiedDate", reason)
        return None

    @staticmethod
    def _stale(command: SalesforceCommand, when: datetime, newer: datetime, field: str, why: str) -> Stale:
        record = f"{command.sobject} {command.key_value}"
        return Stale(
            reason=f"{record} holds a newer change: {why}, after this change ({_iso(when)}); not written",
            source_event_time=when,
            target_time=newer,
            compared_with=field,
        )


def _key(operation: Operation, value: str) -> str:
    """How Salesforce compares record keys: IDs by their first 15 characters, external IDs
    case-insensitively (commands.SalesforceCommand.identity)."""
    return value[:15] if operation is Operation.UPDATE else value.lower()


def _field(record: Mapping[str, Any], name: str) -> Any:
    """A field of a queried record; API names are case-insensitive."""
    if name in record:
        return record[name]
    return next((v for k, v in record.items() if k.lower() == name.lower()), None)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def _parse(value: object) -> datetime | None:
    """A datetime as Salesforce answers it (2024-05-01T19:30:00.000+0000); None when absent."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return _aware(datetime.fromisoformat(value))
    except ValueError:
        return None


def _iso(moment: datetime) -> str:
    """UTC, milliseconds, Z: how a datetime field value travels in a command."""
    return _aware(moment).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
