"""The Salesforce emulator's event bus: a durable, replayable log of CDC and platform events.

What it owns: every event the emulator publishes (change events from committed REST/Bulk writes,
gap and overflow events, platform events), their replay IDs, their retention, and waking the
streaming side as soon as one is written.

How it works:
- One SQLite file of its own (WAL, one row per event): the stored row is the event's `data`
  object (`schema`, `payload`, `event.replayId`) as JSON text, so delivering it is string
  concatenation, not re-serialisation. Before a purge the last replay ID handed out is stored
  too, so IDs keep increasing across restarts even when every event has been purged.
  `record_changes` writes one transaction's events in one SQLite commit (Collections, Bulk).
- Replay IDs are increasing and not contiguous (each step is a random 1..5), as Salesforce's are,
  so a consumer that computes "the next ID" breaks here the way it would in production.
- Fan-out is decided at read time: a change event is stored once with its object channel
  (`/data/AccountChangeEvent`) and is delivered, with the same replay ID, to subscribers of that
  channel and of `/data/ChangeEvents`. Platform events live on `/event/<Name>__e`.
- Retention: events older than `retention_hours` (72 by default) are purged, lazily, at most once
  a second on writes and reads. `age_out(before_replay_id)` purges every event below an ID at
  once, so tests can prove the "outside the retention window" behaviour without waiting 72 h.
- Notification: listeners (one `asyncio.Event` per held `/meta/connect`) are set after each
  write. Writes are normally made on the aiohttp event loop; a write from another thread (a Bulk
  job in an executor, a test) is safe too: the database is guarded by a lock and listeners are
  woken through `call_soon_threadsafe`.

Limits (where the emulator differs from Salesforce):
- One replay ID sequence for the whole org; Salesforce numbers each channel separately. A replay
  ID is therefore accepted on any channel as long as it is retained.
- A replay ID is "valid" when the event that carries it is still retained; Salesforce's exact
  rule is not documented. After the purge the error is the same as Salesforce's.
- Events are purged exactly at the retention boundary; Salesforce may keep them a little longer.
- No daily delivery allocation (`403::Organization total events daily limit exceeded`), no event
  publishing limits, no high-volume/standard-volume distinction.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from sandbox.salesforce.cdc import (
    ALL_CHANGE_EVENTS,
    Change,
    change_channel,
    change_data,
    now_ms,
    platform_event_data,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    replay_id INTEGER PRIMARY KEY,
    channel TEXT NOT NULL,
    is_cdc INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_channel ON events (channel, replay_id);
CREATE INDEX IF NOT EXISTS events_by_time ON events (created_ms);
CREATE TABLE IF NOT EXISTS log_state (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_PRUNE_EVERY_S = 1.0


class StoredEvent(NamedTuple):
    replay_id: int
    channel: str  # the channel it was published on (the object channel for a change event)
    data_json: str  # the message's `data` object, JSON text


class EventLog:
    """Durable event log with increasing, non-contiguous replay IDs and a retention window."""

    def __init__(self, path: Path, retention_hours: float = 72) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.retention_hours = retention_hours
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        row = self._db.execute("SELECT value FROM log_state WHERE key = 'last_replay_id'").fetchone()
        stored = row[0] if row else 0
        highest = self._db.execute("SELECT COALESCE(MAX(replay_id), 0) FROM events").fetchone()[0]
        self._last_replay_id: int = max(stored, highest)
        self._pruned_at = 0.0
        self._listeners: dict[asyncio.Event, asyncio.AbstractEventLoop] = {}

    # -- writing ---------------------------------------------------------------------------

    def record_change(self, change: Change) -> int:
        """Store one change event; returns its replay ID.

        Delivered on `/data/<Entity>ChangeEvent` and `/data/ChangeEvents`.
        """
        return self.record_changes([change])[0]

    def record_changes(self, changes: list[Change]) -> list[int]:
        """Store the change events of one transaction in one SQLite commit; returns their replay IDs."""
        return self._append([(change_channel(c.entity), True, change_data(c), {}) for c in changes])

    def publish(self, channel: str, payload: dict[str, Any]) -> int:
        """Store one platform event on `/event/<Name>__e`; returns its replay ID.

        An `EventUuid` in `payload` (the one the REST publish answered with) moves to the message's
        `event` object, where CometD clients find it; without one a new UUID is made.
        """
        if not channel.startswith("/event/"):
            raise ValueError(f"platform events are published on /event/<Name>__e, not {channel!r}")
        fields = dict(payload)
        event_uuid = str(fields.pop("EventUuid", None) or uuid.uuid4())
        data = platform_event_data(channel, fields, now_ms())
        return self._append([(channel, False, data, {"EventUuid": event_uuid})])[0]

    def inject(self, channel: str, data: dict[str, Any]) -> int:
        """Store `data` as the message body of an event on `channel` exactly as given, however
        malformed (tests and `make chaos` feed a subscriber what Salesforce never should)."""
        return self._append([(channel, channel.startswith("/data/"), dict(data), {})])[0]

    def _append(self, items: list[tuple[str, bool, dict[str, Any], dict[str, Any]]]) -> list[int]:
        created = now_ms()
        rows: list[tuple[int, str, int, int, str]] = []
        with self._lock:
            self._prune_expired_locked(force=False)
            replay_id = self._last_replay_id
            for channel, is_cdc, data, event in items:
                replay_id += secrets.randbelow(5) + 1
                data["event"] = {**event, "replayId": replay_id}
                rows.append(
                    (replay_id, channel, int(is_cdc), created, json.dumps(data, separators=(",", ":")))
                )
            with self._transaction():
                self._db.executemany(
                    "INSERT INTO events (replay_id, channel, is_cdc, created_ms, data) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            self._last_replay_id = replay_id
        self._notify()
        return [row[0] for row in rows]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------

    @property
    def last_replay_id(self) -> int:
        """The highest replay ID handed out so far (0 for a new log); -1 subscribers start here."""
        return self._last_replay_id

    def is_retained(self, replay_id: int) -> bool:
        """Whether an event with this replay ID exists and is inside the retention window."""
        with self._lock:
            self._prune_expired_locked(force=False)
            row = self._db.execute("SELECT 1 FROM events WHERE replay_id = ?", (replay_id,)).fetchone()
        return row is not None

    def events_after(self, subscription: str, after: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` retained events for a subscription channel with a replay ID above `after`."""
        with self._lock:
            self._prune_expired_locked(force=False)
            if subscription == ALL_CHANGE_EVENTS:
                rows = self._db.execute(
                    "SELECT replay_id, channel, data FROM events WHERE is_cdc = 1 AND replay_id > ? "
                    "ORDER BY replay_id LIMIT ?",
                    (after, limit),
                ).fetchall()
            else:
                rows = self._db.execute(
                    "SELECT replay_id, channel, data FROM events WHERE channel = ? AND replay_id > ? "
                    "ORDER BY replay_id LIMIT ?",
                    (subscription, after, limit),
                ).fetchall()
        return [StoredEvent(*row) for row in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])

    # -- retention -------------------------------------------------------------------------

    def age_out(self, before_replay_id: int) -> int:
        """Purge every event with a replay ID below `before_replay_id`, as if it had expired."""
        with self._lock, self._transaction():
            self._save_last_replay_id_locked()
            cursor = self._db.execute("DELETE FROM events WHERE replay_id < ?", (before_replay_id,))
        return cursor.rowcount

    def prune_expired(self) -> int:
        """Purge the events older than the retention window now; returns how many went."""
        with self._lock:
            return self._prune_expired_locked(force=True)

    def _prune_expired_locked(self, force: bool) -> int:
        monotonic = time.monotonic()
        if not force and monotonic - self._pruned_at < _PRUNE_EVERY_S:
            return 0
        self._pruned_at = monotonic
        cutoff = now_ms() - int(self.retention_hours * 3_600_000)
        with self._transaction():
            self._save_last_replay_id_locked()
            cursor = self._db.execute("DELETE FROM events WHERE created_ms < ?", (cutoff,))
        return cursor.rowcount

    def _save_last_replay_id_locked(self) -> None:
        # Only needed once events may be purged: otherwise MAX(replay_id) says it on restart.
        self._db.execute(
            "INSERT INTO log_state (key, value) VALUES ('last_replay_id', ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (self._last_replay_id,),
        )

    # -- notification ----------------------------------------------------------------------

    def add_listener(self, event: asyncio.Event) -> None:
        """Set `event` after every write from now on (call from the loop that waits on it)."""
        self._listeners[event] = asyncio.get_running_loop()

    def remove_listener(self, event: asyncio.Event) -> None:
        self._listeners.pop(event, None)

    def _notify(self) -> None:
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for event, loop in list(self._listeners.items()):
            if loop is current:
                event.set()
            elif not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    def close(self) -> None:
        with self._lock:
            self._db.close()
