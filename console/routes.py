"""Every router of the console, in one list: `create_app` includes them in this order. A new
page adds its router here."""

from __future__ import annotations

from fastapi import APIRouter

from console.pages import audit, dead_letters, home, links, login, mappings, oidc, processes, trace

__all__ = ["ROUTERS"]

ROUTERS: list[APIRouter] = [
    login.router,
    oidc.router,
    home.router,
    mappings.router,
    dead_letters.router,
    trace.router,
    links.router,
    processes.router,
    audit.router,
]
