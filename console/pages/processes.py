"""/processes: each process's health, consumer lag and throughput (console.processes)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from console.access import require
from console.state import process_watch
from console.templating import render
from console.users import VIEWER, User

__all__ = ["router"]

router = APIRouter()
REFRESH_SECONDS = 10


@router.get("/processes")
def processes(request: Request, user: Annotated[User, Depends(require(VIEWER))]) -> Response:
    return render(
        request,
        "processes.html",
        user=user,
        nav="processes",
        views=process_watch(request).views(),
        refresh=REFRESH_SECONDS,
    )
