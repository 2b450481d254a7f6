"""`sagesf replay`: re-run a stage from a point in its input by moving its consumer group back.

Owns the command line and its report; the work is in sagesf.stage_replay, the stage table in
sagesf.stages. Exit codes: 0 done; 1 refused because the stage is running; 2 bad input, a stage
that cannot be replayed, an unreachable cluster or a missing topic.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from sagesf.cli.clients import admin_client, topic_reader
from sagesf.cli.output import fail, new_console, utc_time
from sagesf.cli.stage_options import StageArgument, TimeoutOption, parse_time, stage_named
from sagesf.config import load_settings
from sagesf.stage_replay import GroupActive, NotReplayable, ResetPlan, apply_reset, plan_reset
from sagesf.stages import StageSettings

__all__ = ["replay_command"]


def replay_command(
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
    settings = load_settings(StageSettings)
    chosen = stage_named(settings, stage)
    text = from_.strip()
    from_offset = int(text) if text.isdigit() else None
    from_time = parse_time(text) if from_offset is None else None
    origin = f"offset {from_offset}" if from_offset is not None else utc_time(from_time)
    console = new_console()
    admin = admin_client(settings)
    with topic_reader(settings, timeout) as reader:
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
            raise fail(str(exc)) from None
        except ValueError as exc:
            raise fail(str(exc)) from None
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
            raise fail(str(exc), 1) from None
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
