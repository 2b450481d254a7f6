"""Who may do what in the console: the logged-in user from the signed session cookie,
`require(role)` for routes, and the CSRF check on every unsafe request.

How it works: Starlette's SessionMiddleware signs the session cookie (itsdangerous; HttpOnly,
SameSite=Lax). The session holds the user's name and a random CSRF token; the user's roles are
read from the users file on every request, so a removed user or role takes effect at once. Every
form carries the token (`csrf_field()` in templates) and every fetch sends it in the `X-CSRF-Token`
header (static/console.js); `check_csrf`, a dependency of the whole app, refuses an unsafe request
without it before any route runs.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from urllib.parse import quote

from fastapi import Request

from console.state import user_file
from console.users import ROLES, Role, User

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "CsrfRefused",
    "Forbidden",
    "LoginRequired",
    "check_csrf",
    "csrf_token",
    "current_user",
    "end_session",
    "require",
    "start_session",
]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(Exception):
    """No one is logged in: a page is redirected to /login?next=..., anything else gets 401."""

    def __init__(self, next_url: str) -> None:
        super().__init__("login required")
        self.next_url = next_url


class Forbidden(Exception):
    """The user lacks the role: 403 with a page saying which role it needs; nothing was done."""

    def __init__(self, user: User, role: Role, reason: str = "") -> None:
        super().__init__(reason or f"this needs the {role} role; {user.name} has {user.role_names}")
        self.user = user
        self.role = role


def current_user(request: Request) -> User | None:
    """The logged-in user, or None (also when a local user has been removed from the users file).
    A single sign-on session carries the roles it was given at sign-in (console/pages/oidc.py)."""
    name = request.session.get("user")
    if not isinstance(name, str):
        return None
    signed_on = request.session.get("roles")
    if isinstance(signed_on, list):
        return User(name, frozenset(r for r in ROLES if r in signed_on))
    return user_file(request).get(name)


def require(role: Role) -> Callable[[Request], User]:
    """A route dependency: the logged-in user when they have `role`; else LoginRequired/Forbidden."""

    def dependency(request: Request) -> User:
        user = current_user(request)
        if user is None:
            raise LoginRequired(_here(request))
        if not user.can(role):
            raise Forbidden(user, role)
        return user

    return dependency


def csrf_token(request: Request) -> str:
    """This session's CSRF token, made on first use."""
    token = request.session.get(CSRF_FIELD)
    if not isinstance(token, str):
        token = request.session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return token


async def check_csrf(request: Request) -> None:
    """Refuse an unsafe request whose CSRF token (form field or header) is not the session's.

    A request with no session token at all comes from no one logged in: LoginRequired (401).
    """
    if request.method in SAFE_METHODS:
        return
    expected = request.session.get(CSRF_FIELD)
    if not isinstance(expected, str):
        raise LoginRequired(_here(request))
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and _is_form(request):
        value = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    if sent is None or not hmac.compare_digest(sent, expected):
        raise CsrfRefused()


class CsrfRefused(Exception):
    """An unsafe request without the session's CSRF token: 403, nothing done."""

    def __init__(self) -> None:
        super().__init__(
            "The form's security token is missing or out of date: reload the page and try again."
        )


def start_session(request: Request, user: User, roles: list[Role] | None = None) -> None:
    """Log `user` in with a fresh session (new CSRF token), so a token seen before login is void.
    `roles`: kept in the (signed) session for a user signed on elsewhere; a local user's roles are
    read from the users file on each request."""
    request.session.clear()
    request.session["user"] = user.name
    if roles is not None:
        request.session["roles"] = list(roles)
    csrf_token(request)


def end_session(request: Request) -> None:
    request.session.clear()


def _is_form(request: Request) -> bool:
    kind = request.headers.get("content-type", "")
    return kind.startswith(("application/x-www-form-urlencoded", "multipart/form-data"))


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return quote(request.url.path + query, safe="/?=&")
