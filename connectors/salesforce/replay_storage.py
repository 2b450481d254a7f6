"""Durable replay positions for aiosfstream: a `ReplayMarkerStorage` backed by positions.v1.

What it owns: where each subscribed channel resumes, kept in the PositionStore (compacted Kafka
topic, key `<component>/<channel>`), and what aiosfstream sends in the replay extension of
every `/meta/subscribe`, including the automatic re-subscribes after a re-handshake.

A channel's position is JSON `{"replay_id": N | null, "checkpoint_ms": T}`:
- `replay_id` N: the last event whose records Kafka acknowledged; subscribing sends N and the
  server delivers what follows. `checkpoint_ms` is that event's commit time, where a catch-up
  read starts if N has left the retention window.
- `replay_id` null: no event stored yet on this stream (first start, or the hand-over of
  `sagesf load salesforce`), or the stored one fell out of retention (after the catch-up read).
  Subscribing sends -2 (every retained event) and the source skips events committed before
  `checkpoint_ms` (`skips()`), so nothing after that time is missed and older history is not
  re-published.
- `start_ms`: that by-time start, kept once a replay ID is stored: a -2 replay of 72 hours comes
  in many batches, and the events of the later ones are still older than the start (skipped).

Why never -1: aiosfstream re-sends its replay value on every re-subscribe after a re-handshake
(network failure, `403::Unknown client`, token expiry). A constant -1 ("new events only") then
silently skips whatever was committed while the client was away. With this storage there is
always a real position: a replay ID, or -2 bounded by a time.

Positions are written by the core SourceLoop (sagesf.source) into the same PositionStore, after
Kafka acknowledged the records before them; this storage reads them back from the store, so what
aiosfstream sends is always what is stored. `start()` stores the first by-time positions itself.

Limits: one writer per component (PositionStore's limit). Times compare Salesforce's commit
timestamps with this host's clock when a stream starts: set the start lookback above the clock
skew. aiosfstream's own `set_replay_marker` path (its AUTOMATIC policy) stores before Kafka has
the records; the source uses the MANUAL policy and `commit()` instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiosfstream_ng.replay import ReplayMarker, ReplayMarkerStorage, ReplayOption

from connectors.salesforce.source_metrics import REPLAY_POSITION_AGE
from sagesf.positions import PositionStore

log = logging.getLogger(__name__)

__all__ = ["ChannelPosition", "PositionReplayStorage"]


@dataclass(frozen=True)
class ChannelPosition:
    replay_id: int | None
    checkpoint_ms: int
    start_ms: int | None = None  # the by-time start, once a replay ID is stored (see the module doc)

    @property
    def start(self) -> int | None:
        """Events committed before this are older than the stream's by-time start: skipped."""
        return self.checkpoint_ms if self.replay_id is None else self.start_ms

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = {"replay_id": self.replay_id, "checkpoint_ms": self.checkpoint_ms}
        if self.start_ms is not None:
            value["start_ms"] = self.start_ms
        return value

    @classmethod
    def from_json(cls, value: Any) -> ChannelPosition | None:
        if not isinstance(value, Mapping):
            return None
        replay_id = value.get("replay_id")
        checkpoint = value.get("checkpoint_ms")
        start = value.get("start_ms")
        if not isinstance(checkpoint, int) or (replay_id is not None and not isinstance(replay_id, int)):
            return None
        return cls(replay_id, checkpoint, start if isinstance(start, int) else None)


class PositionReplayStorage(ReplayMarkerStorage):
    """aiosfstream replay storage over sagesf's PositionStore (see the module doc)."""

    def __init__(self, store: PositionStore) -> None:
        super().__init__()
        self.store = store
        self.channels: list[str] = []
        for channel, raw in store.load().items():
            if ChannelPosition.from_json(raw) is None:
                log.warning("ignoring an unreadable stored position for %s: %r", channel, raw)

    # --- what the source asks -----------------------------------------------------------------

    def position(self, channel: str) -> ChannelPosition | None:
        return ChannelPosition.from_json(self.store.get(channel))

    def start(self, channels: list[str], lookback_seconds: float) -> None:
        """Give every channel without a position one: from now minus the lookback, by time."""
        self.channels = list(channels)
        since = int((time.time() - lookback_seconds) * 1000)
        fresh = {ch: ChannelPosition(None, since).to_json() for ch in channels if self.position(ch) is None}
        if fresh:
            log.info(
                "no stored position for %s: starting from events committed after %d", sorted(fresh), since
            )
            self.store.put_many(fresh)
        self.refresh_age()

    def skips(self, channel: str, commit_ms: int) -> bool:
        """Whether an event committed at `commit_ms` is older than a by-time stream's start."""
        position = self.position(channel)
        start = position.start if position is not None else None
        return start is not None and commit_ms < start

    def refresh_age(self) -> None:
        now_ms = time.time() * 1000
        for channel in self.channels:
            position = self.position(channel)
            if position is not None:
                REPLAY_POSITION_AGE.labels(channel).set(max(0.0, (now_ms - position.checkpoint_ms) / 1000))

    # --- what aiosfstream asks ------------------------------------------------------------------

    async def get_replay_id(self, subscription: str) -> int:
        position = self.position(subscription)
        if position is None or position.replay_id is None:
            return int(ReplayOption.ALL_EVENTS)
        return position.replay_id

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        position = self.position(subscription)
        if position is None or position.replay_id is None:
            return None
        return ReplayMarker(date=str(position.checkpoint_ms), replay_id=position.replay_id)

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        """aiosfstream's own storing path (not used by the source: see the module doc)."""
        try:
            checkpoint = int(replay_marker.date)
        except ValueError:
            checkpoint = int(time.time() * 1000)
        position = ChannelPosition(replay_marker.replay_id, checkpoint)
        await asyncio.to_thread(self.store.put, subscription, position.to_json())
