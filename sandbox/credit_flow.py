"""The credit check as a requester in Salesforce sees it, against the sandbox emulator.

What it owns: `ReplyListener`, a CometD subscriber (aiosfstream-ng, the sales user's login) on
`/event/Credit_Check_Reply__e` that notes when each reply arrives, by correlation ID, and
`answer_record`, which reads the figures where the reply event points: the Credit_Check__c record
the requester owns (the event itself carries no figures; processors/credit.py says why). Used by
`make demo`, the end-to-end test (tests/e2e/test_order_automation.py) and bench/credit.py;
requests are published with `sandbox.salesforce.scenarios.request_credit_check`.

Limits: one subscriber per listener, over the emulator's long-polling transport; replies arrive
as the emulator delivers them (its long poll answers as soon as an event is there). The emulator
does not enforce sharing, so any user could read the record here; in a real org only its owner
(and users above it or with View All) can.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from types import TracebackType
from typing import Any

from aiosfstream_ng.auth import PasswordAuthenticator
from aiosfstream_ng.client import Client
from aiosfstream_ng.replay import ReplayOption

from sandbox.salesforce import sandbox_credentials
from sandbox.salesforce.config import SALES_USERNAME

__all__ = ["ANSWER_FIELDS", "REPLIES", "ReplyListener", "answer_record"]

REPLIES = "/event/Credit_Check_Reply__e"
ANSWER_FIELDS = (
    "Id",
    "OwnerId",
    "Correlation_Id__c",
    "Account_Id__c",
    "Decision__c",
    "Approved__c",
    "Credit_Limit__c",
    "Current_Balance__c",
    "Open_Order_Total__c",
    "Available_Credit__c",
    "Message__c",
)


def answer_record(sf: Any, reply: dict[str, Any]) -> dict[str, Any] | None:
    """The Credit_Check__c a reply event names, read as `sf`'s user (simple-salesforce); None when
    the event names no record (its Message__c then says why)."""
    record_id = reply.get("Credit_Check_Id__c")
    if not record_id:
        return None
    record: dict[str, Any] = dict(sf.Credit_Check__c.get(record_id))
    return {name: record.get(name) for name in ANSWER_FIELDS}


class _Login(PasswordAuthenticator):
    """aiosfstream's password flow, pointed at the emulator."""

    def __init__(self, url: str, *args: Any) -> None:
        super().__init__(*args)
        self._url = url

    @property
    def _token_url(self) -> str:
        return f"{self._url}/services/oauth2/token"


class ReplyListener:
    """`async with ReplyListener(url) as replies:` subscribed on entry; `await replies.wait(ids)`."""

    def __init__(self, salesforce_url: str, *, replay_all: bool = False) -> None:
        creds = sandbox_credentials(salesforce_url, username=SALES_USERNAME)
        auth = _Login(creds.url, creds.client_id, creds.client_secret, creds.username, creds.password)
        replay = ReplayOption.ALL_EVENTS if replay_all else ReplayOption.NEW_EVENTS
        self._client = Client(auth, replay=replay, connection_timeout=10)
        self.received: dict[str, tuple[float, dict[str, Any]]] = {}  # correlation -> (monotonic, payload)
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    async def __aenter__(self) -> ReplyListener:
        await self._client.open()
        await self._client.subscribe(REPLIES)
        self._task = asyncio.create_task(self._receive())
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        # aiocometd cancels its pending long poll on close and its done-callback then reports
        # the CancelledError through the loop's exception handler (a traceback on stderr that
        # means nothing): those, and only those, are not reported while the client closes
        loop = asyncio.get_running_loop()
        previous = loop.get_exception_handler()

        def quiet(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            if isinstance(context.get("exception"), asyncio.CancelledError):
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(quiet)
        try:
            await self._client.close()
            await asyncio.sleep(0.05)  # the transport's callbacks run now, not after we left
        finally:
            loop.set_exception_handler(previous)

    async def _receive(self) -> None:
        while True:
            message = await self._client.receive()
            payload: dict[str, Any] = message["data"]["payload"]
            correlation = payload.get("Correlation_Id__c")
            if isinstance(correlation, str) and correlation not in self.received:
                self.received[correlation] = (time.monotonic(), payload)
                self._changed.set()

    async def wait(self, correlations: set[str], timeout: float) -> dict[str, dict[str, Any]]:
        """The replies of these correlation IDs; TimeoutError naming how many are missing."""
        deadline = time.monotonic() + timeout
        while not correlations <= self.received.keys():
            left = deadline - time.monotonic()
            if left <= 0:
                missing = len(correlations - self.received.keys())
                raise TimeoutError(f"{missing} of {len(correlations)} credit replies did not come")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue
        return {c: self.received[c][1] for c in correlations}
