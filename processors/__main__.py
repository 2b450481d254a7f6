"""`python -m processors worker`: run the processors (one faust worker) until SIGTERM/SIGINT.

Start-up order: settings (sagesf.config + processors/config.py; a bad value exits 2 naming the
variable), redacting logs with every secret registered, the mapping files checked (an invalid file
exits 2 listing every problem as file:line: entry: reason), /metrics and /healthz served on
SAGESF_METRICS__HOST:PORT, the output schemas resolved in the registry, then the faust worker.
faust's logging setup and web server are off: logs go through sagesf.logs, health through
sagesf.metrics.

Run several workers with the same SAGESF_PROCESSORS__APP_ID for failover; they share the consumer
group and each keeps the whole state (processors/tables.py).
"""

from __future__ import annotations

import logging
import sys
import time

import faust
import typer

from processors.app import Processors
from processors.config import load_processor_settings
from processors.mapping_files import MappingError, load_mappings
from sagesf import topic_names
from sagesf.config import ConfigError, Settings, load_settings
from sagesf.errors import Retriable
from sagesf.logs import configure_logging, register_settings_secrets
from sagesf.metrics import Health, MetricsServer
from sagesf.serde import SchemaRegistrationError

log = logging.getLogger("processors")
cli = typer.Typer(no_args_is_help=True, add_completion=False, help="The sagesf processors (faust).")


@cli.callback()
def _main() -> None:
    """The sagesf processors: orders, customers, status, inventory and credit agents in one faust app."""


@cli.command()
def worker() -> None:
    """Run one processors worker until stopped."""
    try:
        core: Settings = load_settings()
        settings = load_processor_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(settings.log_level, component="processors")
    register_settings_secrets(core)
    register_settings_secrets(settings)
    try:
        mappings = load_mappings(
            settings.mappings_dir,
            salesforce_metadata=settings.salesforce_metadata,
            sage_metadata=settings.sage_metadata,
        )
    except MappingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    log.info(
        "mappings in %s checked against %s", settings.mappings_dir, ", ".join(mappings.checked_against())
    )
    if settings.salesforce_metadata is None or settings.sage_metadata is None:
        log.warning(
            "mappings not checked against %s (set SAGESF_PROCESSORS__SALESFORCE_METADATA / __SAGE_METADATA)",
            " and ".join(
                n
                for n, p in (
                    ("Salesforce", settings.salesforce_metadata),
                    ("Sage 100", settings.sage_metadata),
                )
                if p is None
            ),
        )
    health = Health()
    metrics = MetricsServer(health, core.metrics.host, core.metrics.port)
    log.info("metrics and health on http://%s:%d/metrics /healthz", core.metrics.host, metrics.port)
    processors = Processors(settings, core, mappings, health)
    try:
        try:
            _resolve_schemas(processors, settings.retry_limit_seconds)
        except (Retriable, SchemaRegistrationError) as exc:
            log.critical("cannot start: %s", exc)
            raise SystemExit(1) from None
        runner = faust.Worker(
            processors.app,
            loglevel=settings.log_level.lower(),
            quiet=True,
            override_logging=False,
            redirect_stdouts=False,
        )
        runner.spinner = None  # a terminal spinner; its control characters garble log files
        runner.execute_from_commandline()
    finally:
        processors.close()
        metrics.stop()


def _resolve_schemas(processors: Processors, limit: float) -> None:
    """Look up (or, in the sandbox, register) the output schemas now rather than on the first record."""
    deadline = time.monotonic() + limit
    delay = 0.5
    outputs = [
        (topic_names.SAGE_COMMANDS, "SageCommand"),
        (topic_names.SALESFORCE_COMMANDS, "SalesforceCommand"),
    ]
    while True:
        try:
            for topic, schema in outputs:
                processors.serde(topic, "key").schema_id  # noqa: B018 - resolves and caches the id
                processors.serde(topic, schema).schema_id  # noqa: B018
            return
        except Retriable as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("schema registry: %s; retrying in %.1f s", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


if __name__ == "__main__":
    cli()
