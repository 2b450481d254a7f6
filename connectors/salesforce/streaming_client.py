"""aiosfstream-ng pointed at the configured org, logged in through the shared connection.

What it owns: `ConnectionAuthenticator`, an aiosfstream authenticator that takes its access token
from connectors/salesforce/client.py (`SalesforceConnection`) instead of logging in by itself,
and `StreamingClient`, aiosfstream's `Client` with the CometD URL built from the instance URL
and the configured API version.

Why: aiosfstream's authenticators post to `_token_url`, a class property fixed to
login.salesforce.com (test.salesforce.com with `sandbox=True`), support only the password and
refresh-token grants, and hard-code API version 45.0 in the CometD URL. Here `_token_url` is the
configured login URL (for anyone who reads it), and `_authenticate()` returns the shared
connection's token, so every configured flow (JWT, client credentials, password, refresh token)
works and REST and streaming share one login. When the server answers 401/403 (an expired token:
`401::Authentication invalid` on a held `/meta/connect`, or a refused handshake), aiocometd calls
`authenticate()` again: the authenticator asks the connection to `renew()` the token it was
using (one login for all callers that saw the same stale token) and aiocometd re-sends the
request, so streaming resumes without a gap.

`quiet_close_noise()` drops the CancelledError traceback aiocometd-ng logs through asyncio when a
client closes while its long-poll is held (harmless, and it looks like a failure in the log).

Limits: a renewal blocks a worker thread for the login's duration; the token endpoint's failures
surface as aiosfstream's `AuthenticationError` (the source restarts its client with backoff).
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

from aiosfstream_ng.auth import AuthenticatorBase
from aiosfstream_ng.client import Client

from connectors.salesforce.auth import AuthenticationFailed, AuthenticationUnavailable, token_url
from connectors.salesforce.client import SalesforceConnection

log = logging.getLogger(__name__)

__all__ = ["ConnectionAuthenticator", "StreamingClient", "quiet_close_noise"]


class ConnectionAuthenticator(AuthenticatorBase):
    """aiosfstream authentication from the shared SalesforceConnection (see the module doc)."""

    def __init__(self, connection: SalesforceConnection) -> None:
        super().__init__(sandbox=False)
        self.connection = connection

    @property
    def _token_url(self) -> str:
        return token_url(self.connection.settings)

    async def _authenticate(self) -> tuple[int, dict[str, Any]]:
        stale = self.access_token
        try:
            if stale is None:
                token = self.connection.token
            else:
                log.info("streaming authentication refused: renewing the Salesforce token")
                token = await asyncio.to_thread(self.connection.renew, stale)
        except AuthenticationFailed as exc:
            return HTTPStatus.UNAUTHORIZED, {"error": exc.error, "error_description": exc.description}
        except AuthenticationUnavailable as exc:
            return HTTPStatus.SERVICE_UNAVAILABLE, {"error": "unavailable", "error_description": str(exc)}
        return HTTPStatus.OK, token.oauth_response()

    def __repr__(self) -> str:  # aiosfstream logs its authenticator: never show a token
        return f"{type(self).__name__}(login_url={self.connection.settings.login_url!r})"


class StreamingClient(Client):
    """aiosfstream's Client with the CometD URL for the configured API version."""

    api_version = "62.0"

    def __init__(self, authenticator: ConnectionAuthenticator, **kwargs: Any) -> None:
        super().__init__(authenticator, **kwargs)
        self.api_version = authenticator.connection.settings.api_version

    def get_cometd_url(self, instance_url: str) -> str:  # type: ignore[override]
        return f"{instance_url.rstrip('/')}/cometd/{self.api_version}"


class _HeldConnectCancelled(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, asyncio.CancelledError) and "_connect_done" in record.getMessage())


def quiet_close_noise() -> None:
    """Hide aiocometd-ng's harmless traceback on close (see the module doc); idempotent."""
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _HeldConnectCancelled) for f in asyncio_log.filters):
        asyncio_log.addFilter(_HeldConnectCancelled())
