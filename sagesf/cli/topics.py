"""`sagesf topics`: reconcile a Kafka cluster with topics.yaml, or render it for Kubernetes.

Owns the command line and its report; the work is in sagesf.topic_plan and sagesf.topic_render.
Kafka settings come from `sagesf.config.load_settings()` (SAGESF_KAFKA__*), the file from
`--file` (default SAGESF_TOPICS_FILE, `topics.yaml`). Exit codes: 0 done / in sync, 1 drift
(`diff`) or a failed change (`apply`), 2 an invalid file or an unreachable cluster.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from confluent_kafka import KafkaException
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sagesf.cli.clients import admin_client
from sagesf.cli.output import counted, new_console
from sagesf.cli.topics_file_option import FileOption, read_topics_file
from sagesf.config import Settings, load_settings
from sagesf.topic_plan import ChangeKind, Outcome, Plan, apply, plan
from sagesf.topic_render import render
from sagesf.topics_file import TopicsFile

__all__ = ["cli"]

cli = typer.Typer(no_args_is_help=True, help="Create and reconcile Kafka topics from topics.yaml.")

ReplicationOption = Annotated[
    int | None,
    typer.Option(
        "--replication-factor",
        min=1,
        envvar="SAGESF_TOPICS_REPLICATION_FACTOR",
        help="Use this replication factor instead of the file's (the sandbox's single broker: 1).",
    ),
]
TimeoutOption = Annotated[float, typer.Option("--timeout", min=1, help="Seconds to wait for the cluster.")]

_STYLE = {
    ChangeKind.CREATE: "green",
    ChangeKind.ADD_PARTITIONS: "green",
    ChangeKind.SET_CONFIG: "yellow",
    ChangeKind.DELETE: "red",
    ChangeKind.MORE_PARTITIONS: "magenta",
    ChangeKind.REPLICATION: "magenta",
    ChangeKind.STRAY: "dim",
}


def _load(file: Path | None) -> tuple[Settings, TopicsFile]:
    settings: Settings = load_settings()
    return settings, read_topics_file(settings, file)


def _plan(
    settings: Settings, topics: TopicsFile, replication: int | None, prune: bool, timeout: float
) -> Plan:
    admin = admin_client(settings)
    try:
        return plan(admin, topics, replication_factor=replication, prune=prune, timeout=timeout)
    except KafkaException as exc:
        new_console().print(
            f"[red]cannot read the cluster at {settings.kafka.bootstrap_servers}:[/red] {escape(str(exc))}"
        )
        raise typer.Exit(2) from None


def _print_plan(console: Console, planned: Plan, title: str) -> None:
    notes = Counter(note.split(": ", 1)[1] for note in planned.notes)
    for note, count in sorted(notes.items()):
        console.print(f"[dim]note: {note} ({count} topic{'s' if count > 1 else ''})[/dim]")
    if not planned.changes:
        console.print(f"[green]in sync[/green] with the file: {counted(len(planned.in_sync), 'topic')}")
        return
    table = Table(title=title, title_justify="left")
    table.add_column("topic", no_wrap=True)
    table.add_column("change", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for change in planned.changes:
        style = _STYLE[change.kind]
        table.add_row(change.topic, f"[{style}]{change.kind.value}[/{style}]", escape(change.detail))
    console.print(table)
    left = sum(not c.actionable for c in planned.changes)
    summary = f"{len(planned.in_sync)} in sync, {len(planned.actions)} to change"
    console.print(summary + (f", {left} that apply leaves as is" if left else ""))


def _print_outcomes(console: Console, outcomes: list[Outcome]) -> None:
    table = Table(title="applied", title_justify="left")
    table.add_column("topic", no_wrap=True)
    table.add_column("change", no_wrap=True)
    table.add_column("result", overflow="fold")
    for outcome in outcomes:
        result = "[green]ok[/green]" if outcome.ok else f"[red]failed:[/red] {escape(str(outcome.error))}"
        if outcome.ok and outcome.change.kind is not ChangeKind.CREATE:
            result += f" [dim]{escape(outcome.change.detail)}[/dim]"
        if outcome.note:
            result += f" [dim]({escape(outcome.note)})[/dim]"
        table.add_row(outcome.change.topic, outcome.change.kind.value, result)
    console.print(table)


@cli.command("diff")
def diff_command(
    file: FileOption = None,
    replication_factor: ReplicationOption = None,
    prune: Annotated[bool, typer.Option("--prune", help="Count undeclared topics as drift.")] = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Show how the cluster differs from the file; exit 1 on drift, 0 when in sync."""
    settings, topics = _load(file)
    planned = _plan(settings, topics, replication_factor, prune, timeout)
    console = new_console()
    _print_plan(console, planned, f"{settings.kafka.bootstrap_servers} vs {topics.source}")
    if planned.drift:
        raise typer.Exit(1)


@cli.command("apply")
def apply_command(
    file: FileOption = None,
    replication_factor: ReplicationOption = None,
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete topics in the file's scope that it does not declare.")
    ] = False,
    timeout: TimeoutOption = 30.0,
) -> None:
    """Create missing topics, raise partition counts and align configs; idempotent."""
    settings, topics = _load(file)
    planned = _plan(settings, topics, replication_factor, prune, timeout)
    console = new_console()
    if not planned.actions:
        if planned.changes:
            _print_plan(console, planned, f"{settings.kafka.bootstrap_servers} vs {topics.source}")
        left = [c for c in planned.changes if c.kind is not ChangeKind.STRAY]
        if left:
            console.print(f"nothing apply can change; {counted(len(left), 'difference')} left as is (above)")
        else:
            console.print(f"nothing to change: {counted(len(planned.in_sync), 'topic')} in sync")
        return
    admin = admin_client(settings)
    outcomes = apply(admin, planned, timeout=timeout)
    _print_outcomes(console, outcomes)
    left = [c for c in planned.changes if not c.actionable]
    for change in left:
        console.print(f"[magenta]not changed:[/magenta] {change.topic}: {escape(change.detail)}")
    failed = [o for o in outcomes if not o.ok]
    console.print(f"{counted(len(outcomes) - len(failed), 'change')} applied, {len(failed)} failed")
    if failed:
        raise typer.Exit(1)


@cli.command("render")
def render_command(
    file: FileOption = None,
    format: Annotated[str, typer.Option("--format", help="Output format: strimzi.")] = "strimzi",
    cluster: Annotated[
        str, typer.Option("--cluster", help="Strimzi Kafka cluster name (strimzi.io/cluster label).")
    ] = "my-cluster",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write here instead of stdout.")] = None,
    replication_factor: ReplicationOption = None,
) -> None:
    """Write the topics as Kubernetes resources (Strimzi KafkaTopic, multi-document YAML)."""
    _, topics = _load(file)
    try:
        text = render(topics, format, cluster=cluster, replication_factor=replication_factor)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--format") from None
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        new_console().print(f"wrote {len(topics.topics)} KafkaTopic resources to {out}")
