"""How the commands print: one rich console setting, errors with their exit code, UTC times.

Everything the console prints goes through sagesf.logs.redact, as log lines do: a dead letter
or a record written before its secret was registered (or by another tool) shows masked.
Reports themselves (tables, summaries) belong to the command that prints them.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import TextIO

import typer
from rich.console import Console
from rich.markup import escape

from sagesf.logs import redact

__all__ = ["counted", "fail", "new_console", "utc_time"]


class _RedactingStdout:
    """Standard output (whatever it is when written to: tests swap it) with secrets masked."""

    def write(self, text: str) -> int:
        return sys.stdout.write(redact(text))

    def flush(self) -> None:
        sys.stdout.flush()

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()


def new_console() -> Console:
    """A console that colours only what the markup says (no guessing at numbers and paths) and
    masks every secret it is told about."""
    out: TextIO = _RedactingStdout()  # type: ignore[assignment]
    return Console(highlight=False, file=out)


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
