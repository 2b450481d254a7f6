"""/login and /logout. A failed login is audited (the name tried, never the password)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from starlette.responses import RedirectResponse, Response

from console.access import end_session, start_session
from console.state import audit_log, console_settings, user_file
from console.templating import flash, render

__all__ = ["page", "router", "safe_next"]

router = APIRouter()


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    return page(request, next)


def page(request: Request, next: str, status_code: int = 200, error: str | None = None) -> Response:
    """The login page, with the single sign-on button when there is one."""
    oidc = console_settings(request).oidc
    label = oidc.label if oidc else None
    return render(
        request, "login.html", status_code=status_code, next=safe_next(next), oidc=label, error=error
    )


@router.post("/login")
def login(
    request: Request,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    next: Annotated[str, Form()] = "/",
) -> Response:
    user = user_file(request).authenticate(username, password)
    if user is None:
        client = request.client.host if request.client else ""
        audit_log(request).record(username, "login.failed", "console", detail={"client": client})
        return page(request, next, 401, "Wrong name or password.")
    start_session(request, user)
    return RedirectResponse(safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request) -> Response:
    end_session(request)
    flash(request, "You are logged out.")
    return RedirectResponse("/login", status_code=303)


def safe_next(target: str) -> str:
    """Only a path on this site: an absolute or scheme-relative URL becomes "/" (no open redirect)."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"
