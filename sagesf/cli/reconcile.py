"""`sagesf reconcile [--repair]`: compare Salesforce and Sage 100 through the mappings, once.

Owns the command line and the report; the sweep is sagesf.reconcile's, assembled from the
components' hooks by sagesf.reconciler, as the `reconciler` component runs it on a schedule.
Exit codes: 0 no drift; 1 drift found (also with --repair: the sinks write the repairs after the
command ends, so run it again to see the count reach 0); 2 a setting or a system that stops it.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sagesf.cli.output import fail, new_console
from sagesf.errors import SagesfError, StartupError
from sagesf.logs import configure_logging
from sagesf.reconcile import Reconciler, Sweep
from sagesf.reconciler import RECONCILER, ReconcileSettings, reconciliation, repair_publisher
from sagesf.runner import assembled

__all__ = ["reconcile_command"]


def reconcile_command(
    repair: Annotated[
        bool,
        typer.Option(
            "--repair", help="Publish the commands that converge what drifted (the sinks write them)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    orders_since: Annotated[
        str | None,
        typer.Option(
            "--orders-since", help="Compare orders dated on or after this day (YYYY-MM-DD): the go-live."
        ),
    ] = None,
    examples: Annotated[int | None, typer.Option("--examples", min=0, help="Drifts shown per kind.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR.")] = "WARNING",
) -> None:
    """Compare every linked customer, item, stock level and order of Salesforce and Sage 100.

    Reads Salesforce through Bulk API 2.0 query jobs (a handful of API calls whatever the size)
    and Sage with one ODBC scan per table, pairs records by their links (Account ExternalID__c
    and UDF_SALESFORCE_ID, Product2 Sage_Item_Code__c, the order's Salesforce ID), compares the
    fields the mappings carry in their direction, and reports drift by kind with examples.
    """
    configure_logging(log_level.upper(), component="reconcile")
    console = new_console()
    try:
        with assembled(RECONCILER) as process:
            settings = _with_options(process.settings(ReconcileSettings), orders_since, examples)
            with reconciliation(settings) as reconciler, console.status("reading Salesforce and Sage 100"):
                result = reconciler.sweep()
            sent = (
                Reconciler.repair(result, repair_publisher(process, settings))
                if repair and result.drifts
                else 0
            )
    except StartupError as exc:
        raise fail(f"reconcile: {exc.line()}") from None
    except SagesfError as exc:
        raise fail(f"reconcile: {exc}") from None
    if as_json:
        console.print_json(json.dumps({**result.as_json(settings.examples), "repairs_published": sent}))
    else:
        _report(console, result, settings.examples, sent if repair else None)
    raise typer.Exit(1 if result.drifts else 0)


def _with_options(settings: ReconcileSettings, since: str | None, examples: int | None) -> ReconcileSettings:
    changes: dict[str, object] = {}
    if since is not None:
        try:
            changes["orders_since"] = date.fromisoformat(since.strip())
        except ValueError:
            raise typer.BadParameter(
                f"{since!r} is not a day (YYYY-MM-DD)", param_hint="--orders-since"
            ) from None
    if examples is not None:
        changes["examples"] = examples
    return settings.model_copy(update=changes)


def _report(console: Console, result: Sweep, examples: int, sent: int | None) -> None:
    compared = ", ".join(f"{n} {kind}" for kind, n in sorted(result.compared.items()))
    calls = ", ".join(f"{system} {n}" for system, n in result.api_calls.items())
    console.print(f"compared {compared or 'nothing'} in {result.seconds:.1f} s (requests: {calls})")
    counts = result.counts()
    if not counts:
        console.print("[green]no drift[/green]")
        return
    table = Table(title="drift", title_justify="left")
    for column in ("kind", "count", "repairable", "examples"):
        table.add_column(column, justify="right" if column in ("count", "repairable") else "left")
    for kind, count in sorted(counts.items()):
        shown = [escape(d.shown()) for d in result.examples(kind, examples)]
        repairable = sum(1 for d in result.drifts if d.kind is kind and d.repair is not None)
        table.add_row(kind.value, str(count), str(repairable), "\n".join(shown))
    console.print(table)
    if sent is not None:
        console.print(
            f"{sent} repair command(s) published: run `sagesf reconcile` again once the sinks wrote them"
        )
