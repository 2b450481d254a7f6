"""The console's pages: Jinja templates from console/templates, rendered with what every page
shows (the user and their roles, flash messages) and the `csrf_field()` every form includes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup, escape
from starlette.responses import Response

from console.access import CSRF_FIELD, CSRF_HEADER, csrf_token, current_user
from sagesf.cli.output import utc_time

__all__ = ["TEMPLATES", "flash", "render"]

TEMPLATES = Jinja2Templates(directory=Path(__file__).parent / "templates")


@pass_context
def csrf_field(context: Context) -> Markup:
    """The hidden form field carrying this session's CSRF token."""
    token = csrf_token(context["request"])
    return Markup('<input type="hidden" name="{}" value="{}">').format(CSRF_FIELD, escape(token))


@pass_context
def csrf_meta(context: Context) -> Markup:
    """The token and header name for static/console.js, which adds it to every fetch."""
    token = csrf_token(context["request"])
    return Markup('<meta name="csrf-token" content="{}" data-header="{}">').format(token, CSRF_HEADER)


TEMPLATES.env.globals["csrf_field"] = csrf_field
TEMPLATES.env.globals["csrf_meta"] = csrf_meta
TEMPLATES.env.filters["utc"] = utc_time  # epoch ms -> `2026-03-14 15:09:00.123Z`


def flash(request: Request, message: str, kind: str = "info") -> None:
    """A message shown once, on the next page this session renders (kind: info, success, error)."""
    request.session.setdefault("flash", []).append([kind, message])


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """`template` rendered for this request, with `user`, `flashes` and `nav` (the current section)."""
    context.setdefault("user", current_user(request))
    context["flashes"] = request.session.pop("flash", [])
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status_code)
