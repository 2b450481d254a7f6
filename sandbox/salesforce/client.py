"""Pointing unmodified Salesforce clients (simple-salesforce, requests) at the emulator.

What it owns: `EmulatorAdapter`, a requests transport adapter that sends every `https://` request
for a `*.salesforce.com` host (login.salesforce.com, test.salesforce.com, My Domain hosts) or for
the emulator's own host:port to the emulator's plain-HTTP base URL, keeping path and query. Mounted
on a `requests.Session` for `https://`, it lets simple-salesforce, which builds every URL as
`https://{instance}/services/...`, talk to `http://127.0.0.1:<port>` unchanged.
`emulator_session()` builds such a session, optionally with a `Sforce-Call-Options: client=<id>`
header on every request (simple-salesforce builds per-call headers, so a header meant for every
call must live on the session). `connect()` logs in with the OAuth password grant and returns a
`simple_salesforce.Salesforce` that re-logs in by itself after a 401.

The same idea serves the connectors: they take a session factory, and production passes a plain
`requests.Session`.

Limits: hosts other than *.salesforce.com and the emulator's own pass through untouched (real
https); the adapter does not serve TLS.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from simple_salesforce.api import Salesforce

API_VERSION = "62.0"


class EmulatorAdapter(HTTPAdapter):
    """Rewrites https://<*.salesforce.com or the emulator>/... to the emulator's http base URL."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        target = urlsplit(base_url)
        self.scheme = target.scheme or "http"
        self.netloc = target.netloc

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme == "https" and (host.endswith(".salesforce.com") or parts.netloc == self.netloc):
            return urlunsplit((self.scheme, self.netloc, parts.path, parts.query, parts.fragment))
        return url

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        if request.url is not None:
            request.url = self.rewrite(request.url)
        return super().send(request, *args, **kwargs)


def emulator_session(
    base_url: str, client: str | None = None, headers: Mapping[str, str] | None = None
) -> requests.Session:
    """A requests session whose https calls go to the emulator at `base_url`."""
    session = requests.Session()
    session.mount("https://", EmulatorAdapter(base_url))
    if client:
        session.headers["Sforce-Call-Options"] = f"client={client}"
    if headers:
        session.headers.update(headers)
    return session


def connect(
    base_url: str,
    *,
    username: str,
    password: str,
    client_id: str,
    client_secret: str,
    client: str | None = None,
    version: str = API_VERSION,
) -> Salesforce:
    """A logged-in simple-salesforce client (OAuth password grant) talking to the emulator."""
    return Salesforce(
        username=username,
        password=password,
        consumer_key=client_id,
        consumer_secret=client_secret,
        session=emulator_session(base_url, client),
        version=version,
    )
