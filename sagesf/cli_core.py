"""Core command groups of `sagesf`: each lives in its own module and is attached here."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Attach the core command groups; each module exposes a `cli` Typer."""
    import importlib

    for name, module in (("topics", "sagesf.topics_cli"), ("schemas", "sagesf.schemas_cli")):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue  # not written yet
        app.add_typer(mod.cli, name=name)
