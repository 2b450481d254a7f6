"""`create_app(settings)`: the console's FastAPI application.

Every route sits behind the session middleware and the app-wide CSRF check
(console.access.check_csrf); each route states its role with `require(role)`. Refusals become
responses here: no login -> a redirect to /login for a page, 401 otherwise; a missing role or
CSRF token -> 403 with a page saying why.
"""

from __future__ import annotations

from pathlib import Path

from confluent_kafka import KafkaException
from fastapi import Depends, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware
from starlette.responses import JSONResponse, RedirectResponse, Response

from console import routes
from console.access import CsrfRefused, Forbidden, LoginRequired, check_csrf
from console.audit import AuditLog
from console.cluster import Cluster, UnknownStage
from console.pages.oidc import oidc_client
from console.processes import ProcessWatch
from console.settings import ConsoleSettings
from console.templating import render
from console.users import UserFile
from linking.config import LinkSettings
from sagesf.config import ConfigError, load_settings
from sagesf.logs import redact
from sagesf.stages import StageSettings
from sagesf.topic_scan import ScanTimeout, TopicMissing

__all__ = ["SESSION_COOKIE", "create_app"]

SESSION_COOKIE = "sagesf_console"
MIN_SECRET = 32


def create_app(
    settings: ConsoleSettings, core: StageSettings | None = None, links: LinkSettings | None = None
) -> FastAPI:
    """The console app; ConfigError when the session secret is missing or short. `core`: the
    cluster, registry and stages; `links`: the linker's settings (each by default loaded from the
    environment, SAGESF_* and SAGESF_LINK__*).

    `app.state` holds `settings`, `users` (UserFile), `audit` (AuditLog), `cluster` (Cluster) and
    `processes` (ProcessWatch) for the routes (console.state reads them), and `oidc`, the single
    sign-on client when `settings.oidc` is set.
    """
    secret = settings.session_secret.get_secret_value() if settings.session_secret else ""
    if len(secret) < MIN_SECRET:
        raise ConfigError(f"SAGESF_CONSOLE__SESSION_SECRET: set a random secret of {MIN_SECRET}+ characters")
    app = FastAPI(
        title="sagesf console",
        dependencies=[Depends(check_csrf)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.users = UserFile(settings.users_file)
    app.state.audit = AuditLog(settings.audit_log)
    app.state.cluster = Cluster(
        core if core is not None else load_settings(StageSettings),
        links if links is not None else load_settings(LinkSettings),
        settings.dlq_markers_topic,
        settings.kafka_timeout,
    )
    app.state.processes = ProcessWatch(settings.processes, settings.process_timeout)
    app.state.oidc = oidc_client(settings.oidc) if settings.oidc is not None else None
    app.add_middleware(
        SessionMiddleware,
        secret_key=secret,
        session_cookie=SESSION_COOKIE,
        max_age=settings.session_max_age,
        same_site="lax",
        https_only=settings.secure_cookie,
    )
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for router in routes.ROUTERS:
        app.include_router(router)
    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(CsrfRefused, _forbidden)
    app.add_exception_handler(UnknownStage, _not_found)
    for unavailable in (KafkaException, ScanTimeout, TopicMissing):
        app.add_exception_handler(unavailable, _unavailable)
    return app


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    if request.method == "GET" and "application/json" not in request.headers.get("accept", ""):
        return RedirectResponse(f"/login?next={exc.next_url}", status_code=303)
    return JSONResponse({"detail": "login required"}, status_code=401)


async def _forbidden(request: Request, exc: Exception) -> Response:
    return render(request, "forbidden.html", status_code=403, reason=str(exc))


async def _not_found(request: Request, exc: Exception) -> Response:
    return render(request, "problem.html", status_code=404, title="Not found", reason=str(exc))


async def _unavailable(request: Request, exc: Exception) -> Response:
    """Kafka or a topic cannot be read now: say so (masked), and that nothing was changed."""
    what = f"topic {exc.args[0]} does not exist on the cluster" if isinstance(exc, TopicMissing) else str(exc)
    return render(
        request, "problem.html", status_code=503, title="Kafka cannot be read now", reason=redact(what)
    )
