"""Core command groups of `sagesf`: each lives in its own module and is attached here."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the core command groups (each module exposes a `cli` Typer)."""
    from sagesf import ops_cli, schemas_cli, topics_cli

    app.add_typer(topics_cli.cli, name="topics")
    app.add_typer(schemas_cli.cli, name="schemas")
    app.add_typer(ops_cli.dlq_cli, name="dlq")
    app.command("replay")(ops_cli.replay_stage)
    app.command("trace")(ops_cli.trace_command)
