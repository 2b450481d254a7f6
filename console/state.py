"""What the console app holds for its routes (`app.state`, set by `create_app`), typed."""

from __future__ import annotations

from typing import TypeVar

from fastapi import Request

from console.audit import AuditLog
from console.cluster import Cluster
from console.processes import ProcessWatch
from console.settings import ConsoleSettings
from console.users import UserFile

__all__ = ["audit_log", "cluster", "console_settings", "process_watch", "user_file"]

T = TypeVar("T")


def _held(request: Request, name: str, kind: type[T]) -> T:
    found = getattr(request.app.state, name)
    if not isinstance(found, kind):
        raise TypeError(f"app.state.{name} is not a {kind.__name__}: the app was not made by create_app")
    return found


def console_settings(request: Request) -> ConsoleSettings:
    return _held(request, "settings", ConsoleSettings)


def user_file(request: Request) -> UserFile:
    return _held(request, "users", UserFile)


def audit_log(request: Request) -> AuditLog:
    return _held(request, "audit", AuditLog)


def cluster(request: Request) -> Cluster:
    return _held(request, "cluster", Cluster)


def process_watch(request: Request) -> ProcessWatch:
    return _held(request, "processes", ProcessWatch)
