"""The `sagesf` command line: the typer app, its core command groups, and the groups plugins add.

Each core group is one module of this package. Groups that live outside the core, such as
`sagesf sandbox`, are found through the `sagesf.commands` entry-point group, so the core never
imports them by name and a production image without the sandbox simply has no `sandbox` command.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

from sagesf.cli import dlq, load, preflight, reconcile, replay, run, schemas, topics, trace
from sagesf.config import ConfigError

__all__ = ["add_core_commands", "app", "main"]

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Sage 100 <-> Salesforce over Kafka.")


def add_core_commands(app: typer.Typer) -> None:
    """Attach the core command groups to `app` (the `sagesf` app, or a test's own)."""
    app.add_typer(topics.cli, name="topics")
    app.add_typer(schemas.cli, name="schemas")
    app.add_typer(dlq.cli, name="dlq")
    app.command("replay")(replay.replay_command)
    app.command("trace")(trace.trace_command)
    app.command("preflight")(preflight.preflight_command)
    app.command("load")(load.load_command)
    app.command("reconcile")(reconcile.reconcile_command)
    app.command("run", context_settings=run.RUN_SETTINGS, add_help_option=False)(run.run_command)


def _add_plugin_commands() -> None:
    for ep in entry_points(group="sagesf.commands"):
        try:
            group = ep.load()
        except ImportError as exc:  # a group whose package is not installed is simply absent
            print(f"note: command group {ep.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        app.add_typer(group, name=ep.name)


def main() -> None:
    add_core_commands(app)
    _add_plugin_commands()
    try:
        app()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
