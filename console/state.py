"""What the console app holds for its routes (`app.state`, set by `create_app`), typed."""

from __future__ import annotations

from fastapi import Request

from console.audit import AuditLog
from console.cluster import Cluster
from console.processes import ProcessWatch
from console.settings import ConsoleSettings
from console.users import UserFile

__all__ = ["audit_log", "cluster", "console_settings", "process_watch", "user_file"]


def console_settings(request: Request) -> ConsoleSettings:
    found: ConsoleSettings = request.app.state.settings
    return found


def user_file(request: Request) -> UserFile:
    found: UserFile = request.app.state.users
    return found


def audit_log(request: Request) -> AuditLog:
    found: AuditLog = request.app.state.audit
    return found


def cluster(request: Request) -> Cluster:
    found: Cluster = request.app.state.cluster
    return found


def process_watch(request: Request) -> ProcessWatch:
    found: ProcessWatch = request.app.state.processes
    return found
