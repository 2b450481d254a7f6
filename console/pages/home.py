"""/: the overview, linking every section."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from console.access import require
from console.templating import render
from console.users import VIEWER, User

__all__ = ["router"]

router = APIRouter()


@router.get("/")
def home(request: Request, user: Annotated[User, Depends(require(VIEWER))]) -> Response:
    return render(request, "home.html", user=user, nav="home")
