"""`sagesf load salesforce|sage`: publish what a system already holds, then hand over to its source.

Owns the command line, the progress bars and the report; the work is the source component's
`load` hook (sagesf.runner `Component.load`, run by sagesf.load `InitialLoad.run`), so the core
imports no connector. Exit codes: 0 loaded (or loaded before); 1 stopped, or the system stayed
unreachable: run the same command again, it goes on where it stopped; 2 bad input or a setting
that stops it (the line names the variable).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from sagesf.cli.output import fail, new_console
from sagesf.errors import StartupError
from sagesf.load import InitialLoad, LoadPart, LoadRequest
from sagesf.logs import configure_logging
from sagesf.retry import RetriesExhausted
from sagesf.runner import Component, Stopped, assembled, component

__all__ = ["load_command"]


def load_command(
    system: Annotated[
        str, typer.Argument(metavar="SYSTEM", help="salesforce or sage (or the name of a source component).")
    ],
    since: Annotated[
        str | None,
        typer.Option("--since", help="Load the orders dated on or after this day (YYYY-MM-DD); default: all"),
    ] = None,
    go_live: Annotated[
        str | None,
        typer.Option(
            "--go-live",
            help="Orders dated on or after this day (YYYY-MM-DD) are new orders the processors send to "
            "Sage; default: none, every loaded order was entered in Sage by hand and is kept as history.",
        ),
    ] = None,
    restart: Annotated[
        bool,
        typer.Option("--restart", help="Forget an earlier load, finished or not, and load everything again."),
    ] = False,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")] = "WARNING",
) -> None:
    """Publish the records a system holds before go-live as its live source would, then hand over.

    Reads every record the source's mapping covers (Salesforce: Bulk API 2.0 query jobs, REST
    queries for small sets; Sage 100: one ODBC scan per table), publishes it to the canonical
    topics with the source's own mapping and event IDs, and stores where the live source starts
    (`sagesf run salesforce-source` / `sage-source`): nothing older is published again, nothing
    newer is missed. Interrupted (Ctrl-C, a crash), the same command goes on from the last
    checkpoint; run after it finished, it publishes nothing. Start the live source after the load.
    """
    request = LoadRequest(since=_day(since, "--since"), go_live=_day(go_live, "--go-live"), restart=restart)
    chosen = _loader(system)
    configure_logging(log_level.upper(), component=f"load {chosen.name}")
    console = new_console()
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with assembled(chosen) as process:
            process.stop = stop
            assert chosen.load is not None  # _loader chose one that has it
            load = chosen.load(process, request)
            with _bars(console, load) as bars:
                load.progress.watch(bars.show)
                done = load.run(stop)
    except StartupError as exc:
        raise fail(f"{chosen.name}: {exc.line()}") from None
    except Stopped:
        done = False
    except RetriesExhausted as exc:
        console.print(_report(load))
        raise fail(f"{exc}; run the command again to go on from the last checkpoint", 1) from None
    console.print(_report(load))
    for note in load.progress.notes:
        console.print(f"[dim]-[/dim] {escape(note)}")
    if not done:
        console.print("[yellow]stopped[/yellow]: run the same command again to go on where it stopped")
        raise typer.Exit(1)


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not a day (YYYY-MM-DD)", param_hint=option) from None


def _loader(system: str) -> Component:
    """The source component that loads `system` (`salesforce` -> salesforce-source)."""
    for name in (system, f"{system}-source"):
        try:
            found = component(name)
        except KeyError:
            continue
        if found.load is not None:
            return found
    raise fail(f"nothing loads {system!r}: give salesforce or sage (a source component with a load)")


class _Rate(ProgressColumn):
    """Records per second (rich's own speed column speaks bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.0f}/s", style="progress.data.speed")


class _Bars:
    """One rich progress bar per part: records published of the total, rate, time remaining."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def show(self, part: LoadPart) -> None:
        task = self.tasks.get(part.name)
        if task is None:
            task = self.tasks[part.name] = self.progress.add_task(part.name, total=part.total)
        dead = f"[red]{part.dead_letters} dead letters[/red]" if part.dead_letters else ""
        total = part.total if part.total is not None else (part.published if part.done else None)
        self.progress.update(task, total=total, completed=part.published, dead=dead)


@contextmanager
def _bars(console: Console, load: InitialLoad) -> Iterator[_Bars]:
    progress = Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[dead]}"),
        console=console,
    )
    bars = _Bars(progress)
    for part in load.progress.parts.values():
        bars.show(part)
    with progress:
        yield bars


def _report(load: InitialLoad) -> Table:
    table = Table(title="initial load", title_justify="left")
    for column in ("part", "published", "of", "this run", "dead letters", "state"):
        table.add_column(column, justify="left" if column in ("part", "state") else "right")
    for part in load.progress.parts.values():
        table.add_row(
            escape(part.name),
            f"{part.published:,}",
            "-" if part.total is None else f"{part.total:,}",
            f"{part.published - part.resumed_at:,}",
            f"[red]{part.dead_letters}[/red]" if part.dead_letters else "0",
            "[green]done[/green]" if part.done else "[yellow]not done[/yellow]",
        )
    return table
