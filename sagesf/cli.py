"""The `sagesf` command line.

Core commands (topics, schemas, ...) are added by their own modules in sagesf/. Groups that live
outside the core, such as `sagesf sandbox`, are found through the `sagesf.commands` entry-point
group, so the core never imports them by name and a production image without the sandbox simply
has no `sandbox` command.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

import typer

from sagesf.config import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Sage 100 <-> Salesforce over Kafka.")


def _register_core() -> None:
    # imported here so `sagesf --help` stays fast and a broken optional group cannot break the rest
    from sagesf import cli_core

    cli_core.register(app)


def _register_plugins() -> None:
    for ep in entry_points(group="sagesf.commands"):
        try:
            group = ep.load()
        except ImportError as exc:  # a group whose package is not installed is simply absent
            print(f"note: command group {ep.name!r} unavailable: {exc}", file=sys.stderr)
            continue
        app.add_typer(group, name=ep.name)


def main() -> None:
    _register_core()
    _register_plugins()
    try:
        app()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
