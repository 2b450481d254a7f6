"""Core command groups of `sagesf`: each lives in its own module and is attached here."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the core command groups (each module exposes a `cli` Typer)."""
    from sagesf import schemas_cli, topics_cli

    app.add_typer(topics_cli.cli, name="topics")
    app.add_typer(schemas_cli.cli, name="schemas")
