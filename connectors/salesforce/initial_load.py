"""The Salesforce initial load: the records an org holds before go-live, published as the CDC source
would publish them, and the hand-over to that source (`sagesf load salesforce`).

What it owns: `SalesforceInitialLoad`, a sagesf.source `Source` the core runs once (sagesf.load
`InitialLoad`), and its settings (`SAGESF_SALESFORCE__LOAD__*`). It reads every object the
source mapping produces records from (mappings/salesforce_source.yaml: Accounts with their
Contacts, Product2, Closed Won Opportunities with their lines, activated Orders with their
items) and maps each record with the source's own `RecordMapper`: the same topics, keys and
values as the live source; event IDs as a catch-up read of the same version gives them.

How it reads, per object, Accounts and Product2 first, orders last:
- `SELECT COUNT()` of what it will load: `SystemModstamp <= T0`, orders only in their `when`
  state (StageName Closed Won, Status Activated) and, with `--since`, dated (the field the
  mapping takes `order_date` from: CloseDate, EffectiveDate) on or after that day;
- up to `bulk_threshold` records: REST queries with the mapping's whole select list (children as
  subqueries, as the live source reads), `ORDER BY Id`, a checkpoint per page storing the last
  Id; a resumed load asks for `Id >` it;
- above it: a Bulk API 2.0 query job (connectors/salesforce/bulk_query.py) for the object's own
  fields and one per child relationship (`... WHERE OpportunityId IN (SELECT Id FROM Opportunity
  WHERE <the same filter>)`, Bulk API 2.0 has no child subqueries); the children wait in a
  temporary SQLite file by parent, and each result set of the parent job (`result_set_records`
  rows) is one checkpoint storing the job and the next set's locator. A resumed load reads the
  same jobs on from there, or starts them again if Salesforce dropped them (7 days).
Each object's progress is stored in positions.v1 under `<source component>-load/object/<Object>`
after Kafka acknowledged its records (the core's SourceLoop order), and `.../run` holds T0 and
the options; a finished load publishes nothing when run again (`--restart` starts over).

The hand-over, and why it has neither a gap nor an overlap: T0 is Salesforce's own clock (the
Date of its first answer, to the second) when the load starts. The load publishes the records
whose SystemModstamp is at or before T0; every CDC channel of the source without a stored
position gets the by-time position T0 + 1 ms (replay_storage `ChannelPosition(None, T0 + 1)`),
so the source, started after the load, subscribes with -2 and publishes the change events
committed after T0 and skips the older ones. A change is in exactly one of the two: committed at
or before T0, its record's SystemModstamp is too and the load has it, and its event is skipped;
committed after T0, the record's SystemModstamp is later than T0 so the load leaves it out
(also when the load reads it later still), and its change event re-reads the record whole.
Nothing older is published again, nothing newer is missed. At the boundary only duplicates are
possible, never a gap: a stamp Salesforce truncates to T0 for a change committed just after it,
or a child (Contact, line) changed after T0 whose parent the load reads with it: its event
re-publishes the parent, as the same or a newer state. A channel that already has a position
keeps it (the source ran before: it goes on from there, so nothing is missed either).

Historical orders: every order the load publishes already has its Sage order, entered by hand
before go-live, unless `--go-live` names a day and the order is dated on or after it. Such
history carries the header `sagesf.history: before-go-live` (sagesf.load), and the processors
record it without ordering it (processors/orders.py), also when the order changes later.

A record that cannot be mapped is dead-lettered (origin `load:<Object>`, the record as JSON,
the history header when it was history) and the load goes on; `sagesf dlq replay
salesforce-source` reads it again after the fix (connectors/salesforce/event_replayer.py).

Limits: platform event channels (credit requests) are not handed over: a request is no state to
load, and the source starts them as it always does. Start the source within the event retention
(72 hours) after T0, or changes in between are lost with the events. Children without an
`order_by` value come in the order Salesforce returns them. PricebookEntry is not loaded: the
mapping produces no record from it (Sage's price is the one the processors use).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.salesforce.bulk_query import BulkQuery, JobGone, RecordShape
from connectors.salesforce.change_events import event_uuid
from connectors.salesforce.record_mapper import RecordMapper, field_value
from connectors.salesforce.replay_storage import ChannelPosition
from connectors.salesforce.soql import identifier, literal, quote
from connectors.salesforce.source import SOURCE
from connectors.salesforce.source_mapping import ChildSpec, ObjectMapping, SourceMapping
from sagesf.dead_letter_writer import FailedRecord
from sagesf.errors import Permanent, SagesfError
from sagesf.load import HISTORY_BEFORE_GO_LIVE, HISTORY_HEADER, RUN_STREAM, LoadProgress, LoadRequest
from sagesf.positions import PositionStore
from sagesf.publisher import CanonicalRecord
from sagesf.source import Rejected, SourceBatch

log = logging.getLogger(__name__)

__all__ = ["LOAD_ORIGIN", "SalesforceInitialLoad", "SalesforceLoadSettings", "is_history"]

LOAD_ORIGIN = "load:"  # dead letters' origin: load:<Object>
HISTORY = ((HISTORY_HEADER, HISTORY_BEFORE_GO_LIVE),)
_IN_LIST = 500  # parent IDs per look-up of spooled children


class SalesforceLoadSettings(BaseSettings):
    """`SAGESF_SALESFORCE__LOAD__*`: how `sagesf load salesforce` reads."""

    model_config = SettingsConfigDict(
        env_prefix="SAGESF_SALESFORCE__LOAD__",
        env_nested_delimiter="__",
        extra="ignore",
        case_sensitive=False,
    )

    bulk_threshold: int = Field(default=2000, ge=0)  # more records of an object: a Bulk API 2.0 query job
    result_set_records: int = Field(default=10_000, ge=1)  # rows per Bulk result set, a checkpoint each
    poll_interval: float = Field(default=1.0, gt=0)  # first poll of a query job; doubles up to 10 s
    job_timeout: float = Field(default=3600.0, gt=0)  # a job still running then is waited for again later


@dataclass
class _Run:
    """The load as a whole (stored under `run`)."""

    t0_ms: int
    since: str | None
    go_live: str | None
    finished: bool = False


@dataclass
class _Object:
    """How far one object got (stored under `object/<Object>`)."""

    via: str = ""  # rest | bulk, chosen by the first count
    total: int | None = None
    published: int = 0
    dead_letters: int = 0
    done: bool = False
    after: str | None = None  # rest: the last Id read (ORDER BY Id)
    job: str | None = None  # bulk: the object's query job
    locator: str | None = ""  # bulk: the next result set to read ("": the first, None: all read)
    children: dict[str, str] = field(default_factory=dict)  # bulk: relationship -> its query job


def is_history(go_live: date | None, order_date: object) -> bool:
    """Whether a loaded order is history: always without a go-live day, else dated before it
    (`order_date`: the text or date Salesforce gives; an order without one is history)."""
    if go_live is None:
        return True
    text = str(order_date or "")[:10]
    try:
        return date.fromisoformat(text) < go_live
    except ValueError:
        return True


class SalesforceInitialLoad:
    """Reads and maps an org's records, object by object (see the module doc)."""

    name = SOURCE

    def __init__(
        self,
        *,
        mapping: SourceMapping,
        mapper: RecordMapper,
        api: BulkQuery,
        shape: RecordShape,
        request: LoadRequest,
        stored: Mapping[str, Any],
        live_positions: PositionStore,
        channels: Sequence[str],
        settings: SalesforceLoadSettings,
        progress: LoadProgress | None = None,
    ) -> None:
        self.mapping = mapping
        self.mapper = mapper
        self.api = api
        self.shape = shape
        self.request = request
        self.live_positions = live_positions
        self.channels = [c for c in channels if c.startswith("/data/")]
        self.settings = settings
        self.progress = progress or LoadProgress()
        run = stored.get(RUN_STREAM)
        self.run: _Run | None = _Run(**run) if isinstance(run, dict) else None
        self.entities = sorted(
            (e for e, obj in mapping.objects.items() if obj.parent is None),
            key=lambda e: mapping.objects[e].when is not None,
        )
        self.objects = {
            entity: _Object(**stored[f"object/{entity}"])
            if isinstance(stored.get(f"object/{entity}"), dict)
            else _Object()
            for entity in self.entities
        }
        for entity, state in self.objects.items():
            self._show(entity, state, resumed=True)

    # --- the source ----------------------------------------------------------------------------

    def read(self) -> Iterator[SourceBatch]:
        """T0 and the hand-over, then every object not done yet, then the load marked finished."""
        if self.run is not None and self.run.finished:
            self.progress.note(f"loaded before (T0 {_shown(self.run.t0_ms)}): nothing to publish")
            return
        if self.run is None:
            options = self.request.options()
            yield self._started(_Run(self._server_now_ms(), options["since"], options["go_live"]))
        assert self.run is not None
        self._hand_over(self.run.t0_ms)
        for entity in self.entities:
            if not self.objects[entity].done:
                yield from self._load(entity)
        yield self._started(_Run(**{**asdict(self.run), "finished": True}))

    def _started(self, run: _Run) -> SourceBatch:
        """The run's state as a checkpoint; this load's from when it is stored."""

        def committed() -> None:
            self.run = run

        return SourceBatch(positions={RUN_STREAM: asdict(run)}, committed=committed)

    def _server_now_ms(self) -> int:
        """T0: Salesforce's clock, to the second (the Date of an answer), so no host clock skew
        can put it after a change Salesforce stamped earlier."""
        answer = self.api.call("GET", "")
        stated = answer.headers.get("Date")
        moment = parsedate_to_datetime(stated) if stated else datetime.now(UTC).replace(microsecond=0)
        return int(moment.timestamp()) * 1000

    def _hand_over(self, t0_ms: int) -> None:
        """Every CDC channel without a position starts after T0 (see the module doc)."""
        fresh = {
            channel: ChannelPosition(None, t0_ms + 1).to_json()
            for channel in self.channels
            if ChannelPosition.from_json(self.live_positions.get(channel)) is None
        }
        if fresh:
            self.live_positions.put_many(fresh)
        kept = [c for c in self.channels if c not in fresh]
        self.progress.note(
            f"hand-over: records with SystemModstamp up to {_shown(t0_ms)} (T0) are loaded; "
            f"{self.live_positions.component} streams {len(fresh)} change event channel(s) from after T0"
            + (f", and {', '.join(kept)} from where it stopped" if kept else "")
        )

    # --- one object ----------------------------------------------------------------------------

    def _load(self, entity: str) -> Iterator[SourceBatch]:
        obj = self.mapping.objects[entity]
        where = self._where(obj)
        state = self.objects[entity]
        if not state.via:
            count = f"SELECT COUNT() FROM {entity} WHERE {where}"  # noqa: S608 - names from the validated mapping, values quoted
            total = int(self.api.call("GET", "query", params={"q": count}).json()["totalSize"])
            state = _Object(via="bulk" if total > self.settings.bulk_threshold else "rest", total=total)
            self.objects[entity] = state
            self._show(entity, state)
        read = self._bulk if state.via == "bulk" else self._rest
        for records, moved in read(entity, obj, where, state):
            yield self._batch(entity, obj, records, moved)
        done = _Object(**{**asdict(self.objects[entity]), "done": True})
        yield self._checkpoint(entity, done, [], [])
        for job in filter(None, [done.job, *done.children.values()]):
            self._delete(job)

    def _delete(self, job: str) -> None:
        """A finished object's query job goes (its results count against the org's storage)."""
        try:
            self.api.delete(job)
        except SagesfError as exc:
            log.info("could not delete Bulk query job %s (Salesforce drops it after 7 days): %s", job, exc)

    def _where(self, obj: ObjectMapping) -> str:
        assert self.run is not None
        t0 = datetime.fromtimestamp(self.run.t0_ms // 1000, UTC)
        parts = [f"SystemModstamp <= {literal(t0)}"]
        if obj.when is not None:
            values = ", ".join(_when_literal(v) for v in obj.when.in_)
            parts.append(f"{obj.when.field} IN ({values})")
            dated = obj.fields.get("order_date")
            if self.run.since and dated is not None and dated.field:
                parts.append(f"{dated.field[0]} >= {literal(date.fromisoformat(self.run.since))}")
        return " AND ".join(parts)

    def _batch(
        self, entity: str, obj: ObjectMapping, records: list[dict[str, Any]], moved: _Object
    ) -> SourceBatch:
        published: list[CanonicalRecord] = []
        rejected: list[Rejected] = []
        for record in records:
            history = obj.when is not None and self._history(obj, record)
            if not self.mapper.in_state(entity, record):
                continue
            try:
                published.append(self._map(entity, record, history))
            except Permanent as exc:
                rejected.append(_rejected(entity, record, history, exc))
        moved.published += len(published)
        moved.dead_letters += len(rejected)
        return self._checkpoint(entity, moved, published, rejected)

    def _checkpoint(
        self, entity: str, state: _Object, records: list[CanonicalRecord], rejected: list[Rejected]
    ) -> SourceBatch:
        def committed() -> None:
            self.objects[entity] = state
            self._show(entity, state)

        return SourceBatch(
            records=records,
            rejected=rejected,
            positions={f"object/{entity}": asdict(state)},
            committed=committed,
        )

    def _map(self, entity: str, record: Mapping[str, Any], history: bool) -> CanonicalRecord:
        stamp = _rest_stamp(field_value(record, "SystemModstamp"))
        record_id = str(field_value(record, "Id") or "")
        event_ms = int(datetime.fromisoformat(stamp).timestamp() * 1000) if stamp else self._t0()
        mapped = self.mapper.object_record(
            entity, record, event_id=event_uuid("catchup", entity, record_id, stamp), event_time_ms=event_ms
        )
        if history:
            mapped.headers = (*mapped.headers, *HISTORY)
        return mapped

    def _history(self, obj: ObjectMapping, record: Mapping[str, Any]) -> bool:
        assert self.run is not None
        dated = obj.fields.get("order_date")
        day = field_value(record, dated.field[0]) if dated is not None and dated.field else None
        return is_history(_day(self.run.go_live), day)

    def _t0(self) -> int:
        assert self.run is not None
        return self.run.t0_ms

    def _show(self, entity: str, state: _Object, resumed: bool = False) -> None:
        part = self.progress.part(entity)
        part.total, part.published, part.dead_letters, part.done = (
            state.total,
            state.published,
            state.dead_letters,
            state.done,
        )
        if resumed:
            part.resumed_at = state.published + state.dead_letters
        self.progress.changed(part)

    # --- REST ----------------------------------------------------------------------------------

    def _rest(
        self, entity: str, obj: ObjectMapping, where: str, state: _Object
    ) -> Iterator[tuple[list[dict[str, Any]], _Object]]:
        """Pages of whole records (children as subqueries), ordered by Id from where it stopped."""
        after = f" AND Id > {quote(state.after)}" if state.after else ""
        soql = f"SELECT {obj.select_list()} FROM {entity} WHERE {where}{after} ORDER BY Id"  # noqa: S608 - see _load
        answer = self.api.call("GET", "query", params={"q": soql}).json()
        while True:
            records = [dict(r) for r in answer.get("records") or []]
            if records:
                moved = _Object(**{**asdict(self.objects[entity]), "after": str(records[-1]["Id"])})
                yield records, moved
            if answer.get("done", True):
                return
            answer = self.api.call("GET", str(answer["nextRecordsUrl"])).json()

    # --- Bulk API 2.0 --------------------------------------------------------------------------

    def _bulk(
        self, entity: str, obj: ObjectMapping, where: str, state: _Object
    ) -> Iterator[tuple[list[dict[str, Any]], _Object]]:
        """Result sets of the object's job, each with its children, from the stored locator."""
        with (
            tempfile.TemporaryDirectory(prefix="sagesf-load-") as folder,
            _Children(Path(folder)) as children,
        ):
            jobs = {
                child.relationship: self._spool_children(entity, child, where, state, children)
                for child in _children(obj)
            }
            soql = f"SELECT {', '.join(obj.read_paths())} FROM {entity} WHERE {where}"  # noqa: S608 - see _load
            job = self._finished_job(state.job, soql)
            locator = state.locator if job == state.job else ""
            self.objects[entity] = _Object(
                **{**asdict(state), "children": jobs, "job": job, "locator": locator}
            )
            while locator is not None:
                found = self.api.page(job, locator, self.settings.result_set_records)
                records = [self.shape.record(entity, row) for row in found.rows]
                for child in _children(obj):
                    children.attach(child.relationship, records)
                locator = found.next_locator
                yield records, _Object(**{**asdict(self.objects[entity]), "locator": locator})

    def _finished_job(self, job: str | None, soql: str) -> str:
        """`job` once complete, or a new job for `soql` when there is none or Salesforce dropped it."""
        if job is not None:
            try:
                self.api.wait(job)
                return job
            except JobGone:
                log.warning("Bulk query job %s is gone; querying again (records may be published twice)", job)
        job = self.api.start(soql)
        self.api.wait(job)
        return job

    def _spool_children(
        self, entity: str, child: ChildSpec, where: str, state: _Object, into: _Children
    ) -> str:
        """The child relationship's job (reused when stored), its rows put aside by parent."""
        child_object, parent_field = self._relationship(entity, child.relationship)
        select = ", ".join(dict.fromkeys([*child.paths(), parent_field]))
        soql = (
            f"SELECT {select} FROM {child_object} "  # noqa: S608 - see _load
            f"WHERE {parent_field} IN (SELECT Id FROM {entity} WHERE {where})"
        )
        job = self._finished_job(state.children.get(child.relationship), soql)
        for found, _ in self.api.pages(job, "", self.settings.result_set_records):
            into.add(
                child.relationship, parent_field, [self.shape.record(child_object, row) for row in found.rows]
            )
        return job

    def _relationship(self, entity: str, name: str) -> tuple[str, str]:
        """(child object, its field naming the parent) of a child relationship, from the describe."""
        for rel in self.shape.describe(entity).get("childRelationships") or []:
            if str(rel.get("relationshipName") or "").lower() == name.lower():
                # names from the org's answer, checked before they reach SOQL
                return identifier(str(rel["childSObject"])), identifier(str(rel["field"]))
        raise Permanent(f"{entity} has no child relationship {name!r} in this org", field=name)


class _Children:
    """Child records put aside by parent in a temporary SQLite file (a large org's Contacts do
    not fit in memory), attached to their parents as REST subqueries return them."""

    def __init__(self, folder: Path) -> None:
        self.db = sqlite3.connect(folder / "children.sqlite3")
        self.db.execute("CREATE TABLE child (relationship TEXT, parent TEXT, record TEXT)")
        self.db.execute("CREATE INDEX child_parent ON child (relationship, parent)")

    def __enter__(self) -> _Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.db.close()

    def add(self, relationship: str, parent_field: str, records: list[dict[str, Any]]) -> None:
        self.db.executemany(
            "INSERT INTO child VALUES (?, ?, ?)",
            [(relationship, str(r.get(parent_field) or ""), json.dumps(r)) for r in records],
        )

    def attach(self, relationship: str, parents: list[dict[str, Any]]) -> None:
        found: dict[str, list[dict[str, Any]]] = {}
        ids = [str(p["Id"]) for p in parents]
        for start in range(0, len(ids), _IN_LIST):
            chunk = ids[start : start + _IN_LIST]
            marks = ", ".join("?" for _ in chunk)
            query = f"SELECT parent, record FROM child WHERE relationship = ? AND parent IN ({marks})"  # noqa: S608 - placeholders only
            for parent, record in self.db.execute(f"{query} ORDER BY rowid", [relationship, *chunk]):
                found.setdefault(parent, []).append(json.loads(record))
        for parent in parents:
            rows = found.get(str(parent["Id"]))
            parent[relationship] = {"totalSize": len(rows), "done": True, "records": rows} if rows else None


def _children(obj: ObjectMapping) -> list[ChildSpec]:
    return [child for child in (obj.lines, obj.contacts) if child is not None]


def _when_literal(value: str) -> str:
    return value if value in ("true", "false") else quote(value)


def _rest_stamp(value: Any) -> str:
    """A SystemModstamp as REST writes it (`...T12:00:00.000+0000`), whatever API read it: the
    event ID of a version must not depend on that."""
    try:
        moment = datetime.fromisoformat(str(value)).astimezone(UTC)
    except ValueError:
        return str(value or "")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _rejected(entity: str, record: Mapping[str, Any], history: bool, error: Exception) -> Rejected:
    value = json.dumps(record, separators=(",", ":"), default=str).encode()
    headers = [("salesforce.entity", entity.encode()), *(HISTORY if history else ())]
    record_id = str(record.get("Id") or "")
    failed = FailedRecord(f"{LOAD_ORIGIN}{entity}", 0, -1, record_id.encode() or None, value, headers)
    return Rejected(failed, error, "connectors.salesforce.initial_load")


def _day(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _shown(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
