"""/dead-letters: counts and reasons per stage, a stage's newest dead letters, one dead letter's
original and error headers, and Replay (operator only, audited), which runs the same code as
`sagesf dlq replay` (sagesf.dead_letter_replay.replay_dead_letters)."""

from __future__ import annotations

from typing import Annotated

from confluent_kafka import KafkaException
from fastapi import APIRouter, Depends, Form, Request
from starlette.responses import RedirectResponse, Response

from console.access import require
from console.state import audit_log, cluster, console_settings
from console.templating import flash, render
from console.users import OPERATOR, VIEWER, User
from sagesf.dead_letter_replay import (
    MarkersUnreadable,
    StageReplay,
    read_dead_letters,
    replay_dead_letters,
    summarise,
)
from sagesf.errors import Retriable, StartupError
from sagesf.logs import redact
from sagesf.producer import ProduceFailed

__all__ = ["router"]

router = APIRouter(prefix="/dead-letters")
PER_PARTITION = 50  # the newest dead letters listed per partition of a stage's topic

Viewer = Annotated[User, Depends(require(VIEWER))]
Operator = Annotated[User, Depends(require(OPERATOR))]


@router.get("")
def overview(request: Request, user: Viewer) -> Response:
    kafka = cluster(request)
    replayed = _replayed(request)
    with kafka.reader() as reader:
        summaries = [
            summarise(reader, stage, max_scan=console_settings(request).dlq_scan, replayed=replayed)
            for stage in kafka.stages.values()
        ]
    return render(
        request, "dead_letters.html", user=user, nav="dead-letters", summaries=summaries, markers=replayed
    )


@router.get("/{stage}")
def stage_letters(request: Request, user: Viewer, stage: str) -> Response:
    kafka = cluster(request)
    chosen = kafka.stage(stage)
    replayed = _replayed(request)
    with kafka.reader() as reader:
        letters = read_dead_letters(reader, chosen.dlq_topic, last=PER_PARTITION)
    letters.sort(key=lambda d: d.record.timestamp_ms, reverse=True)
    decoder = kafka.decoder()
    rows = [(letter, redact(decoder.decode(letter.record.key).text(indent=None))) for letter in letters]
    return render(
        request,
        "dead_letter_list.html",
        user=user,
        nav="dead-letters",
        stage=chosen,
        rows=rows,
        replayed=replayed or set(),
        per_partition=PER_PARTITION,
    )


@router.get("/{stage}/{partition}/{offset}")
def dead_letter(request: Request, user: Viewer, stage: str, partition: int, offset: int) -> Response:
    kafka = cluster(request)
    chosen = kafka.stage(stage)
    with kafka.reader() as reader:
        found = read_dead_letters(reader, chosen.dlq_topic, offsets=[(partition, offset)])
    if not found:
        return render(
            request,
            "problem.html",
            status_code=404,
            title="No such dead letter",
            reason=f"{chosen.dlq_topic} holds nothing at partition {partition}, offset {offset} "
            "(retention may have removed it)",
        )
    letter = found[0]
    markers = kafka.markers()
    try:
        markers.load(kafka.timeout)
        marker = markers.get(letter)
    except KafkaException:
        marker = None
    decoder = kafka.decoder()
    return render(
        request,
        "dead_letter.html",
        user=user,
        nav="dead-letters",
        stage=chosen,
        letter=letter,
        marker=marker,
        key=decoder.decode(letter.record.key),
        value=decoder.decode(letter.record.value),
        registry_error=decoder.registry_error,
        redact=redact,
    )


@router.post("/{stage}/{partition}/{offset}/replay")
def replay(
    request: Request,
    user: Operator,
    stage: str,
    partition: int,
    offset: int,
    again: Annotated[bool, Form()] = False,
) -> Response:
    kafka = cluster(request)
    chosen = kafka.stage(stage)
    ref = f"{chosen.dlq_topic}/{partition}/{offset}"
    try:
        with kafka.reader() as reader:
            done = replay_dead_letters(
                reader,
                kafka.core.kafka,
                chosen,
                kafka.markers(),
                offsets=[(partition, offset)],
                again=again,
                timeout=kafka.timeout,
            )
        ok, outcome = _outcome(done)
    except (MarkersUnreadable, ProduceFailed, Retriable, StartupError, KafkaException) as exc:
        ok, outcome = False, f"Not replayed, nothing marked: {redact(str(exc))}"
    audit_log(request).record(
        user.name,
        "dead-letter.replay",
        ref,
        detail={"stage": chosen.name, "again": again, "outcome": outcome},
    )
    flash(request, outcome, "success" if ok else "error")
    return RedirectResponse(f"/dead-letters/{chosen.name}/{partition}/{offset}", status_code=303)


def _outcome(done: StageReplay) -> tuple[bool, str]:
    """Whether the one dead letter was replayed, and a sentence saying what happened."""
    if not done.items:
        return False, "Not found: retention may have removed it"
    item = done.items[0]
    if item.skip is not None:
        return False, f"Not replayed: {item.skip}"
    reason = done.report.not_sent.get(item.letter.ref)
    if reason is not None:
        return False, f"Not replayed: {reason}"
    [(_, where)] = done.report.sent
    how = "re-read from the source and published" if item.reread else "sent back"
    return True, f"Replayed: {how} to {where.topic}/{where.partition}/{where.offset}"


def _replayed(request: Request) -> set[str] | None:
    """The refs of every dead letter marked replayed; None when the marker topic cannot be read."""
    kafka = cluster(request)
    try:
        return set(kafka.markers().load(kafka.timeout))
    except KafkaException:
        return None
