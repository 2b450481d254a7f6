"""/login/oidc: single sign-on through an OpenID Connect provider (authlib's Starlette client),
when `SAGESF_CONSOLE__OIDC__*` is set (console.settings.OidcSettings says who gets which roles).

authlib keeps the state and nonce in the session, fetches the provider's metadata and keys, and
checks the ID token (signature, issuer, audience, expiry, nonce). A refused sign-in is audited
like a failed login.
"""

from __future__ import annotations

from typing import Any

from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth
from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from console.access import start_session
from console.pages.login import page as login_page
from console.pages.login import safe_next
from console.settings import OidcSettings
from console.state import audit_log, console_settings, user_file
from console.templating import render
from console.users import ROLES, User

__all__ = ["oidc_client", "router"]

router = APIRouter(prefix="/login/oidc")
CLIENT = "console"


def oidc_client(settings: OidcSettings) -> Any:
    """The provider's client (the app keeps one: it caches the provider's metadata and keys)."""
    oauth = OAuth()
    oauth.register(
        CLIENT,
        client_id=settings.client_id,
        client_secret=settings.client_secret.get_secret_value(),
        server_metadata_url=settings.issuer.rstrip("/") + "/.well-known/openid-configuration",
        client_kwargs={"scope": "openid email profile"},
    )
    return oauth.create_client(CLIENT)


@router.get("")
async def start(request: Request, next: str = "/") -> Response:
    client = request.app.state.oidc
    if client is None:
        return render(request, "problem.html", status_code=404, title="Not found", reason="no single sign-on")
    request.session["oidc_next"] = safe_next(next)
    redirect: Response = await client.authorize_redirect(request, str(request.url_for("oidc_callback")))
    return redirect


@router.get("/callback", name="oidc_callback")
async def callback(request: Request) -> Response:
    client = request.app.state.oidc
    settings = console_settings(request).oidc
    if client is None or settings is None:
        return render(request, "problem.html", status_code=404, title="Not found", reason="no single sign-on")
    next_url = safe_next(str(request.session.pop("oidc_next", "/")))
    try:
        token = await client.authorize_access_token(request)
    except OAuthError as exc:
        audit_log(request).record("?", "login.failed", "oidc", detail={"error": exc.error})
        return _refused(request, next_url, f"The sign-in did not complete ({exc.error}).")
    claims: dict[str, Any] = dict(token.get("userinfo") or {})
    name = str(claims.get(settings.name_claim) or claims.get("sub") or "")
    user = _user(request, name, claims.get(settings.roles_claim))
    if user is None:
        audit_log(request).record(name, "login.refused", "oidc", detail={"reason": "no console role"})
        return _refused(request, next_url, f"{name} has no role in this console: ask an administrator.")
    start_session(request, user, roles=sorted(user.roles))
    return RedirectResponse(next_url, status_code=303)


def _user(request: Request, name: str, claimed: object) -> User | None:
    """The console user `name` signed in as: the roles the provider names, and those of the same
    name in the users file; None with neither."""
    roles = {r for r in claimed if r in ROLES} if isinstance(claimed, list) else set()
    local = user_file(request).get(name)
    if local is not None:
        roles |= local.roles
    if not name or not roles:
        return None
    return User(name, frozenset(r for r in ROLES if r in roles))


def _refused(request: Request, next_url: str, message: str) -> Response:
    return login_page(request, next_url, 403, message)
