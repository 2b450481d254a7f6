"""Reloading mappings/salesforce_source.yaml while the CDC source runs.

What it owns: `SourceMappingReload`, which the source asks between batches whether its mapping
file was edited (at most every `mapping_reload_interval` seconds) and, when it was, loads and
checks the new one as at start-up (the file's own rules, the channels, the topics, the fields
against the org) and hands it to the change reader: a field newly mapped there (a custom field
the console saved) is read from the next change on, without a restart.

An edit that fails a check keeps the previous mapping: it is logged once per edit, counted in
`sagesf_salesforce_source_mapping_reloads_total{result="invalid"}` and /healthz shows the
`source-mapping` dependency degraded with the first problem, until a valid edit. Salesforce
unreachable during the field check is Retriable: the loop backs off and the edit is tried again.

Limits: the channels subscribed and the topics and schemas published are those of start-up; an
edit that needs another topic or record kind is refused, naming it (restart the source for it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import Counter

from connectors.salesforce.source_mapping import SourceMapping, load_source_mapping
from sagesf.errors import ConfigError, MappingError
from sagesf.metrics import Health

__all__ = ["MAPPING_RELOADS", "SourceMappingReload"]

log = logging.getLogger(__name__)

MAPPING_RELOADS = Counter(
    "sagesf_salesforce_source_mapping_reloads_total",
    "Reloads of the source's mapping file after an edit",
    ["result"],
)
HEALTH_NAME = "source-mapping"


class SourceMappingReload:
    """Loads the edited mapping file, checks it with `check` (raising MappingError or ConfigError
    for a mapping the source cannot use) and gives it to `use`; see the module doc."""

    def __init__(
        self,
        path: Path,
        interval: float,
        *,
        check: Callable[[SourceMapping], None],
        use: Callable[[SourceMapping], None],
        health: Health,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.interval = interval
        self.check_mapping = check
        self.use = use
        self.health = health
        self.clock = clock
        self._mtime = _mtime(path)
        self._looked_at = clock()

    def reload_if_edited(self) -> bool:
        """True when an edited mapping was loaded and is in use now."""
        if self.interval <= 0 or self.clock() - self._looked_at < self.interval:
            return False
        self._looked_at = self.clock()
        mtime = _mtime(self.path)
        if mtime == self._mtime:
            return False
        try:
            fresh = load_source_mapping(self.path)
            self.check_mapping(fresh)
        except (MappingError, ConfigError) as exc:
            self._mtime = mtime  # logged once per edit
            problems = exc.problems
            MAPPING_RELOADS.labels("invalid").inc()
            # the file's name, not its path: /healthz details are short, and the reason must fit
            first = problems[0].replace(str(self.path), self.path.name)
            self.health.dependency(
                HEALTH_NAME, False, f"edited mapping is invalid; using the previous one: {first}"
            )
            log.error(
                "%s edited but invalid, keeping the previous mapping:\n  %s", self.path, "\n  ".join(problems)
            )
            return False
        self._mtime = mtime
        self.use(fresh)
        MAPPING_RELOADS.labels("ok").inc()
        self.health.dependency(HEALTH_NAME, True)
        log.info("source mapping reloaded from %s", self.path)
        return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return -1.0
