"""`sagesf link suggest|review|accept|reject|unlink`: record linking from the command line.

The logic is linking/decisions.py's (the web console calls the same functions); this module
reads settings, shows progress and tables, and writes through linking/store.py. Exit codes: 0 done
(also when nothing was left to do), 1 a decision refused (the message says why), 2 bad settings or
Kafka unreachable.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from linking import decisions
from linking.config import LinkSettings
from linking.decisions import Decision, Refused
from linking.store import LinkStore
from sagesf.cli.output import counted, fail, new_console
from sagesf.config import ConfigError, Settings, load_settings
from sagesf.errors import Retriable
from sagesf.link_state import CUSTOMER, ITEM, LINKED, SUGGESTED, SUPERSEDED, LinkBook
from sagesf.topic_scan import ScanTimeout

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True, help="Link Salesforce and Sage 100 records that are the same.")
console = new_console()

By = Annotated[str | None, typer.Option("--by", help="who decides (default: the login name)")]
Refs = Annotated[list[str], typer.Argument(help="pair keys, or the ID of a record in one pair")]


def _store() -> LinkStore:
    try:
        return LinkStore(load_settings(Settings), load_settings(LinkSettings))
    except ConfigError as exc:
        raise fail(str(exc)) from None


@contextmanager
def _kafka_errors(store: LinkStore) -> Iterator[None]:
    try:
        yield
    except (KafkaException, ScanTimeout, Retriable) as exc:
        raise fail(f"Kafka at {store.core.kafka.bootstrap_servers}: {exc}") from None


@contextmanager
def _progress() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bars:

        def start(what: str, total: int) -> Callable[[int], None]:
            task = bars.add_task(f"reading {what}", total=total)
            return lambda n: bars.advance(task, n)

        yield start


def _summary(decision: Decision) -> Table:
    table = Table("kind", "linked (score)", "linked (already named)", "waiting for review", "superseded")
    for kind in (CUSTOMER, ITEM):
        mine = [p for p in decision.changed if p.kind == kind]
        table.add_row(
            kind,
            str(sum(1 for p in mine if p.state == LINKED and p.how == "automatic")),
            str(sum(1 for p in mine if p.state == LINKED and p.how == "existing")),
            str(sum(1 for p in mine if p.state == SUGGESTED)),
            str(sum(1 for p in mine if p.state == SUPERSEDED)),
        )
    return table


@app.command("suggest")
def suggest_command(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="show what would change, write nothing")] = False,
) -> None:
    """Score every Account/customer and Product2/item pair; link the certain ones, queue the rest."""
    store = _store()
    with _kafka_errors(store), _progress() as progress:
        parties, articles = store.records(progress)
        book = store.book(progress)
    console.print(
        f"read {counted(len(parties), 'customer record')} and {counted(len(articles), 'item record')}"
    )
    decision = decisions.suggest(book, parties, articles, store.settings.thresholds, store.settings.fields)
    console.print(_summary(decision))
    if dry_run:
        console.print("dry run: nothing written")
        return
    with _kafka_errors(store):
        written = store.write(decision)
    console.print(f"wrote {counted(written, 'record')}; review the rest with `sagesf link review`")


@app.command("review")
def review_command(
    kind: Annotated[str | None, typer.Option("--kind", help="customer or item")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1)] = 50,
) -> None:
    """The pairs waiting for review, most likely first."""
    store = _store()
    with _kafka_errors(store):
        book = store.book()
    queue = decisions.review_queue(book, kind)
    table = Table("pair", "Salesforce", "Sage 100", "probability", "agreement (0 = equal)")
    for pair in queue[:limit]:
        levels = ", ".join(f"{k} {'-' if v is None else v}" for k, v in pair.comparison.items())
        table.add_row(
            escape(pair.key),
            escape(pair.salesforce_name),
            escape(pair.sage_name),
            f"{pair.probability:.4f}",
            levels,
        )
    console.print(table)
    console.print(
        f"{counted(len(queue), 'pair')} waiting; decide with `sagesf link accept|reject <pair>`"
        + (f" (first {limit} shown)" if len(queue) > limit else "")
    )


def _decide(refs: list[str], by: str | None, decide: Callable[[LinkBook, str, str], Decision]) -> None:
    store = _store()
    who = by or getpass.getuser()
    with _kafka_errors(store):
        book = store.book()
    refused = False
    for ref in refs:
        try:
            decision = decide(book, ref, who)
        except Refused as exc:
            console.print(f"[red]refused:[/red] {escape(str(exc))}")
            refused = True
            continue
        with _kafka_errors(store):
            store.write(decision)
        for pair in decision.changed:
            book.put(pair)
            console.print(f"{escape(pair.key)}: [bold]{pair.state}[/bold]")
        for note in decision.notes:
            console.print(escape(note))
    if refused:
        raise typer.Exit(1)


@app.command("accept")
def accept_command(refs: Refs, by: By = None) -> None:
    """Link the pairs (Account ExternalID__c and Sage UDF_SALESFORCE_ID; Product2 Sage_Item_Code__c)."""
    fields = load_settings(LinkSettings).fields
    _decide(
        refs, by, lambda book, ref, who: decisions.accept(book, decisions.find_pair(book, ref), who, fields)
    )


@app.command("reject")
def reject_command(refs: Refs, by: By = None) -> None:
    """Mark the pairs as different records: never suggested again."""
    _decide(refs, by, lambda book, ref, who: decisions.reject(book, decisions.find_pair(book, ref), who))


@app.command("unlink")
def unlink_command(refs: Refs, by: By = None) -> None:
    """Undo links: the Salesforce field cleared (Sage's UDF is cleared in Sage)."""
    fields = load_settings(LinkSettings).fields
    _decide(
        refs, by, lambda book, ref, who: decisions.unlink(book, decisions.find_pair(book, ref), who, fields)
    )
