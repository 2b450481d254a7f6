"""`sagesf preflight <system>`: before going live, does the system have everything sagesf needs?

Owns the command line and its report. The checks themselves belong to the components: every
installed component named `<system>` or `<system>-...` (`salesforce` -> salesforce-source and
salesforce-sink) that gives a `preflight` hook (sagesf.runner `Component.preflight`) is assembled
from its settings as `sagesf run` would, without starting, and asked. Their checks are merged
(sagesf.preflight `merge`: one line per object, field, table or column, with everyone who needs
it), summed up per kind in a table, and what failed is printed with how to add it.

Exit codes: 0 everything needed is there (checks that could not be made are listed, with how to
check by hand); 1 something is missing or not as needed; 2 a wrong setting, refused credentials,
a system that cannot be reached, or no component that checks that system.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sagesf.cli.output import counted, fail, new_console
from sagesf.errors import Retriable, StartupError
from sagesf.preflight import Check, Outcome, merge
from sagesf.runner import Component, assembled, components

__all__ = ["preflight_command"]

_STYLE = {
    Outcome.OK: "green",
    Outcome.MISSING: "red",
    Outcome.DIFFERENT: "red",
    Outcome.UNKNOWN: "yellow",
}


def preflight_command(
    system: Annotated[
        str,
        typer.Argument(help="salesforce or sage: the system to check (or one component: salesforce-source)"),
    ],
    show_all: Annotated[bool, typer.Option("--all", help="List every check, not only what failed.")] = False,
) -> None:
    """Check that Salesforce or Sage 100 has every object, field, event, channel, permission, table
    and column the components need; say how to add what is missing. Exit 1 when something is."""
    hooks = _hooks(system)
    checks: list[Check] = []
    for hook in hooks:
        checks += _checks_of(hook)
    merged = merge(checks)
    console = new_console()
    console.print(f"preflight {system}: what {', '.join(h.name for h in hooks)} need")
    console.print(_summary(merged))
    for check in merged:
        if check.outcome is not Outcome.OK or show_all:
            style = _STYLE[check.outcome]
            needed = f" [dim](needed by {', '.join(check.needed_by)})[/dim]" if check.needed_by else ""
            console.print(f"[{style}]{check.outcome.value:>9}[/{style}]  {escape(check.message())}{needed}")
    failed = [check for check in merged if check.failed]
    if failed:
        console.print(
            f"[red]{counted(len(failed), 'problem')}[/red]: add what is missing, then run this again"
        )
        raise typer.Exit(1)
    console.print(f"[green]{system}: everything the components need is there[/green]")


def _hooks(system: str) -> list[Component]:
    offering = {name: c for name, c in components().items() if c.preflight is not None}
    chosen = [c for name, c in offering.items() if name == system or name.startswith(system + "-")]
    if not chosen:
        systems = sorted({name.split("-")[0] for name in offering} | set(offering))
        raise fail(f"no installed component checks {system!r} (known: {', '.join(systems) or 'none'})")
    return chosen


def _checks_of(hook: Component) -> list[Check]:
    assert hook.preflight is not None
    try:
        with assembled(hook) as process:
            return [
                check if check.needed_by else replace(check, needed_by=(hook.name,))
                for check in hook.preflight(process)
            ]
    except StartupError as exc:
        raise fail(f"{hook.name}: {exc.line()}") from None
    except Retriable as exc:
        raise fail(f"{hook.name}: cannot reach the system now: {exc}") from None


def _summary(checks: list[Check]) -> Table:
    table = Table()
    table.add_column("checked", no_wrap=True)
    for outcome in Outcome:
        table.add_column(outcome.value, justify="right", no_wrap=True)
    by_kind: dict[str, Counter[Outcome]] = {}
    for check in checks:
        by_kind.setdefault(check.kind, Counter())[check.outcome] += 1
    for kind, counts in by_kind.items():
        cells = [
            f"[{_STYLE[o]}]{counts[o]}[/{_STYLE[o]}]" if counts[o] and o is not Outcome.OK else str(counts[o])
            for o in Outcome
        ]
        table.add_row(kind, *cells)
    return table
