"""The processors as a sagesf.runner component: `sagesf run processors` (one faust worker).

Start-up: the mapping files checked (an invalid file is a MappingError naming file, line and
entry: exit 2), the output schemas resolved in the registry (waiting while it is down, degraded
on /healthz meanwhile: `Process.wait_for`), then the faust worker. faust's own
logging setup and web server are off: logs go through sagesf.logs, health through
sagesf.metrics. Run several workers with the same SAGESF_PROCESSORS__APP_ID for failover; they
share the consumer group and each keeps the whole state (processors/tables.py).
"""

from __future__ import annotations

import logging
import threading

import faust

from processors.app import Processors
from processors.config import ProcessorSettings
from processors.mapping_files import load_mappings
from processors.mapping_model import Mappings
from processors.reconcile import ReloadingJudge
from sagesf import topic_names
from sagesf.runner import SCHEMA_REGISTRY, Component, Process

__all__ = ["PROCESSORS", "FaustWorker"]

log = logging.getLogger("processors")


def build(process: Process) -> FaustWorker:
    settings = process.settings(ProcessorSettings)
    mappings = _mappings(settings)
    log.info(
        "mappings in %s checked against %s", settings.mappings_dir, ", ".join(mappings.checked_against())
    )
    unchecked = [
        name
        for name, path in (("Salesforce", settings.salesforce_metadata), ("Sage 100", settings.sage_metadata))
        if path is None
    ]
    if unchecked:
        log.warning(
            "mappings not checked against %s (set SAGESF_PROCESSORS__SALESFORCE_METADATA / __SAGE_METADATA)",
            " and ".join(unchecked),
        )
    processors = Processors(settings, process.core, mappings, process.health)
    process.closing(processors.close, "the processors' dead-letter producer")
    process.wait_for(SCHEMA_REGISTRY, lambda: _resolve_schemas(processors))
    return FaustWorker(processors, settings.log_level)


def build_judge(process: Process) -> ReloadingJudge:
    """The mappings' judge of reconciliation (processors/reconcile.py), from the same files,
    reloaded when they change (a console save)."""
    settings = process.settings(ProcessorSettings)
    return ReloadingJudge(lambda: _mappings(settings))


def _mappings(settings: ProcessorSettings) -> Mappings:
    return load_mappings(
        settings.mappings_dir,
        salesforce_metadata=settings.salesforce_metadata,
        sage_metadata=settings.sage_metadata,
    )


def _resolve_schemas(processors: Processors) -> None:
    """Look up (or, in the sandbox, register) the output schemas now rather than on the first record."""
    for topic, schema in (
        (topic_names.SAGE_COMMANDS, "SageCommand"),
        (topic_names.SALESFORCE_COMMANDS, "SalesforceCommand"),
    ):
        processors.serde(topic, "key").schema_id  # noqa: B018 - resolves and caches the id
        processors.serde(topic, schema).schema_id  # noqa: B018


class FaustWorker:
    """Runs the processors' faust worker on this (the main) thread until stopped.

    faust (mode) installs its own SIGTERM/SIGINT handlers, which stop the worker; the runner's
    stop signal is honoured too, through mode's SIGTERM path.
    """

    def __init__(self, processors: Processors, log_level: str) -> None:
        self.processors = processors
        self.log_level = log_level

    def run(self, stop: threading.Event) -> None:
        worker = faust.Worker(
            self.processors.app,
            loglevel=self.log_level.lower(),
            quiet=True,
            override_logging=False,
            redirect_stdouts=False,
        )
        worker.spinner = None  # a terminal spinner; its control characters garble log files

        def stop_worker() -> None:
            stop.wait()
            if not worker.loop.is_closed():
                worker.loop.call_soon_threadsafe(worker._on_sigterm)  # mode's own SIGTERM path

        threading.Thread(target=stop_worker, name="worker-stop", daemon=True).start()
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise RuntimeError(f"the faust worker stopped with exit code {exc.code}") from None


PROCESSORS = Component(
    name="processors",
    summary="The faust app: Closed Won orders -> Sage commands, Sage results, status and stock -> "
    "Salesforce commands, customers both ways, credit replies.",
    build=build,
    settings=(ProcessorSettings,),
    judge=build_judge,
)
