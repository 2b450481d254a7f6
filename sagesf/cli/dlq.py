"""`sagesf dlq list|show|replay`: the dead letters of each stage, their reasons, and sending them back.

Owns the command lines and their reports; the work is in sagesf.dead_letter_replay, the stage
table in sagesf.stages. Exit codes: 0 done; 1 dead letters not found, a source's dead letter that
still fails, or a replay Kafka did not acknowledge; 2 bad input, an unreachable cluster or a
missing topic.
"""

from __future__ import annotations

from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.markup import escape
from rich.table import Table

from sagesf.cli.clients import registry_client, topic_reader
from sagesf.cli.output import fail, new_console, utc_time
from sagesf.cli.stage_options import StageArgument, TimeoutOption, stage_named
from sagesf.config import load_settings
from sagesf.dead_letter_replay import (
    DeadLetter,
    MarkersUnreadable,
    ReplayItem,
    ReplayMarkers,
    missing_offsets,
    read_dead_letters,
    replay_dead_letters,
    summarise,
)
from sagesf.errors import Retriable, StartupError
from sagesf.producer import ProduceFailed
from sagesf.record_display import WireDecoder
from sagesf.stages import Stage, StageSettings, load_stages
from sagesf.topic_names import POSITIONS

__all__ = ["cli", "parse_positions"]

cli = typer.Typer(
    no_args_is_help=True,
    help="Dead letters: list them with their reasons, inspect them, replay them after the cause is fixed.",
)

MarkersOption = Annotated[
    str,
    typer.Option(
        "--markers-topic",
        envvar="SAGESF_DLQ_MARKERS_TOPIC",
        help="Compacted topic recording which dead letters were replayed.",
    ),
]


def parse_positions(values: list[str]) -> list[tuple[int, int]]:
    """`N` (partition 0) or `P:N` -> (partition, offset)."""
    out = []
    for value in values:
        partition, _, offset = value.rpartition(":")
        try:
            out.append((int(partition) if partition else 0, int(offset)))
        except ValueError:
            raise typer.BadParameter(f"{value!r}: give an offset N, or PARTITION:OFFSET") from None
    return out


@cli.command("list")
def list_command(
    stage: Annotated[
        str | None, typer.Option("--stage", "-s", help="Only this stage's dead letters.")
    ] = None,
    scan: Annotated[
        int, typer.Option("--scan", min=1, help="Read at most this many newest dead letters per partition.")
    ] = 10_000,
    top: Annotated[int, typer.Option("--top", min=1, help="Reasons shown per stage.")] = 3,
    markers_topic: MarkersOption = POSITIONS,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Per stage: how many dead letters, the oldest and newest, the top reasons, how many replayed.

    Counts are what each dead-letter topic holds now (retention: 30 days). Reasons (error class:
    first line of the message) are counted over the newest --scan dead letters per partition.
    """
    settings = load_settings(StageSettings)
    stages = [stage_named(settings, stage)] if stage else list(load_stages(settings).values())
    console = new_console()
    table = Table(title="dead letters", title_justify="left")
    for column in ("stage", "topic", "count", "replayed", "oldest", "newest"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("count", "replayed") else "left")
    table.add_column("top reasons", overflow="fold")
    notes = []
    with topic_reader(settings, timeout) as reader:
        markers = ReplayMarkers(settings.kafka, markers_topic)
        try:
            replayed = set(markers.load(timeout))
        except KafkaException:
            replayed = set()
            notes.append(f"replay markers unknown: topic {markers_topic} cannot be read")
        for item in stages:
            summary = summarise(reader, item, max_scan=scan, replayed=replayed)
            if not summary.exists:
                table.add_row(item.name, item.dlq_topic, "[yellow]missing[/yellow]", "", "", "", "")
                continue
            reasons = "\n".join(
                f"{count} x {escape(reason)}" for reason, count in summary.reasons.most_common(top)
            )
            more = len(summary.reasons) - top
            if more > 0:
                reasons += f"\n[dim]+{more} other reason(s)[/dim]"
            if summary.partial:
                reasons += f"\n[dim](reasons from the newest {summary.scanned})[/dim]"
            count_style = "red" if summary.count else "green"
            table.add_row(
                item.name,
                item.dlq_topic,
                f"[{count_style}]{summary.count}[/{count_style}]",
                str(summary.replayed),
                utc_time(summary.oldest_ms),
                utc_time(summary.newest_ms),
                reasons,
            )
    console.print(table)
    for note in notes:
        console.print(f"[dim]note: {escape(note)}[/dim]")


def _letter_table(letter: DeadLetter, decoder: WireDecoder, marker: object, stacktrace: bool) -> Table:
    rec = letter.record
    table = Table(show_header=False)
    table.add_column("field", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("origin", escape(f"{letter.origin} (topic/partition/offset)"))
    table.add_row("stage", escape(f"{letter.stage or '?'} / {letter.step or '?'} in {letter.where or '?'}"))
    table.add_row("error", f"[red]{escape(letter.error_class)}[/red]")
    table.add_row("message", escape(letter.error_message))
    if letter.field is not None:
        table.add_row("field", escape(letter.field))
        table.add_row("field value", escape(letter.field_value or ""))
    if letter.replayed_from:
        table.add_row("was a replay of", escape(letter.replayed_from))
    if marker is not None:
        to = marker.get("to", "?") if isinstance(marker, dict) else marker
        at = utc_time(marker.get("at")) if isinstance(marker, dict) else "?"
        table.add_row("replayed", escape(f"to {to} at {at}"))
    key = decoder.decode(rec.key)
    table.add_row("key", escape(f"{key.text(indent=None)}  [{key.label()}]"))
    headers = letter.original_headers
    if headers:
        shown = "\n".join(f"{k}: {v.decode('utf-8', errors='replace')}" for k, v in headers)
        table.add_row("headers", escape(shown))
    value = decoder.decode(rec.value)
    table.add_row("value", escape(f"[{value.label()}]\n{value.text()}"))
    if stacktrace and letter.stacktrace:
        table.add_row("stacktrace", escape(letter.stacktrace))
    return table


@cli.command("show")
def show_command(
    stage: StageArgument,
    offset: Annotated[
        list[str] | None,
        typer.Option(
            "--offset",
            "-o",
            help="Only this dead letter: OFFSET (partition 0) or PARTITION:OFFSET; repeatable.",
        ),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", "-n", min=1, help="Without --offset: the newest N per partition.")
    ] = 20,
    stacktrace: Annotated[bool, typer.Option("--stacktrace", help="Include the stack traces.")] = False,
    markers_topic: MarkersOption = POSITIONS,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Each dead letter: where it came from, the error, and the original key and value.

    Keys and values in the Confluent wire format are decoded with their writer schema from the
    schema registry; anything else is shown as text, or hex when it is not text.
    """
    settings = load_settings(StageSettings)
    chosen = stage_named(settings, stage)
    positions = parse_positions(offset) if offset else None
    console = new_console()
    with topic_reader(settings, timeout) as reader:
        letters = read_dead_letters(
            reader, chosen.dlq_topic, offsets=positions, last=None if positions else limit
        )
        markers: ReplayMarkers | None = ReplayMarkers(settings.kafka, markers_topic)
        try:
            markers.load(timeout)  # type: ignore[union-attr]  # just set
        except KafkaException:
            markers = None  # shown without replay marks
    decoder = WireDecoder(registry_client(settings))
    if not letters:
        console.print(
            f"no dead letters in {chosen.dlq_topic}" + (" at the given offsets" if positions else "")
        )
    for letter in letters:
        rec = letter.record
        console.print(
            f"\n[bold]{escape(rec.topic)} partition {rec.partition} offset {rec.offset}[/bold]"
            f"  ·  dead-lettered {utc_time(rec.timestamp_ms)}"
        )
        console.print(_letter_table(letter, decoder, markers.get(letter) if markers else None, stacktrace))
    if decoder.registry_error:
        console.print(f"[yellow]note:[/yellow] {escape(decoder.registry_error)}; values shown raw")
    missing = missing_offsets(positions, letters)
    if missing:
        console.print(f"[yellow]not found in {chosen.dlq_topic}:[/yellow] {', '.join(missing)}")
        raise typer.Exit(1)


@cli.command("replay")
def replay_command(
    stage: StageArgument,
    offset: Annotated[
        list[str] | None,
        typer.Option(
            "--offset", "-o", help="Replay this dead letter: OFFSET or PARTITION:OFFSET; repeatable."
        ),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter the topic holds.")] = False,
    again: Annotated[
        bool, typer.Option("--again", help="Also re-send dead letters that were replayed before.")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be sent; send nothing.")] = False,
    markers_topic: MarkersOption = POSITIONS,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Send dead letters back to their original topic, after the cause is fixed.

    Each goes to its original topic and partition with its original key, value and headers (the
    error headers removed, `__sagesf.replayed.from: <dlq topic>/<partition>/<offset>` added),
    acknowledged by Kafka before it is marked replayed. A dead letter marked replayed is not sent
    again unless --again. Replaying twice is harmless anyway: every sink writes idempotently.
    Dead letters of a source (origin: a Sage table, a Salesforce channel) are re-read from the
    source instead (with the source's own settings, SAGESF_SAGE100__* or SAGESF_SALESFORCE__*)
    and published as the source would publish them now; one that still fails is reported and not
    marked (exit code 1).
    """
    if bool(offset) == all_:
        raise fail("give --offset (one or more) or --all")
    settings = load_settings(StageSettings)
    chosen = stage_named(settings, stage)
    positions = parse_positions(offset) if offset else None
    console = new_console()
    decoder = WireDecoder(registry_client(settings))
    with topic_reader(settings, timeout) as reader:
        markers = ReplayMarkers(settings.kafka, markers_topic)
        try:
            done = replay_dead_letters(
                reader,
                settings.kafka,
                chosen,
                markers,
                offsets=positions,
                again=again,
                dry_run=dry_run,
                timeout=timeout,
            )
        except MarkersUnreadable as exc:
            raise fail(str(exc)) from None
        except ProduceFailed as exc:
            raise fail(f"replay not acknowledged by Kafka, nothing marked replayed: {exc}", 1) from None
        except Retriable as exc:
            raise fail(f"{chosen.name} cannot be read now, nothing marked replayed: {exc}", 1) from None
        except StartupError as exc:
            raise fail(f"{chosen.name}: {exc.line()}") from None
    items, report = done.items, done.report
    sent = {letter.ref: f"{d.topic}/{d.partition}/{d.offset}" for letter, d in report.sent}
    console.print(_replay_table(chosen, items, sent, report.not_sent, decoder, dry_run))
    to_send = sum(item.send for item in items)
    skipped = len(items) - to_send
    if dry_run:
        console.print(f"dry run: would replay {to_send} dead letter(s), {skipped} skipped; nothing sent")
    elif to_send:
        failed = f", [red]{len(report.not_sent)} not replayed[/red]" if report.not_sent else ""
        console.print(f"[green]replayed {len(sent)} dead letter(s)[/green]{failed}, {skipped} skipped")
    else:
        console.print(f"nothing to replay: {skipped} dead letter(s) skipped")
    missing = done.missing(positions)
    if missing:
        console.print(f"[yellow]not found in {chosen.dlq_topic}:[/yellow] {', '.join(missing)}")
    if missing or report.not_sent:
        raise typer.Exit(1)


def _replay_table(
    stage: Stage,
    items: list[ReplayItem],
    sent: dict[str, str],
    not_sent: dict[str, str],
    decoder: WireDecoder,
    dry_run: bool,
) -> Table:
    table = Table(title=f"replay of {stage.dlq_topic}", title_justify="left")
    table.add_column("dead letter", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("error", overflow="fold")
    table.add_column("action", overflow="fold")
    for item in items:
        letter = item.letter
        if item.skip is not None:
            action = f"[yellow]skipped[/yellow]: {escape(item.skip)}"
        elif dry_run and item.reread:
            action = f"would re-read {escape(letter.origin_topic or '?')} from {stage.name} and publish it"
        elif dry_run:
            where = item.partition if item.partition is not None else "(by key)"
            action = f"would send to {escape(letter.origin_topic or '?')}/{where}"
        elif letter.ref in not_sent:
            action = f"[red]not replayed[/red]: {escape(not_sent[letter.ref])}"
        else:
            how = "re-read and sent" if item.reread else "sent"
            action = f"[green]{how}[/green] to {escape(sent.get(letter.ref, '?'))}"
        table.add_row(
            f"{letter.record.partition}:{letter.record.offset}",
            escape(decoder.decode(letter.record.key).text(indent=None)),
            escape(letter.reason(80)),
            action,
        )
    return table
