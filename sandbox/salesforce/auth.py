"""OAuth 2.0 for the emulator: the token endpoint, access and refresh tokens, and their expiry.

What it owns: `POST /services/oauth2/token` with the four grants a server integration uses,
checked against the configured connected apps and users (config.py):

- `password`: client_id, client_secret, username, password (the password may carry the user's
  security token appended, as Salesforce accepts);
- `refresh_token`: client_id (client_secret optional, as for Salesforce's public clients),
  refresh_token; refresh tokens come from `POST /admin/oauth/refresh-token`, standing in for the
  one-time browser consent of the web-server flow;
- `client_credentials`: client id and secret in an HTTP Basic header or the form; the token is for
  the app's `run_as` user;
- `urn:ietf:params:oauth:grant-type:jwt-bearer`: an RS256 assertion verified against the app's
  certificate or public key (PyJWT + cryptography); `iss` is the client id, `sub` the username,
  `aud` https://login.salesforce.com, https://test.salesforce.com or the emulator's URL, `exp` in
  the future. `exp` may be a string of digits, as simple-salesforce sends it and Salesforce accepts.

Answers have Salesforce's shape: `{"access_token", "instance_url", "id", "token_type": "Bearer",
"issued_at", "signature"}`; instance_url is the emulator. Failures are HTTP 400 with Salesforce's
bodies: `invalid_client_id` / `client identifier invalid`, `invalid_client` / `invalid client
credentials`, `invalid_grant` / `authentication failure` (wrong user or password),
`invalid_grant` / `expired access/refresh token`, `invalid_grant` / `invalid assertion`,
`unsupported_grant_type`.

How it works: tokens are random strings (`<org id>!<random>`); only their SHA-256 is stored, in
the emulator's SQLite file, so tokens survive a restart but the file holds no usable secret.
Access tokens expire after the configured session timeout or when `expire_all()` is called (the
admin API's "expire all tokens"); requests with such a token get 401 INVALID_SESSION_ID.

Limits: no authorization-code or device flows, no SOAP login, no token revocation endpoint, no
scopes, no IP restrictions; the `signature` field is an HMAC the emulator never checks.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

import jwt
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from sandbox.salesforce.config import ConnectedApp, EmulatorConfig, SandboxUser

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
LOGIN_AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")

TOKENS_SQL = """
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    user_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL
);
"""


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass
class _Grant:
    user_id: str
    client_id: str
    expires_at: float | None


class TokenStore:
    """Access and refresh tokens by hash, in memory and in the emulator's SQLite file."""

    def __init__(self, db: sqlite3.Connection, org_id: str, session_timeout: float) -> None:
        self.db = db
        self.org_id = org_id
        self.session_timeout = session_timeout
        self.db.executescript(TOKENS_SQL)
        self._tokens: dict[str, tuple[str, _Grant]] = {}
        for digest, kind, user_id, client_id, expires_at in self.db.execute(
            "SELECT hash, kind, user_id, client_id, expires_at FROM tokens"
        ):
            self._tokens[digest] = (kind, _Grant(user_id, client_id, expires_at))

    def _issue(self, kind: str, user_id: str, client_id: str, lifetime: float | None) -> str:
        token = f"{self.org_id[:15]}!{secrets.token_urlsafe(48)}"
        now = time.time()
        grant = _Grant(user_id, client_id, now + lifetime if lifetime is not None else None)
        digest = _digest(token)
        self._tokens[digest] = (kind, grant)
        self.db.execute(
            "INSERT INTO tokens (hash, kind, user_id, client_id, issued_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (digest, kind, user_id, client_id, now, grant.expires_at),
        )
        return token

    def issue_access(self, user_id: str, client_id: str) -> str:
        return self._issue("access", user_id, client_id, self.session_timeout)

    def issue_refresh(self, user_id: str, client_id: str) -> str:
        return self._issue("refresh", user_id, client_id, None)

    def _valid(self, token: str, kind: str) -> _Grant | None:
        found = self._tokens.get(_digest(token))
        if found is None or found[0] != kind:
            return None
        grant = found[1]
        if grant.expires_at is not None and grant.expires_at <= time.time():
            return None
        return grant

    def user_for_access(self, token: str) -> str | None:
        """The user id of a valid access token; None when unknown or expired."""
        grant = self._valid(token, "access")
        return grant.user_id if grant else None

    def refresh_grant(self, token: str) -> _Grant | None:
        return self._valid(token, "refresh")

    def expire_all(self) -> int:
        """Expire every access token now (refresh tokens stay valid); returns how many were live."""
        now = time.time()
        live = 0
        for kind, grant in self._tokens.values():
            if kind == "access" and (grant.expires_at is None or grant.expires_at > now):
                grant.expires_at = now
                live += 1
        self.db.execute(
            "UPDATE tokens SET expires_at = ? WHERE kind = 'access' AND expires_at > ?", (now, now)
        )
        return live


def _public_key(pem: str) -> RSAPublicKey:
    data = pem.strip().encode()
    key = (
        x509.load_pem_x509_certificate(data).public_key()
        if b"BEGIN CERTIFICATE" in data
        else load_pem_public_key(data)
    )
    if not isinstance(key, RSAPublicKey):
        raise ValueError("the JWT certificate must hold an RSA key")
    return key


class OAuthEndpoint:
    """The token endpoint; `users` maps usernames to their config and their user record id."""

    def __init__(
        self, config: EmulatorConfig, tokens: TokenStore, users: dict[str, tuple[SandboxUser, str]]
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.users = users
        self.apps = {app.client_id: app for app in config.apps}
        self._keys = {
            app.client_id: _public_key(app.jwt_certificate) for app in config.apps if app.jwt_certificate
        }
        self._signing_key = secrets.token_bytes(32)

    @staticmethod
    def _error(error: str, description: str, status: int = 400) -> web.Response:
        return web.json_response({"error": error, "error_description": description}, status=status)

    def _response(self, user_id: str, client_id: str, refresh_token: str | None = None) -> web.Response:
        token = self.tokens.issue_access(user_id, client_id)
        issued = str(int(time.time() * 1000))
        identity = f"{self.config.instance_url}/id/{self.tokens.org_id}/{user_id}"
        signature = base64.b64encode(
            hmac.new(self._signing_key, (identity + issued).encode(), hashlib.sha256).digest()
        ).decode()
        body: dict[str, Any] = {
            "access_token": token,
            "instance_url": self.config.instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued,
            "signature": signature,
        }
        if refresh_token is not None:
            body["refresh_token"] = refresh_token
        return web.json_response(
            body, headers={"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"}
        )

    def _client(self, form: Any, request: web.Request) -> tuple[str | None, str | None]:
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:].strip()).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            if ":" in decoded:
                client_id, client_secret = decoded.split(":", 1)
        return client_id, client_secret

    def _check_secret(self, app: ConnectedApp, secret: str | None) -> bool:
        return secret is not None and hmac.compare_digest(secret, app.client_secret.get_secret_value())

    def _user(self, username: str | None, password: str | None) -> str | None:
        if username is None or password is None or username not in self.users:
            return None
        user, user_id = self.users[username]
        expected = user.password.get_secret_value()
        with_token = expected + user.security_token.get_secret_value()
        if hmac.compare_digest(password, expected) or hmac.compare_digest(password, with_token):
            return user_id
        return None

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        grant_type = form.get("grant_type")
        client_id, client_secret = self._client(form, request)
        if grant_type == JWT_GRANT:
            return self._jwt(str(form.get("assertion") or ""))
        if grant_type not in ("password", "refresh_token", "client_credentials"):
            return self._error("unsupported_grant_type", "grant type not supported")
        app = self.apps.get(str(client_id)) if client_id is not None else None
        if app is None:
            return self._error("invalid_client_id", "client identifier invalid")
        if grant_type == "refresh_token":
            if client_secret is not None and not self._check_secret(app, str(client_secret)):
                return self._error("invalid_client", "invalid client credentials")
            grant = self.tokens.refresh_grant(str(form.get("refresh_token") or ""))
            if grant is None or grant.client_id != app.client_id:
                return self._error("invalid_grant", "expired access/refresh token")
            return self._response(grant.user_id, app.client_id)
        if not self._check_secret(app, str(client_secret) if client_secret is not None else None):
            return self._error("invalid_client", "invalid client credentials")
        if grant_type == "client_credentials":
            if app.run_as is None or app.run_as not in self.users:
                return self._error("invalid_grant", "no client credentials user enabled")
            return self._response(self.users[app.run_as][1], app.client_id)
        user_id = self._user(
            str(form["username"]) if "username" in form else None,
            str(form["password"]) if "password" in form else None,
        )
        if user_id is None:
            return self._error("invalid_grant", "authentication failure")
        return self._response(user_id, app.client_id)

    def _jwt(self, assertion: str) -> web.Response:
        try:
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return self._error("invalid_grant", "invalid assertion")
        client_id = str(unverified.get("iss", ""))
        key = self._keys.get(client_id)
        if client_id not in self.apps:
            return self._error("invalid_client_id", "client identifier invalid")
        if key is None:
            return self._error("invalid_grant", "invalid assertion")
        audiences = [*LOGIN_AUDIENCES, self.config.instance_url]
        try:
            claims = jwt.decode(
                assertion,
                key,
                algorithms=["RS256"],
                audience=audiences,
                # simple-salesforce sends exp as a string of digits, which PyJWT's own check refuses
                options={"verify_exp": False, "require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidAudienceError:
            return self._error("invalid_grant", "audience is invalid")
        except jwt.PyJWTError:
            return self._error("invalid_grant", "invalid assertion")
        try:
            expires = float(claims["exp"])
        except (TypeError, ValueError):
            return self._error("invalid_grant", "invalid assertion")
        if expires <= time.time():
            return self._error("invalid_grant", "expired authorization code")
        username = str(claims.get("sub", ""))
        if username not in self.users:
            return self._error("invalid_grant", "user hasn't approved this consumer")
        return self._response(self.users[username][1], client_id)
