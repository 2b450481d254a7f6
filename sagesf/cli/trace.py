"""`sagesf trace`: one record's path through every topic, as a table.

Owns the command line and its report; the work is in sagesf.trace. Every text it prints from a
record (key, outcome, value) is masked with sagesf.logs.redact: a dead letter written before its
headers were masked may still hold a driver's echo of a connection string. Exit codes: 0 records
found; 1 none found; 2 bad input, an invalid topics file or an unreachable cluster.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sagesf.cli.clients import registry_client, topic_reader
from sagesf.cli.output import fail, new_console, utc_time
from sagesf.cli.stage_options import TimeoutOption, parse_time
from sagesf.config import load_settings
from sagesf.logs import redact, register_settings_secrets
from sagesf.record_display import WireDecoder
from sagesf.stages import StageSettings, load_stages
from sagesf.topics_file import TopicsFileError, load_topics, schemas_dir_for
from sagesf.trace import TraceResult, hit_value_text, trace_record

__all__ = ["trace_command"]


def trace_command(
    record_id: Annotated[
        str, typer.Argument(help="A Salesforce ID, a Sage key (SalesOrderNo, ItemCode, ...) or a command ID.")
    ],
    since: Annotated[
        str, typer.Option("--since", help="How far back to look: a duration (24h, 7d) or an ISO time.")
    ] = "24h",
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Keep at most this many records.")] = 200,
    depth: Annotated[
        int, typer.Option("--depth", min=0, max=5, help="Link scans after the first (0: the id only).")
    ] = 1,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="Only these topics (default: all in topics.yaml)."),
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="Topics file (default: settings topics_file).")
    ] = None,
    values: Annotated[bool, typer.Option("--values", help="Also print each record's decoded value.")] = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """One record's path through every topic: stage, time, topic/partition/offset, key, outcome.

    A full scan, not an index: it reads every topic declared in topics.yaml from --since to now,
    looks for the id in keys, values and dead-letter headers, then follows the IDs it finds (the
    Sage order number, command and correlation IDs) for --depth more scans. Cost grows with the
    data in the window; narrow --since or --topic on a busy cluster. Records older than --since or
    removed by retention are not found.
    """
    settings = load_settings(StageSettings)
    register_settings_secrets(settings)
    since_ms = parse_time(since)
    path = file or settings.topics_file
    if topic:
        names = list(topic)
    else:
        try:
            names = [t.name for t in load_topics(path, schemas_dir_for(path, settings.schemas_dir)).topics]
        except TopicsFileError as exc:
            raise fail(f"{path} is invalid:\n{exc}") from None
    console = new_console()
    stages = list(load_stages(settings).values())
    status = console.status(f"scanning {len(names)} topics since {utc_time(since_ms)} ...")
    with topic_reader(settings, timeout) as reader, status:
        result = trace_record(
            reader,
            WireDecoder(registry_client(settings)),
            stages,
            names,
            record_id,
            since_ms=since_ms,
            limit=limit,
            depth=depth,
        )
    _print_trace(console, result, since_ms, values)


def _print_trace(console: Console, result: TraceResult, since_ms: int, values: bool) -> None:
    table = Table(title=f"trace of {result.record_id} since {utc_time(since_ms)}", title_justify="left")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("stage", overflow="fold")
    table.add_column("topic/partition/offset", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("found by", no_wrap=True)
    table.add_column("outcome", overflow="fold")
    for hit in result.hits:
        style = "red" if hit.outcome.startswith("DEAD LETTER") or "REJECTED" in hit.outcome else ""
        outcome = _shown(hit.outcome)
        outcome = f"[{style}]{outcome}[/{style}]" if style else outcome
        found = "id" if hit.match == "id" else f"{hit.match} {hit.matched}"
        table.add_row(
            utc_time(hit.record.timestamp_ms),
            escape(hit.stage),
            hit.record.position,
            _shown(hit.key_text),
            _shown(found),
            outcome,
        )
        if values:
            table.add_row("", "", "", "", "", f"[dim]{_shown(hit_value_text(hit))}[/dim]")
    console.print(table)
    console.print(
        f"{len(result.hits)} record(s) in {len(result.topics)} topic(s); {result.scanned} records read "
        f"in {result.scans} scan(s)"
    )
    if result.truncated:
        console.print("[yellow]cut at --limit:[/yellow] more records match; narrow --since or raise --limit")
    if result.missing_topics:
        console.print(f"[dim]not on the cluster: {', '.join(result.missing_topics)}[/dim]")
    if result.registry_error:
        console.print(
            f"[yellow]note:[/yellow] {escape(result.registry_error)}; keys and values could not be "
            "decoded, so records are found as mentions only"
        )
    if not result.hits:
        raise typer.Exit(1)


def _shown(text: str) -> str:
    """Record text as the table prints it: secrets masked, rich markup escaped."""
    return escape(redact(text))
