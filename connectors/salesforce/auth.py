"""OAuth 2.0 logins to Salesforce: the four grants a server integration uses, one access token out.

What it owns: turning `SalesforceSettings` into a token request against
`<login_url>/services/oauth2/token` and its answer into an `AccessToken` (access token, instance
URL). Grants:
- `jwt` (JWT bearer, RFC 7523): an RS256 assertion signed with the connected app's private key,
  `iss` = client id, `sub` = username, `aud` = https://login.salesforce.com (or
  https://test.salesforce.com for sandboxes; the login URL itself for anything else, such as the
  emulator; `jwt_audience` overrides), `exp` three minutes ahead;
- `client_credentials`: client id and secret (the app's run-as user gets the token);
- `password`: client id and secret, username, password + security token;
- `refresh_token`: client id (+ secret when the app has one) and a refresh token.

Why not simple-salesforce's own login: it builds the token URL as
`https://{domain}.salesforce.com`, so it cannot reach an emulator or any non-salesforce.com login
host, it fixes the JWT audience to that domain and refuses client credentials on login/test, and
its refresh-on-401 runs only for some flows. Here every flow is a plain form POST, so
`client.SalesforceConnection` can re-run any of them when a token expires.

Errors: `AuthenticationFailed` when Salesforce refuses the credentials (400/401 from the token
endpoint: a configuration problem; its message carries Salesforce's `error` and
`error_description`, never a secret); `AuthenticationUnavailable` (a sagesf `Retriable`) when
the endpoint cannot be reached or answers 5xx. Every token received is registered with
sagesf.logs so it is masked if it ever reaches a log line.

Limits: no web-server/device flows (a refresh token comes from a one-time consent outside this
process), no token introspection or revocation; Salesforce access tokens carry no expiry, so
expiry is discovered by a 401 INVALID_SESSION_ID and handled by client.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import jwt
import requests

from connectors.salesforce.config import SalesforceSettings
from sagesf.errors import AuthenticationError, Retriable
from sagesf.logs import register_secret

__all__ = [
    "JWT_GRANT",
    "AccessToken",
    "AuthenticationFailed",
    "AuthenticationUnavailable",
    "jwt_audience",
    "request_token",
    "token_url",
]

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
PRODUCTION_AUDIENCE = "https://login.salesforce.com"
SANDBOX_AUDIENCE = "https://test.salesforce.com"
JWT_LIFETIME_SECONDS = 180


@dataclass(frozen=True)
class AccessToken:
    """One access token and the org instance it is valid for (the token never shows in a repr)."""

    access_token: str = field(repr=False)
    instance_url: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    issued_at: float = field(default_factory=time.time)
    identity_url: str | None = None

    def oauth_response(self) -> dict[str, str]:
        """The token endpoint's answer, as aiosfstream's `AuthenticatorBase._authenticate` returns it."""
        body = {
            "access_token": self.access_token,
            "instance_url": self.instance_url,
            "token_type": self.token_type,
            "issued_at": str(int(self.issued_at * 1000)),
        }
        if self.identity_url:
            body["id"] = self.identity_url
        return body


class AuthenticationFailed(AuthenticationError):
    """Salesforce refused the credentials: fix the configuration (the message says what it said)."""

    def __init__(self, flow: str, error: str, description: str) -> None:
        super().__init__(f"Salesforce refused the {flow} login: {error}: {description}")
        self.flow = flow
        self.error = error
        self.description = description


class AuthenticationUnavailable(Retriable):
    """The token endpoint did not answer usefully (network, 5xx); the login may work later."""


def token_url(settings: SalesforceSettings) -> str:
    return f"{settings.login_url}/services/oauth2/token"


def jwt_audience(settings: SalesforceSettings) -> str:
    """The `aud` claim Salesforce expects for this login URL (see the module doc)."""
    if settings.jwt_audience:
        return settings.jwt_audience
    host = (urlsplit(settings.login_url).hostname or "").lower()
    if host == "test.salesforce.com" or host.endswith(".sandbox.my.salesforce.com"):
        return SANDBOX_AUDIENCE
    if host == "login.salesforce.com" or host.endswith(".salesforce.com"):
        return PRODUCTION_AUDIENCE
    return settings.login_url


def _secret(value: Any) -> str:
    return "" if value is None else str(value.get_secret_value())


def _grant(settings: SalesforceSettings) -> dict[str, str]:
    """The token request's form for the configured flow."""
    flow = settings.auth_flow
    client_id = settings.client_id or ""
    if flow == "jwt":
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": settings.username or "",
            "aud": jwt_audience(settings),
            "exp": now + JWT_LIFETIME_SECONDS,
        }
        assertion = jwt.encode(claims, settings.private_key_text(), algorithm="RS256")
        return {"grant_type": JWT_GRANT, "assertion": assertion}
    if flow == "client_credentials":
        return {
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": _secret(settings.client_secret),
        }
    if flow == "password":
        return {
            "grant_type": "password",
            "client_id": client_id,
            "client_secret": _secret(settings.client_secret),
            "username": settings.username or "",
            "password": _secret(settings.password) + _secret(settings.security_token),
        }
    form = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "refresh_token": _secret(settings.refresh_token),
    }
    if settings.client_secret is not None:
        form["client_secret"] = _secret(settings.client_secret)
    return form


def request_token(settings: SalesforceSettings, session: requests.Session) -> AccessToken:
    """Run the configured OAuth flow once; the new access token.

    Raises AuthenticationFailed (credentials refused) or AuthenticationUnavailable (retriable).
    """
    for secret in (settings.client_secret, settings.password, settings.security_token):
        register_secret(secret)
    register_secret(settings.refresh_token)
    flow = settings.auth_flow
    url = token_url(settings)
    try:
        response = session.post(
            url,
            data=_grant(settings),
            headers={"Accept": "application/json"},
            timeout=settings.request_timeout,
        )
    except requests.RequestException as exc:
        raise AuthenticationUnavailable(f"{flow} login at {url} failed: {type(exc).__name__}") from exc
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    if response.status_code >= 500 or response.status_code in (408, 429):
        raise AuthenticationUnavailable(f"{flow} login at {url}: HTTP {response.status_code}")
    if response.status_code != 200 or not body.get("access_token") or not body.get("instance_url"):
        raise AuthenticationFailed(
            flow,
            str(body.get("error") or f"HTTP {response.status_code}"),
            str(body.get("error_description") or "no access token in the answer"),
        )
    token = str(body["access_token"])
    register_secret(token)
    issued = str(body.get("issued_at") or "")
    return AccessToken(
        access_token=token,
        instance_url=str(body["instance_url"]).rstrip("/"),
        token_type=str(body.get("token_type") or "Bearer"),
        issued_at=int(issued) / 1000 if issued.isdigit() else time.time(),
        identity_url=str(body["id"]) if body.get("id") else None,
    )
