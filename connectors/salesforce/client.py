"""A ready simple-salesforce client: logged in, stamped, refreshed on expiry, watched for limits.

What it owns: `connect(settings)` -> `SalesforceConnection`, the one way the Salesforce connector
(sink and CDC source) gets at an org. `salesforce(settings)` is the same, returning just the
`simple_salesforce.Salesforce`. The connection holds
- `sf`: a `simple_salesforce.Salesforce` built from an access token (auth.py runs the configured
  OAuth flow), whose `requests.Session` is a `SalesforceSession`;
- `user_id`: the integration user's Id, from the identity URL of the token answer
  (`https://login.salesforce.com/id/<org id>/<user id>`, which every OAuth flow returns): the
  CDC source takes a change as its own echo only when that user committed it;
- `token` / `access_token` / `instance_url`: for clients that do not go through `sf`, such as
  the source's aiosfstream authenticator (`token.oauth_response()` is what its
  `_authenticate()` returns); `renew(stale)` gives a fresh token (see below);
- `add_listener(fn)`: `fn(request, response)` after every API response (metrics, the API
  budget governor in budget.py reading `Sforce-Limit-Info`).

How `SalesforceSession` works (every request simple-salesforce makes goes through its `send`):
- it carries `Sforce-Call-Options: client=<call_options_client>` on every call (simple-salesforce
  builds per-call headers, so only the session reaches them all, Bulk included): Salesforce then
  names our client in the changeOrigin of the change events our writes cause, which is how the
  CDC source recognises and drops its own echoes;
- a default timeout (`request_timeout`) on every request; simple-salesforce sets none;
- a 401 on a request that carried a bearer token re-runs the OAuth flow (once for all threads
  that saw the same stale token: `renew` compares before it logs in) and sends the request in
  flight again, once, with the new token. simple-salesforce refreshes only when it logged in
  with a password itself, and its Bulk 2.0 and sObject helpers keep copies of the old token;
  the session therefore also replaces any outdated bearer token on outgoing requests;
- when the login URL is plain http (a local emulator), an adapter sends simple-salesforce's
  `https://<instance>/...` URLs to `http://<instance>/...`: the same idea as the sandbox's
  client adapter, here because production code never imports sandbox/. An http instance URL
  under an https login is refused.

Tokens are registered with sagesf.logs (auth.py) and never logged. Limits: the instance URL is
fixed at the first login (a later login naming another instance only logs a warning); one
retry after a 401, so a token that expires again at once surfaces as simple-salesforce's
SalesforceExpiredSession.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce

from connectors.salesforce.auth import AccessToken, AuthenticationFailed, request_token
from connectors.salesforce.config import SalesforceSettings, plain_http_allowed
from connectors.salesforce.metrics import API_CALLS, LOGINS, TOKEN_REFRESHES

log = logging.getLogger(__name__)

__all__ = [
    "CALL_OPTIONS_HEADER",
    "InstanceHttpAdapter",
    "ResponseListener",
    "SalesforceConnection",
    "SalesforceSession",
    "connect",
    "is_user_id",
    "salesforce",
]

CALL_OPTIONS_HEADER = "Sforce-Call-Options"
ResponseListener = Callable[[requests.PreparedRequest, requests.Response], None]
_USER_ID = re.compile(r"^005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")  # User IDs start with 005
_RESOURCES = frozenset({"composite", "jobs", "query", "queryAll", "sobjects", "limits", "search", "tooling"})


class InstanceHttpAdapter(HTTPAdapter):
    """Rewrites https://<netloc>/... to http://<netloc>/... for the registered netlocs only."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.netlocs: set[str] = set()

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if request.url is not None:
            parts = urlsplit(request.url)
            if parts.scheme == "https" and parts.netloc in self.netlocs:
                request.url = urlunsplit(("http", parts.netloc, parts.path, parts.query, parts.fragment))
        return super().send(request, *args, **kwargs)


def _bearer(request: requests.PreparedRequest) -> str | None:
    header = request.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() in ("bearer", "oauth") and token.strip() else None


def _resource(url: str | None) -> str | None:
    """The API resource family of a URL (`composite`, `jobs`, ...); None for OAuth and non-API URLs."""
    path = urlsplit(url or "").path.split("/")
    if len(path) < 3 or path[1] != "services":
        return None
    if path[2] == "oauth2":
        return None
    if path[2] == "data" and len(path) >= 5:
        return path[4] if path[4] in _RESOURCES else "other"
    return path[2] if path[2] == "async" else "other"


class SalesforceSession(requests.Session):
    """The requests session under simple-salesforce (see the module doc)."""

    def __init__(self, call_options_client: str, timeout: float) -> None:
        super().__init__()
        self.headers[CALL_OPTIONS_HEADER] = f"client={call_options_client}"
        self.timeout = timeout
        self.token_source: Callable[[], str | None] | None = None
        self.renewer: Callable[[str | None], str] | None = None
        self.listeners: list[ResponseListener] = []
        self._http = InstanceHttpAdapter()

    def allow_http(self, netloc: str) -> None:
        """Talk plain http to this host:port even when a URL says https (local emulator only)."""
        if not self._http.netlocs:
            self.mount("https://", self._http)
        self._http.netlocs.add(netloc)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        sent_with = _bearer(request)
        if sent_with is not None and self.token_source is not None:
            current = self.token_source()
            if current and current != sent_with:  # a stale copy kept by a simple-salesforce helper
                request.headers["Authorization"] = f"Bearer {current}"
                sent_with = current
        response = super().send(request, **kwargs)
        if response.status_code == 401 and sent_with is not None and self.renewer is not None:
            fresh = self.renewer(sent_with)
            retry = request.copy()
            retry.headers["Authorization"] = f"Bearer {fresh}"
            response.close()
            response = super().send(retry, **kwargs)
            request = retry
        for listener in self.listeners:
            try:
                listener(request, response)
            except Exception:  # a metrics or budget bug must not fail the call
                log.exception("response listener %r failed", listener)
        return response


class SalesforceConnection:
    """A logged-in org: `sf` for REST/Bulk, the token for other clients, listeners for responses."""

    def __init__(self, settings: SalesforceSettings, session: SalesforceSession | None = None) -> None:
        self.settings = settings
        self.session = session or SalesforceSession(settings.call_options_client, settings.request_timeout)
        login = urlsplit(settings.login_url)
        if login.scheme == "http":
            self.session.allow_http(login.netloc)
        self._lock = threading.Lock()
        self._token = self._login()
        instance = urlsplit(self._token.instance_url)
        if instance.scheme == "http":
            if login.scheme != "http" or not plain_http_allowed(instance.hostname, settings.plain_http_host):
                raise AuthenticationFailed(
                    settings.auth_flow,
                    "insecure_instance",
                    f"the token answer names a plain-http instance {instance.netloc}: "
                    "only loopback or SAGESF_SALESFORCE__PLAIN_HTTP_HOST may be reached over http",
                )
            self.session.allow_http(instance.netloc)
        self.sf: Any = Salesforce(
            instance_url=self._token.instance_url,
            session_id=self._token.access_token,
            session=self.session,
            version=settings.api_version,
        )
        self.session.token_source = lambda: self._token.access_token
        self.session.renewer = self._renew_after_401
        self.session.listeners.append(_count_call)

    # --- the token -------------------------------------------------------------------------------

    @property
    def token(self) -> AccessToken:
        return self._token

    @property
    def user_id(self) -> str:
        """The logged-in (integration) user's Id; AuthenticationFailed if the token answer names none."""
        identity = urlsplit(self._token.identity_url or "").path.rstrip("/").split("/")
        if len(identity) >= 4 and identity[-3] == "id" and is_user_id(identity[-1]):
            return identity[-1]
        raise AuthenticationFailed(
            self.settings.auth_flow,
            "no_identity",
            "the token answer names no user (its `id` URL): the echo guard needs the integration user",
        )

    @property
    def access_token(self) -> str:
        return self._token.access_token

    @property
    def instance_url(self) -> str:
        return self._token.instance_url

    @property
    def base_url(self) -> str:
        """`https://<instance>/services/data/vNN.N/` as simple-salesforce builds it."""
        return str(self.sf.base_url)

    def renew(self, stale: str | None = None) -> AccessToken:
        """A token other than `stale`: the current one if someone renewed already, else a new login.

        `stale=None` always logs in again. Thread-safe; raises auth.AuthenticationFailed or
        auth.AuthenticationUnavailable.
        """
        with self._lock:
            if stale is not None and self._token.access_token != stale:
                return self._token
            token = self._login()
            if token.instance_url != self._token.instance_url:
                log.warning("the new token names another instance; keeping the first one")
            self._token = token
            self.sf.session_id = token.access_token
            self.sf.headers["Authorization"] = f"Bearer {token.access_token}"
            return token

    def _renew_after_401(self, stale: str | None) -> str:
        TOKEN_REFRESHES.labels(self.settings.auth_flow).inc()
        log.info("Salesforce answered 401: renewing the %s login", self.settings.auth_flow)
        return self.renew(stale).access_token

    def _login(self) -> AccessToken:
        flow = self.settings.auth_flow
        try:
            token = request_token(self.settings, self.session)
        except Exception:
            LOGINS.labels(flow, "failed").inc()
            raise
        LOGINS.labels(flow, "ok").inc()
        return token

    # --- responses -------------------------------------------------------------------------------

    def add_listener(self, listener: ResponseListener) -> None:
        """Call `listener(request, response)` after every response (after a 401 retry: the retry's)."""
        self.session.listeners.append(listener)

    def close(self) -> None:
        self.session.close()


def _count_call(request: requests.PreparedRequest, response: requests.Response) -> None:
    resource = _resource(request.url)
    if resource is not None:
        API_CALLS.labels(resource, str(response.status_code)).inc()


def is_user_id(value: str) -> bool:
    """Whether `value` is a Salesforce User Id (key prefix 005, 15 or 18 characters)."""
    return bool(_USER_ID.match(value))


def connect(settings: SalesforceSettings) -> SalesforceConnection:
    """Log in with the configured flow; the connection (see the module doc)."""
    return SalesforceConnection(settings)


def salesforce(settings: SalesforceSettings) -> Any:
    """A ready `simple_salesforce.Salesforce` (its `.session` stamps, refreshes and watches)."""
    return connect(settings).sf
