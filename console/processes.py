"""What the Processes page shows: each configured process's /healthz and /metrics, read over
HTTP, with its consumer lag and throughput.

How it works: /healthz is the runner's JSON (sagesf.metrics.Health); /metrics is Prometheus
text, parsed with prometheus_client's parser. Lag is the sum of `sagesf_consumer_lag` per stage.
Throughput is a rate between two readings: the watch keeps each process's last counters
(`sagesf_records_done_total` per stage, `sagesf_records_produced_total`), so the first view
shows totals and every later one (the page refreshes itself) records per second since the last.
Limits: the rate is per console process and between page views, not Prometheus's `rate()` over
a window; a process restarted between views shows no rate for that view (its counters went back).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from sagesf.metrics import short_reason

__all__ = ["ProcessView", "ProcessWatch", "StageFigures"]

UNREACHABLE = "unreachable"
_DONE = "sagesf_records_done_total"
_PRODUCED = "sagesf_records_produced_total"
_LAG = "sagesf_consumer_lag"
MIN_INTERVAL = 0.5  # seconds between two readings for a rate


@dataclass
class StageFigures:
    """One stage (or `produced` for a process's acknowledged produces) of one process."""

    name: str
    lag: float | None = None
    total: float = 0.0
    per_second: float | None = None


@dataclass
class ProcessView:
    name: str
    url: str
    status: str  # ok, degraded, unhealthy, or unreachable
    detail: str = ""
    components: dict[str, dict[str, object]] = field(default_factory=dict)
    stages: list[StageFigures] = field(default_factory=list)


class ProcessWatch:
    """Reads the processes of `urls` (name -> base URL) on each `views()`."""

    def __init__(self, urls: Mapping[str, str], timeout: float = 2.0) -> None:
        self.urls = dict(urls)
        self.timeout = timeout
        self._last: dict[str, tuple[float, dict[str, float]]] = {}
        self._lock = threading.Lock()

    def views(self) -> list[ProcessView]:
        if not self.urls:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(self.urls))) as pool:
            return list(pool.map(self._view, self.urls.items()))

    def _view(self, item: tuple[str, str]) -> ProcessView:
        name, url = item
        base = url.rstrip("/").removesuffix("/metrics")
        try:
            health: dict[str, Any] = json.loads(self._get(f"{base}/healthz"))
            metrics = self._get(f"{base}/metrics")
        except urllib.error.URLError as exc:  # no answer at all
            return ProcessView(name, base, UNREACHABLE, f"cannot connect: {short_reason(str(exc.reason))}")
        except (OSError, ValueError) as exc:
            return ProcessView(name, base, UNREACHABLE, short_reason(str(exc)))
        view = ProcessView(
            name, base, str(health.get("status", "?")), components=health.get("components", {})
        )
        view.stages = self._figures(name, metrics)
        return view

    def _get(self, url: str) -> str:
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as answer:  # noqa: S310 - configured URLs
                return str(answer.read().decode())
        except urllib.error.HTTPError as exc:  # /healthz answers 503 with its JSON when unhealthy
            return str(exc.read().decode())

    def _figures(self, process: str, text: str) -> list[StageFigures]:
        totals: dict[str, float] = {}
        lags: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == _DONE:
                    stage = sample.labels.get("stage", "?")
                    totals[stage] = totals.get(stage, 0.0) + sample.value
                elif sample.name == _PRODUCED:
                    totals["produced"] = totals.get("produced", 0.0) + sample.value
                elif sample.name == _LAG:
                    stage = sample.labels.get("stage", "?")
                    lags[stage] = lags.get(stage, 0.0) + sample.value
        rates = self._rates(process, totals)
        return [
            StageFigures(stage, lags.get(stage), totals.get(stage, 0.0), rates.get(stage))
            for stage in sorted(set(totals) | set(lags), key=lambda s: (s == "produced", s))
        ]

    def _rates(self, process: str, totals: dict[str, float]) -> dict[str, float]:
        """Records per second since the last reading of `process` (kept unless too recent to say)."""
        now = time.monotonic()
        with self._lock:
            before = self._last.get(process)
            if before is not None and now - before[0] < MIN_INTERVAL:
                return {}
            self._last[process] = (now, totals)
        if before is None:
            return {}
        seconds, earlier = now - before[0], before[1]  # a stage first counted since then started at 0
        return {
            stage: (total - earlier.get(stage, 0.0)) / seconds
            for stage, total in totals.items()
            if total >= earlier.get(stage, 0.0)
        }
