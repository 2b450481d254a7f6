"""What the operator commands (`sagesf dlq`, `sagesf replay`, `sagesf trace`) take on the command
line alike: a stage, a point in time, a timeout; and turning the text into a Stage or a time.

Their settings are `StageSettings`: Kafka and registry (SAGESF_KAFKA__*, SAGESF_REGISTRY__*) and
the stage overrides (SAGESF_STAGES__*).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from sagesf.cli.output import fail
from sagesf.stages import Stage, StageSettings, load_stages

__all__ = ["StageArgument", "TimeoutOption", "parse_time", "stage_named"]

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}

StageArgument = Annotated[
    str, typer.Argument(help="Pipeline stage, e.g. orders, sage-sink (see `sagesf dlq list`).")
]
TimeoutOption = Annotated[
    float, typer.Option("--timeout", min=1, help="Seconds to wait for the cluster without progress.")
]


def stage_named(settings: StageSettings, name: str) -> Stage:
    """The stage called `name`; an unknown name exits 2 listing the stages there are."""
    stages = load_stages(settings)
    stage = stages.get(name)
    if stage is None:
        raise fail(f"unknown stage {name!r}; stages: {', '.join(stages)}")
    return stage


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
