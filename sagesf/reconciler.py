"""The `reconciler` component (`sagesf run reconciler`): a reconciliation sweep every
`SAGESF_RECONCILE__INTERVAL_SECONDS`, its metrics on /metrics; and the assembly that
`sagesf reconcile` shares with it.

The parts come from the installed components' hooks (sagesf.runner `Component.snapshot`,
`Component.judge`), each built in a process of its own component (`assembled`: that component's
settings, secrets and closing), so the core names no connector.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import date

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from sagesf import topic_names
from sagesf.config import ConfigError
from sagesf.publisher import CanonicalPublisher
from sagesf.reconcile import DriftJudge, Reconciler, SnapshotReader, Sweep
from sagesf.runner import Component, Process, assembled, components

__all__ = [
    "RECONCILER",
    "STAGE",
    "ReconcileSettings",
    "ReconcileSweeps",
    "reconciliation",
    "repair_publisher",
]

log = logging.getLogger(__name__)

STAGE = "reconcile"
COMMANDS = (
    (topic_names.SAGE_COMMANDS, "SageCommand"),
    (topic_names.SALESFORCE_COMMANDS, "SalesforceCommand"),
)


class ReconcileSettings(BaseSettings):
    """`SAGESF_RECONCILE__*`: what a sweep compares and what the scheduled one does."""

    model_config = SettingsConfigDict(
        env_prefix="SAGESF_RECONCILE__", env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    interval_seconds: float = Field(default=3600.0, gt=0)  # between the reconciler's sweeps
    repair: bool = False  # the reconciler publishes the repairs of what it finds
    orders_since: date | None = None  # compare orders dated from this day (the go-live); None: all
    examples: int = Field(default=5, ge=0)  # drifts shown per kind
    # canonical command topic -> deployed name, as the processors' topics are renamed
    topics: dict[str, str] = Field(default_factory=dict)


@contextmanager
def reconciliation(settings: ReconcileSettings, host: Process | None = None) -> Iterator[Reconciler]:
    """A `Reconciler` from the installed hooks; their parts closed when the block ends. Built in
    `host` (the reconciler process), each part waits for its system on the host's /healthz and
    stops with it."""
    readers: dict[str, SnapshotReader] = {}
    judges: list[DriftJudge] = []
    with ExitStack() as parts:

        def process_of(found: Component) -> Process:
            process = parts.enter_context(assembled(found))
            if host is not None:
                process.health, process.stop = host.health, host.stop
            return process

        for found in components().values():
            if found.snapshot is not None:
                reader = found.snapshot(process_of(found))
                readers[reader.system] = reader
            if found.judge is not None:
                judges.append(found.judge(process_of(found)))
        if len(judges) != 1:
            raise ConfigError(f"reconciliation needs one component with a judge hook, found {len(judges)}")
        try:
            reconciler = Reconciler(readers, judges[0], orders_since=settings.orders_since)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        yield reconciler


def repair_publisher(process: Process, settings: ReconcileSettings) -> CanonicalPublisher:
    """The publisher of repair commands: the processors' command topics and schemas."""
    return process.publisher(STAGE, topics=settings.topics, schemas=COMMANDS)


class ReconcileSweeps:
    """A sweep now and every `interval_seconds` after; with a publisher (`repair`), its repairs
    published.

    A failed sweep (a system away) is logged and counted (`sagesf_reconcile_sweeps_total{outcome=
    "failed"}`) and the next one comes at its time: the drift gauges keep the last sweep's figures.
    """

    def __init__(
        self, reconciler: Reconciler, settings: ReconcileSettings, publisher: CanonicalPublisher | None
    ) -> None:
        self.reconciler = reconciler
        self.settings = settings
        self.publisher = publisher

    def run_once(self) -> Sweep:
        result = self.reconciler.sweep()
        if self.publisher is not None and result.drifts:
            sent = self.reconciler.repair(result, self.publisher)
            log.info("reconciliation: %d repair command(s) published", sent)
        return result

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - the next sweep may find the system back
                log.warning("reconciliation sweep failed: %s", exc)
            stop.wait(self.settings.interval_seconds)


def build(process: Process) -> ReconcileSweeps:
    settings = process.settings(ReconcileSettings)
    stack = ExitStack()
    process.closing(stack.close, "the reconciliation's parts")
    reconciler = stack.enter_context(reconciliation(settings, process))
    # Kafka and the registry only when it repairs: a reconciler that reports needs neither
    publisher = repair_publisher(process, settings) if settings.repair else None
    return ReconcileSweeps(reconciler, settings, publisher)


RECONCILER = Component(
    name="reconciler",
    summary="Compares Salesforce and Sage 100 through the mappings every interval; drift on /metrics, "
    "repairs to the command topics when SAGESF_RECONCILE__REPAIR is set. Also reads the settings of "
    "the components whose hooks it uses: salesforce-source, sage-source, processors.",
    build=build,
    settings=(ReconcileSettings,),
    once=True,
)
