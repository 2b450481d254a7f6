"""/audit: the audit log, newest first."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from console.access import require
from console.state import audit_log
from console.templating import render
from console.users import VIEWER, User

__all__ = ["router"]

router = APIRouter()


@router.get("/audit")
def audit_page(request: Request, user: Annotated[User, Depends(require(VIEWER))]) -> Response:
    return render(request, "audit.html", user=user, nav="audit", entries=audit_log(request).entries())
