"""How the commands print: one rich console setting, errors with their exit code, UTC times.

Reports themselves (tables, summaries) belong to the command that prints them.
"""

from __future__ import annotations

from datetime import UTC, datetime

import typer
from rich.console import Console
from rich.markup import escape

__all__ = ["counted", "fail", "new_console", "utc_time"]


def new_console() -> Console:
    """A console that colours only what the markup says (no guessing at numbers and paths)."""
    return Console(highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print `error: <message>` and return the exit to raise (2: bad input or unreachable)."""
    new_console().print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def counted(n: int, noun: str) -> str:
    """`1 topic`, `3 topics`."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def utc_time(ms: int | None) -> str:
    """Epoch ms as `2026-03-14 15:09:00.123Z`; `-` when Kafka gave no time."""
    if ms is None or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"
