"""/trace: one record's path through every topic, as `sagesf trace` finds it (sagesf.trace)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from console.access import require
from console.state import cluster
from console.templating import render
from console.users import VIEWER, User
from sagesf.cli.stage_options import parse_time
from sagesf.logs import redact
from sagesf.topics_file import TopicsFileError, load_topics, schemas_dir_for
from sagesf.trace import TraceResult, hit_value_text, trace_record

__all__ = ["router"]

router = APIRouter()
LIMIT = 200


@router.get("/trace")
def trace(
    request: Request,
    user: Annotated[User, Depends(require(VIEWER))],
    record_id: Annotated[str, Query(alias="id", max_length=200)] = "",
    since: Annotated[str, Query(max_length=40)] = "24h",
    depth: Annotated[int, Query(ge=0, le=5)] = 1,
    topic: Annotated[list[str] | None, Query(max_length=249)] = None,
) -> Response:
    """`topic` (repeatable) reads only those topics, as `sagesf trace --topic`; else every topic of
    topics.yaml."""
    wanted = record_id.strip()
    page: dict[str, Any] = {
        "user": user,
        "nav": "trace",
        "record_id": wanted,
        "since": since,
        "depth": depth,
        "topics": topic or [],
    }
    if not wanted:
        return render(request, "trace.html", **page)
    try:
        since_ms = parse_time(since)
    except typer.BadParameter as exc:
        return render(request, "trace.html", status_code=400, error=str(exc), **page)
    kafka = cluster(request)
    path = kafka.core.topics_file
    try:
        names = topic or [
            t.name for t in load_topics(path, schemas_dir_for(path, kafka.core.schemas_dir)).topics
        ]
    except TopicsFileError as exc:
        return render(request, "trace.html", status_code=500, error=f"{path} is invalid: {exc}", **page)
    with kafka.reader() as reader:
        result = trace_record(
            reader,
            kafka.decoder(),
            list(kafka.stages.values()),
            names,
            wanted,
            since_ms=since_ms,
            limit=LIMIT,
            depth=depth,
        )
    return render(request, "trace.html", result=result, rows=_rows(result), since_ms=since_ms, **page)


def _rows(result: TraceResult) -> list[dict[str, object]]:
    """What the table shows of each hit, every text from a record masked (as `sagesf trace`)."""
    return [
        {
            "at": hit.record.timestamp_ms,
            "stage": hit.stage,
            "position": hit.record.position,
            "key": redact(hit.key_text),
            "found": "id" if hit.match == "id" else f"{hit.match} {redact(hit.matched)}",
            "outcome": redact(hit.outcome),
            "failed": hit.outcome.startswith("DEAD LETTER") or "REJECTED" in hit.outcome,
            "value": redact(hit_value_text(hit)),
        }
        for hit in result.hits
    ]
