"""The operator commands: `sagesf dlq list|show|replay`, `sagesf replay`, `sagesf trace`.

Owns the command lines and their rich reports; the work is in sagesf.dead_letter_replay,
sagesf.stage_replay and sagesf.trace, the stage table in sagesf.stages. Kafka and registry
settings come from `sagesf.config` (SAGESF_KAFKA__*, SAGESF_REGISTRY__*), stage overrides from
SAGESF_STAGES__*. Secrets stay in the settings objects; nothing here prints them.

Exit codes: 0 done; 1 refused or partly done (a running stage, dead letters not found); 2 bad
input, an unreachable cluster or a missing topic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sagesf.config import load_settings
from sagesf.dead_letter_replay import (
    DeadLetter,
    ReplayItem,
    ReplayMarkers,
    read_dead_letters,
    replay,
    replay_plan,
    summarise,
)
from sagesf.producer import ProduceFailed
from sagesf.record_display import WireDecoder
from sagesf.stage_replay import GroupActive, NotReplayable, ResetPlan, apply_reset, plan_reset
from sagesf.stages import Stage, StageSettings, load_stages
from sagesf.topic_scan import ScanTimeout, TopicMissing, TopicReader
from sagesf.topics_file import TopicsFileError, load_topics, schemas_dir_for
from sagesf.trace import TraceResult, hit_value_text, trace_record

dlq_cli = typer.Typer(
    no_args_is_help=True,
    help="Dead letters: list them with their reasons, inspect them, replay them after the cause is fixed.",
)

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

StageArgument = Annotated[
    str, typer.Argument(help="Pipeline stage, e.g. orders, sage-sink (see `sagesf dlq list`).")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the cluster without progress.")
]
MarkersOption = Annotated[
    str,
    typer.Option(
        "--markers-topic",
        envvar="SAGESF_DLQ_MARKERS_TOPIC",
        help="Compacted topic recording which dead letters were replayed.",
    ),
]


# --- shared plumbing -----------------------------------------------------------------------------


def _console() -> Console:
    return Console(highlight=False)


def _fail(message: str, code: int = 2) -> typer.Exit:
    _console().print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def _settings() -> StageSettings:
    return load_settings(StageSettings)


def _stage(settings: StageSettings, name: str) -> Stage:
    stages = load_stages(settings)
    stage = stages.get(name)
    if stage is None:
        raise _fail(f"unknown stage {name!r}; stages: {', '.join(stages)}")
    return stage


def _admin(settings: StageSettings) -> AdminClient:
    conf: dict[str, str | int | float | bool] = {**settings.kafka.client_config(), "log_level": 2}
    return AdminClient(conf)


def _registry(settings: StageSettings) -> SchemaRegistryClient:
    return SchemaRegistryClient(settings.registry.client_config())


@contextmanager
def _cluster(settings: StageSettings, timeout: float) -> Iterator[TopicReader]:
    """A TopicReader; Kafka and scan failures become a one-line error and exit code 2."""
    try:
        with TopicReader(settings.kafka, timeout=timeout) as reader:
            yield reader
    except TopicMissing as exc:
        raise _fail(f"topic {exc.args[0]} does not exist on the cluster (see `sagesf topics diff`)") from None
    except (KafkaException, ScanTimeout) as exc:
        raise _fail(f"Kafka at {settings.kafka.bootstrap_servers}: {exc}") from None


def _time(ms: int | None) -> str:
    if ms is None or ms < 0:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str, *, now: datetime | None = None) -> int:
    """ISO 8601 (UTC unless it names a zone) or a duration ago (`90m`, `24h`, `7d`) -> epoch ms."""
    match = _DURATION.match(text)
    if match:
        ago = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        return int(((now or datetime.now(UTC)) - ago).timestamp() * 1000)
    try:
        stamp = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(
            f"{text!r} is neither an ISO time (2026-03-14T15:09:00Z) nor a duration (90m, 24h, 7d)"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    return int(stamp.timestamp() * 1000)


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


# --- sagesf dlq list ------------------------------------------------------------------------------


@dlq_cli.command("list")
def dlq_list(
    stage: Annotated[
        str | None, typer.Option("--stage", "-s", help="Only this stage's dead letters.")
    ] = None,
    scan: Annotated[
        int, typer.Option("--scan", min=1, help="Read at most this many newest dead letters per partition.")
    ] = 10_000,
    top: Annotated[int, typer.Option("--top", min=1, help="Reasons shown per stage.")] = 3,
    markers_topic: MarkersOption = "positions.v1",
    timeout: TimeoutOption = 30.0,
) -> None:
    """Per stage: how many dead letters, the oldest and newest, the top reasons, how many replayed.

    Counts are what each dead-letter topic holds now (retention: 30 days). Reasons (error class:
    first line of the message) are counted over the newest --scan dead letters per partition.
    """
    settings = _settings()
    stages = [_stage(settings, stage)] if stage else list(load_stages(settings).values())
    console = _console()
    table = Table(title="dead letters", title_justify="left")
    for column in ("stage", "topic", "count", "replayed", "oldest", "newest"):
        table.add_column(column, no_wrap=True, justify="right" if column in ("count", "replayed") else "left")
    table.add_column("top reasons", overflow="fold")
    notes = []
    with _cluster(settings, timeout) as reader:
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
                _time(summary.oldest_ms),
                _time(summary.newest_ms),
                reasons,
            )
    console.print(table)
    for note in notes:
        console.print(f"[dim]note: {escape(note)}[/dim]")


# --- sagesf dlq show ------------------------------------------------------------------------------


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
        at = _time(marker.get("at")) if isinstance(marker, dict) else "?"
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


@dlq_cli.command("show")
def dlq_show(
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
    markers_topic: MarkersOption = "positions.v1",
    timeout: TimeoutOption = 30.0,
) -> None:
    """Each dead letter: where it came from, the error, and the original key and value.

    Keys and values in the Confluent wire format are decoded with their writer schema from the
    schema registry; anything else is shown as text, or hex when it is not text.
    """
    settings = _settings()
    chosen = _stage(settings, stage)
    positions = parse_positions(offset) if offset else None
    console = _console()
    with _cluster(settings, timeout) as reader:
        letters = read_dead_letters(
            reader, chosen.dlq_topic, offsets=positions, last=None if positions else limit
        )
        markers: ReplayMarkers | None = ReplayMarkers(settings.kafka, markers_topic)
        try:
            markers.load(timeout)  # type: ignore[union-attr]  # just set
        except KafkaException:
            markers = None  # shown without replay marks
    decoder = WireDecoder(_registry(settings))
    if not letters:
        console.print(
            f"no dead letters in {chosen.dlq_topic}" + (" at the given offsets" if positions else "")
        )
    for letter in letters:
        rec = letter.record
        console.print(
            f"\n[bold]{escape(rec.topic)} partition {rec.partition} offset {rec.offset}[/bold]"
            f"  ·  dead-lettered {_time(rec.timestamp_ms)}"
        )
        console.print(_letter_table(letter, decoder, markers.get(letter) if markers else None, stacktrace))
    if decoder.registry_error:
        console.print(f"[yellow]note:[/yellow] {escape(decoder.registry_error)}; values shown raw")
    missing = _missing(positions, letters)
    if missing:
        console.print(f"[yellow]not found in {chosen.dlq_topic}:[/yellow] {', '.join(missing)}")
        raise typer.Exit(1)


def _missing(positions: list[tuple[int, int]] | None, letters: list[DeadLetter]) -> list[str]:
    if not positions:
        return []
    found = {(d.record.partition, d.record.offset) for d in letters}
    return [f"{p}:{o}" for p, o in positions if (p, o) not in found]


# --- sagesf dlq replay ----------------------------------------------------------------------------


@dlq_cli.command("replay")
def dlq_replay(
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
    markers_topic: MarkersOption = "positions.v1",
    timeout: TimeoutOption = 30.0,
) -> None:
    """Send dead letters back to their original topic, after the cause is fixed.

    Each goes to its original topic and partition with its original key, value and headers (the
    error headers removed, `__sagesf.replayed.from: <dlq topic>/<partition>/<offset>` added),
    acknowledged by Kafka before it is marked replayed. A dead letter marked replayed is not sent
    again unless --again. Replaying twice is harmless anyway: every sink writes idempotently.
    Dead letters of sources (origin: a Salesforce channel or a Sage table) cannot be replayed;
    re-read them from the source instead.
    """
    if bool(offset) == all_:
        raise _fail("give --offset (one or more) or --all")
    settings = _settings()
    chosen = _stage(settings, stage)
    positions = parse_positions(offset) if offset else None
    console = _console()
    decoder = WireDecoder(_registry(settings))
    with _cluster(settings, timeout) as reader:
        letters = read_dead_letters(reader, chosen.dlq_topic, offsets=positions)
        markers = ReplayMarkers(settings.kafka, markers_topic)
        try:
            markers.load(timeout)
        except KafkaException as exc:
            raise _fail(
                f"cannot read the replay markers in {markers_topic} ({exc}); "
                "create it with `sagesf topics apply`"
            ) from None
        items = replay_plan(letters, markers, reader, again=again)
        sent: dict[str, str] = {}
        if not dry_run and any(item.send for item in items):
            try:
                delivered = replay(settings.kafka, items, markers, timeout=timeout)
            except ProduceFailed as exc:
                raise _fail(f"replay not acknowledged by Kafka, nothing marked replayed: {exc}", 1) from None
            sent = {letter.ref: f"{d.topic}/{d.partition}/{d.offset}" for letter, d in delivered}
        if not dry_run:
            markers.prune(reader, chosen.dlq_topic)
    console.print(_replay_table(chosen, items, sent, decoder, dry_run))
    to_send = sum(item.send for item in items)
    skipped = len(items) - to_send
    if dry_run:
        console.print(f"dry run: would replay {to_send} dead letter(s), {skipped} skipped; nothing sent")
    elif to_send:
        console.print(f"[green]replayed {len(sent)} dead letter(s)[/green], {skipped} skipped")
    else:
        console.print(f"nothing to replay: {skipped} dead letter(s) skipped")
    missing = _missing(positions, letters)
    if missing:
        console.print(f"[yellow]not found in {chosen.dlq_topic}:[/yellow] {', '.join(missing)}")
        raise typer.Exit(1)


def _replay_table(
    stage: Stage, items: list[ReplayItem], sent: dict[str, str], decoder: WireDecoder, dry_run: bool
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
        elif dry_run:
            where = item.partition if item.partition is not None else "(by key)"
            action = f"would send to {escape(letter.origin_topic or '?')}/{where}"
        else:
            action = f"[green]sent[/green] to {escape(sent.get(letter.ref, '?'))}"
        table.add_row(
            f"{letter.record.partition}:{letter.record.offset}",
            escape(decoder.decode(letter.record.key).text(indent=None)),
            escape(letter.reason(80)),
            action,
        )
    return table


# --- sagesf replay --------------------------------------------------------------------------------


def replay_stage(
    stage: StageArgument,
    from_: Annotated[
        str,
        typer.Option(
            "--from",
            help="ISO time (UTC unless a zone is given), a duration ago (2h, 1d), or an offset (digits).",
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show per partition what would be re-processed; change nothing.")
    ] = False,
    topic: Annotated[
        list[str] | None,
        typer.Option("--topic", "-t", help="Only this input topic of the stage; repeatable."),
    ] = None,
    partition: Annotated[
        list[int] | None, typer.Option("--partition", "-p", help="Only this partition; repeatable.")
    ] = None,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Re-run a stage from a point in its input, by moving its consumer group's offsets back.

    Safe because every effect is idempotent: sinks write with idempotency keys and the processors'
    commands are de-duplicated by them, so re-processed records change nothing that is already
    right. The stage must be stopped first (all its processes: the four processor stages share
    the faust app's group); the command refuses while the group has members. Offsets only move
    back: a partition already before the point is left alone rather than skipping records.
    Stop the stage, run with --dry-run, run without, start the stage.
    """
    settings = _settings()
    chosen = _stage(settings, stage)
    text = from_.strip()
    from_offset = int(text) if text.isdigit() else None
    from_time = parse_time(text) if from_offset is None else None
    origin = f"offset {from_offset}" if from_offset is not None else _time(from_time)
    console = _console()
    admin = _admin(settings)
    with _cluster(settings, timeout) as reader:
        try:
            plan = plan_reset(
                admin,
                reader,
                chosen,
                from_time_ms=from_time,
                from_offset=from_offset,
                topics=topic,
                partitions=partition,
                origin=origin,
                timeout=timeout,
            )
        except NotReplayable as exc:
            raise _fail(str(exc)) from None
        except ValueError as exc:
            raise _fail(str(exc)) from None
        console.print(_plan_table(plan))
        if dry_run:
            console.print(
                f"dry run: stage {chosen.name} (group {plan.group}) would re-process "
                f"{plan.reprocessed} record(s) on {len(plan.moving)} partition(s); nothing changed"
            )
            return
        try:
            moved = apply_reset(admin, plan, timeout=timeout)
        except GroupActive as exc:
            raise _fail(str(exc), 1) from None
    if moved:
        console.print(
            f"[green]moved[/green] group {plan.group} on {len(moved)} partition(s): stage {chosen.name} "
            f"re-processes {plan.reprocessed} record(s) from {origin} when it starts"
        )
    else:
        console.print(f"nothing to move: group {plan.group} is already at or before {origin}")


def _plan_table(plan: ResetPlan) -> Table:
    table = Table(
        title=f"stage {plan.stage.name}, group {plan.group}, from {plan.origin}", title_justify="left"
    )
    for column in ("topic", "partition", "committed", "new offset", "end", "re-processed", "to process"):
        table.add_column(column, no_wrap=True, justify="left" if column == "topic" else "right")
    table.add_column("note", overflow="fold")
    for p in plan.partitions:
        table.add_row(
            p.topic,
            str(p.partition),
            "-" if p.committed is None else str(p.committed),
            str(p.target) if p.moves else "[dim]unchanged[/dim]",
            str(p.high),
            str(p.reprocessed),
            str(p.to_process),
            escape(p.note or ""),
        )
    return table


# --- sagesf trace ---------------------------------------------------------------------------------


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
    settings = _settings()
    since_ms = parse_time(since)
    path = file or settings.topics_file
    if topic:
        names = list(topic)
    else:
        try:
            names = [t.name for t in load_topics(path, schemas_dir_for(path, settings.schemas_dir)).topics]
        except TopicsFileError as exc:
            raise _fail(f"{path} is invalid:\n{exc}") from None
    console = _console()
    stages = list(load_stages(settings).values())
    status = console.status(f"scanning {len(names)} topics since {_time(since_ms)} ...")
    with _cluster(settings, timeout) as reader, status:
        result = trace_record(
            reader,
            WireDecoder(_registry(settings)),
            stages,
            names,
            record_id,
            since_ms=since_ms,
            limit=limit,
            depth=depth,
        )
    _print_trace(console, result, since_ms, values)


def _print_trace(console: Console, result: TraceResult, since_ms: int, values: bool) -> None:
    table = Table(title=f"trace of {result.record_id} since {_time(since_ms)}", title_justify="left")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("stage", overflow="fold")
    table.add_column("topic/partition/offset", no_wrap=True)
    table.add_column("key", overflow="fold")
    table.add_column("found by", no_wrap=True)
    table.add_column("outcome", overflow="fold")
    for hit in result.hits:
        style = "red" if hit.outcome.startswith("DEAD LETTER") or "REJECTED" in hit.outcome else ""
        outcome = f"[{style}]{escape(hit.outcome)}[/{style}]" if style else escape(hit.outcome)
        found = "id" if hit.match == "id" else f"{hit.match} {hit.matched}"
        table.add_row(
            _time(hit.record.timestamp_ms),
            escape(hit.stage),
            hit.record.position,
            escape(hit.key_text),
            escape(found),
            outcome,
        )
        if values:
            table.add_row("", "", "", "", "", f"[dim]{escape(hit_value_text(hit))}[/dim]")
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
