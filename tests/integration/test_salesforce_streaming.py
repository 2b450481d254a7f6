"""The emulator's Streaming API, driven by the unmodified aiosfstream-ng client over sockets.

The emulator is the full app in its own process (the `salesforce_emulator` fixture); records are
changed through simple-salesforce, as a user or the Salesforce sink would change them, and the
change events are received by aiosfstream-ng exactly as the CDC source receives them. The
emulator is shared with other tests, so each test counts only events for records it made (tests
run one at a time, so nothing else writes while a test waits).
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
import requests
from aiosfstream_ng.auth import PasswordAuthenticator
from aiosfstream_ng.client import Client
from aiosfstream_ng.exceptions import ServerError
from aiosfstream_ng.replay import ReplayMarker, ReplayMarkerStorage, ReplayOption
from simple_salesforce.api import Salesforce

from sandbox.salesforce.harness import RunningEmulator

pytestmark = pytest.mark.timeout(60)

ACCOUNTS = "/data/AccountChangeEvent"
ALL_CHANGES = "/data/ChangeEvents"
CREDIT_REQUESTS = "/event/Credit_Check_Request__e"
CONNECT_TIMEOUT_MS = 2000
ORIGIN = re.compile(r"^com/salesforce/api/rest/\d+\.\d;client=sagesf-test$")


@pytest.fixture
def emu(salesforce_emulator: RunningEmulator) -> Iterator[RunningEmulator]:
    """The shared emulator with short held connects (2 s instead of Salesforce's 110 s)."""
    salesforce_emulator.admin("DELETE", "/admin/faults")
    short_polls(salesforce_emulator)
    yield salesforce_emulator
    salesforce_emulator.admin(
        "POST", "/admin/streaming/settings", {"connectTimeoutMs": 110_000, "maxBatch": 1000}
    )


@pytest.fixture
def sf(emu: RunningEmulator) -> Salesforce:
    """simple-salesforce as the integration: every call says `Sforce-Call-Options: client=sagesf-test`."""
    return emu.connect(client="sagesf-test")


def short_polls(emulator: RunningEmulator) -> None:
    emulator.admin("POST", "/admin/streaming/settings", {"connectTimeoutMs": CONNECT_TIMEOUT_MS})


class EmulatorAuthenticator(PasswordAuthenticator):
    """aiosfstream's password flow, pointed at the emulator instead of login.salesforce.com."""

    def __init__(self, emulator: RunningEmulator) -> None:
        super().__init__(emulator.client_id, emulator.client_secret, emulator.username, emulator.password)
        self.base_url = emulator.url
        self.logins = 0

    @property
    def _token_url(self) -> str:
        return f"{self.base_url}/services/oauth2/token"

    async def _authenticate(self) -> tuple[int, Any]:
        self.logins += 1
        return await super()._authenticate()


class MemoryReplayStorage(ReplayMarkerStorage):
    """A real ReplayMarkerStorage, as the CDC source keeps one (there: in Kafka)."""

    def __init__(self) -> None:
        super().__init__()
        self.markers: dict[str, ReplayMarker] = {}

    async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
        return self.markers.get(subscription)

    async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
        self.markers[subscription] = replay_marker


def client_for(emulator: RunningEmulator, replay: Any) -> Client:
    return Client(EmulatorAuthenticator(emulator), replay=replay, connection_timeout=10)


async def take(client: Client, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(out) < count:
        out.append(await asyncio.wait_for(client.receive(), max(deadline - time.monotonic(), 0.01)))
    return out


async def nothing_more(client: Client, wait: float = 1.0) -> None:
    try:
        extra = await asyncio.wait_for(client.receive(), wait)
    except TimeoutError:
        return
    pytest.fail(f"unexpected extra event {extra}")


def replay_ids(messages: list[dict[str, Any]]) -> list[int]:
    return [m["data"]["event"]["replayId"] for m in messages]


def record_ids(messages: list[dict[str, Any]]) -> list[str]:
    return [rid for m in messages for rid in m["data"]["payload"]["ChangeEventHeader"]["recordIds"]]


def in_thread(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a blocking call (simple-salesforce, the admin API) without stalling the client's loop."""
    return asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args, **kwargs))


def sobject(sf: Salesforce, name: str) -> Any:
    """`sf.Account` and friends (simple-salesforce's typing cannot tell them from `sf.bulk`)."""
    return getattr(sf, name)


def new_account(sf: Salesforce, **fields: Any) -> str:
    return str(sobject(sf, "Account").create({"Name": f"Streaming {uuid.uuid4().hex[:8]}", **fields})["id"])


def update_account(sf: Salesforce, record_id: str, fields: dict[str, Any]) -> None:
    sobject(sf, "Account").update(record_id, fields)


# -- CDC and platform events ---------------------------------------------------------------


def test_create_update_delete_undelete_arrive_with_salesforce_headers_and_bodies(
    emu: RunningEmulator, sf: Salesforce
) -> None:
    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], float]:
        async with client_for(emu, MemoryReplayStorage()) as client:
            await client.subscribe(ACCOUNTS)
            await client.subscribe(ALL_CHANGES)
            started = time.monotonic()
            record = await in_thread(new_account, sf, BillingCity="Austin", Website="acme.example")
            first = await take(client, 2)
            latency = time.monotonic() - started
            await in_thread(update_account, sf, record, {"Phone": "555-0100", "Website": None})
            await in_thread(sobject(sf, "Account").delete, record)
            await in_thread(emu.admin, "POST", "/admin/undelete", {"ids": [record]})
            rest = await take(client, 6)
        messages = first + rest
        return (
            [m for m in messages if m["channel"] == ACCOUNTS],
            [m for m in messages if m["channel"] == ALL_CHANGES],
            latency,
        )

    accounts, all_changes, latency = asyncio.run(scenario())
    assert latency < 1.5  # the held /meta/connect wakes on the commit, not at its 2 s timeout
    ids = replay_ids(accounts)
    assert ids == sorted(ids)
    assert replay_ids(all_changes) == ids  # the same events, with the same replay IDs
    create, update, delete, undelete = (m["data"]["payload"] for m in accounts)
    [record] = create["ChangeEventHeader"]["recordIds"]
    for payload, kind in ((create, "CREATE"), (update, "UPDATE"), (delete, "DELETE"), (undelete, "UNDELETE")):
        header = payload["ChangeEventHeader"]
        assert header["changeType"] == kind
        assert header["entityName"] == "Account"
        assert header["recordIds"] == [record]
        if kind != "UNDELETE":  # undelete goes through the admin API, not the integration's calls
            assert ORIGIN.match(header["changeOrigin"]), header["changeOrigin"]
        assert header["commitUser"] == emu.user_ids[emu.username]
        assert {"transactionKey", "sequenceNumber", "commitTimestamp", "commitNumber"} <= set(header)
    # CREATE: every non-null field, compound address nested, never Id/IsDeleted/SystemModstamp
    assert create["Name"].startswith("Streaming ")
    assert create["BillingAddress"] == {"City": "Austin"}
    assert create["Website"] == "acme.example"
    assert not {"Id", "IsDeleted", "SystemModstamp", "Phone", "BillingCity"} & set(create)
    assert create["ChangeEventHeader"]["changedFields"] == []
    # UPDATE: only what changed (a nulled field present with null) plus LastModifiedDate
    assert set(update) == {"ChangeEventHeader", "Phone", "Website", "LastModifiedDate"}
    assert update["Phone"] == "555-0100"
    assert update["Website"] is None
    assert set(update["ChangeEventHeader"]["changedFields"]) == {"Phone", "Website", "LastModifiedDate"}
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z$", update["LastModifiedDate"])
    # DELETE: no field; UNDELETE: the restored record
    assert set(delete) == {"ChangeEventHeader"}
    assert undelete["Name"] == create["Name"]
    assert undelete["BillingAddress"] == {"City": "Austin"}


def test_platform_events_are_delivered_on_their_channel(emu: RunningEmulator, sf: Salesforce) -> None:
    correlation = uuid.uuid4().hex

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        async with client_for(emu, MemoryReplayStorage()) as client:
            await client.subscribe(CREDIT_REQUESTS)
            event = {
                "Correlation_Id__c": correlation,
                "Account_Id__c": "0015e0000000001AAA",
                "Amount__c": 1250.5,
            }
            published = await in_thread(sobject(sf, "Credit_Check_Request__e").create, event)
            await in_thread(new_account, sf)  # a change event: not on this channel
            [message] = await take(client, 1)
            await nothing_more(client, 0.5)
            return published, message

    published, message = asyncio.run(scenario())
    assert message["channel"] == CREDIT_REQUESTS
    assert isinstance(message["data"]["event"]["replayId"], int)
    # the publish call's OPERATION_ENQUEUED message names the EventUuid the subscriber sees
    assert message["data"]["event"]["EventUuid"] == published["errors"][0]["message"]
    payload = message["data"]["payload"]
    assert payload["Correlation_Id__c"] == correlation
    assert payload["Amount__c"] == 1250.5
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", payload["CreatedDate"])


def test_platform_events_published_through_collections(emu: RunningEmulator, sf: Salesforce) -> None:
    """POST composite/sobjects with event records publishes each (Salesforce allows it); a bad one
    fails alone, or, with allOrNone, keeps every other from being published."""
    replies = "/event/Credit_Check_Reply__e"
    record = "a0C000000000001AAA"  # a Credit_Check__c ID

    def reply(correlation: str, **extra: Any) -> dict[str, Any]:
        return {"attributes": {"type": "Credit_Check_Reply__e"}, "Correlation_Id__c": correlation, **extra}

    async def scenario() -> tuple[list[Any], list[Any], list[dict[str, Any]]]:
        async with client_for(emu, MemoryReplayStorage()) as client:
            await client.subscribe(replies)
            mixed = [reply("c-1", Credit_Check_Id__c=record, Message__c="stored"), reply("c-2", Bogus__c=1)]
            partial = await in_thread(
                sf.restful, "composite/sobjects", method="POST", json={"allOrNone": False, "records": mixed}
            )
            refused = await in_thread(
                sf.restful,
                "composite/sobjects",
                method="POST",
                json={"allOrNone": True, "records": [reply("c-3"), reply("c-4", Bogus__c=1)]},
            )
            [message] = await take(client, 1)
            await nothing_more(client, 0.5)
            return partial, refused, [message]

    partial, refused, [message] = asyncio.run(scenario())
    assert partial[0]["success"] is True
    assert partial[0]["errors"][0]["statusCode"] == "OPERATION_ENQUEUED"
    assert partial[1]["success"] is False
    assert partial[1]["errors"][0]["statusCode"] == "INVALID_FIELD"
    assert [r["success"] for r in refused] == [False, False]
    assert refused[0]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    payload = message["data"]["payload"]
    assert (payload["Correlation_Id__c"], payload["Credit_Check_Id__c"], payload["Message__c"]) == (
        "c-1",
        record,
        "stored",
    )


def test_gap_and_overflow_events_from_the_admin_api(emu: RunningEmulator) -> None:
    async def scenario() -> list[dict[str, Any]]:
        async with client_for(emu, MemoryReplayStorage()) as client:
            await client.subscribe(ACCOUNTS)
            gap = {"entity": "Account", "changeType": "GAP_UPDATE", "recordIds": ["0015e0000000003AAA"]}
            await in_thread(emu.admin, "POST", "/admin/streaming/gap", gap)
            overflow = {"entity": "Account", "changeType": "GAP_OVERFLOW"}
            await in_thread(emu.admin, "POST", "/admin/streaming/gap", overflow)
            return await take(client, 2)

    gap, overflow = (m["data"]["payload"] for m in asyncio.run(scenario()))
    assert gap["ChangeEventHeader"]["changeType"] == "GAP_UPDATE"
    assert gap["ChangeEventHeader"]["recordIds"] == ["0015e0000000003AAA"]
    assert set(gap) == {"ChangeEventHeader"}  # no fields: the consumer must re-read the record
    assert overflow["ChangeEventHeader"]["changeType"] == "GAP_OVERFLOW"
    assert overflow["ChangeEventHeader"]["recordIds"] == []
    assert set(overflow) == {"ChangeEventHeader"}


# -- replay --------------------------------------------------------------------------------


def test_restart_with_stored_replay_id_gets_exactly_the_missed_events(
    emu: RunningEmulator, sf: Salesforce
) -> None:
    """Stop the client, change records, restart the emulator and the client: exactly the gap arrives."""
    storage = MemoryReplayStorage()

    async def first_run() -> list[str]:
        async with client_for(emu, storage) as client:
            await client.subscribe(ACCOUNTS)
            made = [await in_thread(new_account, sf) for _ in range(2)]
            assert record_ids(await take(client, 2)) == made
            return made

    made = asyncio.run(first_run())
    stored = storage.markers[ACCOUNTS].replay_id
    for number in range(3):  # the client is down
        update_account(sf, made[0], {"Phone": f"555-010{number}"})
    emu.restart()  # the event log and its replay IDs survive; client sessions do not
    short_polls(emu)

    async def second_run() -> list[dict[str, Any]]:
        async with client_for(emu, storage) as client:
            await client.subscribe(ACCOUNTS)
            got = await take(client, 3)
            await nothing_more(client)
            return got

    missed = asyncio.run(second_run())
    assert [m["data"]["payload"]["Phone"] for m in missed] == ["555-0100", "555-0101", "555-0102"]
    assert all(replay_id > stored for replay_id in replay_ids(missed))
    assert storage.markers[ACCOUNTS].replay_id == replay_ids(missed)[-1]


def test_replay_all_retained_events_with_minus_two(emu: RunningEmulator, sf: Salesforce) -> None:
    async def live() -> list[int]:
        async with client_for(emu, MemoryReplayStorage()) as client:
            await client.subscribe(ACCOUNTS)
            for _ in range(4):
                await in_thread(new_account, sf)
            return replay_ids(await take(client, 4))

    ids = asyncio.run(live())
    emu.admin("POST", "/admin/streaming/age-out", {"beforeReplayId": ids[1]})  # ids[0] is past retention

    async def replay_all() -> list[int]:
        async with client_for(emu, ReplayOption.ALL_EVENTS) as client:
            await client.subscribe(ACCOUNTS)
            got = await take(client, 3)
            await nothing_more(client, 0.5)
            return replay_ids(got)

    assert asyncio.run(replay_all()) == ids[1:]


def test_unknown_or_expired_replay_id_is_refused_with_salesforces_error(
    emu: RunningEmulator, sf: Salesforce
) -> None:
    async def live() -> list[int]:
        async with client_for(emu, MemoryReplayStorage()) as client:
            await client.subscribe(ACCOUNTS)
            for _ in range(2):
                await in_thread(new_account, sf)
            return replay_ids(await take(client, 2))

    ids = asyncio.run(live())
    emu.admin("POST", "/admin/streaming/age-out", {"beforeReplayId": ids[1]})

    async def subscribe_from(replay_id: int) -> None:
        storage = MemoryReplayStorage()
        storage.markers[ACCOUNTS] = ReplayMarker(date="1", replay_id=replay_id)
        async with client_for(emu, storage) as client:
            await client.subscribe(ACCOUNTS)

    for bad in (ids[0], ids[1] + 1_000_000):  # purged by retention; never handed out
        with pytest.raises(ServerError) as raised:
            asyncio.run(subscribe_from(bad))
        assert raised.value.error_code == 400
        assert raised.value.response is not None
        assert raised.value.response["error"] == (
            f"400::The replayId {{{bad}}} you provided was invalid.  Please provide a valid ID, "
            "-2 to replay all events, or -1 to replay only new events."
        )
    asyncio.run(subscribe_from(ids[1]))  # still retained: accepted


# -- recovering from the server side -------------------------------------------------------


def test_dropped_clients_rehandshake_and_lose_no_event(emu: RunningEmulator, sf: Salesforce) -> None:
    async def scenario() -> None:
        storage = MemoryReplayStorage()
        async with client_for(emu, storage) as client:
            await client.subscribe(ACCOUNTS)
            record = await in_thread(new_account, sf)
            await take(client, 1)
            [before] = (await in_thread(emu.admin, "GET", "/admin/streaming/clients"))["clients"]
            assert (await in_thread(emu.admin, "POST", "/admin/streaming/drop-clients"))["dropped"] == 1
            # committed while the client has no session: its resubscription replays them
            for number in range(3):
                await in_thread(update_account, sf, record, {"Phone": f"555-020{number}"})
            got = await take(client, 3)
            await nothing_more(client, 0.5)
            [after] = (await in_thread(emu.admin, "GET", "/admin/streaming/clients"))["clients"]
        assert [m["data"]["payload"]["Phone"] for m in got] == ["555-0200", "555-0201", "555-0202"]
        assert after["clientId"] != before["clientId"]  # a new handshake
        assert after["subscriptions"] == {ACCOUNTS: replay_ids(got)[-1]}

    asyncio.run(scenario())


def test_expired_token_makes_the_client_reauthenticate_and_continue(
    emu: RunningEmulator, sf: Salesforce
) -> None:
    async def scenario() -> None:
        client = client_for(emu, MemoryReplayStorage())
        auth = client.auth
        assert isinstance(auth, EmulatorAuthenticator)
        async with client:
            await client.subscribe(ACCOUNTS)
            logins = auth.logins
            await in_thread(emu.admin, "POST", "/admin/tokens/expire")
            await asyncio.sleep(1.5)  # a held connect re-checks its token every second: 401
            record = await in_thread(new_account, sf)  # simple-salesforce logs in again by itself
            [message] = await take(client, 1)
        assert record_ids([message]) == [record]
        assert auth.logins > logins  # aiosfstream fetched a new token and carried on

    asyncio.run(scenario())


# -- the Bayeux details a client relies on -------------------------------------------------


def access_token(emulator: RunningEmulator) -> str:
    response = requests.post(
        f"{emulator.url}/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": emulator.client_id,
            "client_secret": emulator.client_secret,
            "username": emulator.username,
            "password": emulator.password,
        },
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def bayeux(emulator: RunningEmulator, messages: Any, token: str, version: str = "62.0") -> requests.Response:
    return requests.post(
        f"{emulator.url}/cometd/{version}",
        json=messages,
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_bayeux_replies_as_salesforce_does(emu: RunningEmulator) -> None:
    token = access_token(emu)
    handshake = {
        "channel": "/meta/handshake",
        "id": "1",
        "version": "1.0",
        "supportedConnectionTypes": ["long-polling"],
    }
    response = bayeux(emu, [handshake], token)
    assert response.headers["Content-Type"].startswith("application/json")
    [reply] = response.json()
    assert reply["successful"] is True
    assert (reply["channel"], reply["id"]) == ("/meta/handshake", "1")
    assert reply["ext"] == {"replay": True, "payload.format": True}
    assert reply["supportedConnectionTypes"] == ["long-polling"]
    client_id = reply["clientId"]

    connect = {"channel": "/meta/connect", "id": "2", "clientId": client_id, "connectionType": "long-polling"}
    [first] = bayeux(emu, [connect], token).json()
    assert first["successful"] is True
    assert first["advice"] == {"interval": 0, "timeout": CONNECT_TIMEOUT_MS, "reconnect": "retry"}

    started = time.monotonic()
    [held] = bayeux(emu, [{**connect, "id": "3"}], token).json()
    assert (held["successful"], held["id"]) == (True, "3")
    assert 1.5 < time.monotonic() - started < 4  # held for the advised timeout: no events

    # a bad token: 401 with reconnect none; a handshake with it is denied
    [denied] = bayeux(emu, [{**connect, "id": "4"}], "expired").json()
    assert denied["error"] == "401::Authentication invalid"
    assert denied["advice"]["reconnect"] == "none"
    [refused] = bayeux(emu, [handshake], "expired").json()
    assert (refused["successful"], refused["error"]) == (False, "403::Handshake denied")
    assert refused["ext"]["sfdc"]["failureReason"] == "401::Authentication invalid"

    # an unknown client is told to handshake again
    [unknown] = bayeux(emu, [{**connect, "clientId": "nosuchclient"}], token).json()
    assert unknown["error"] == "403::Unknown client"
    assert unknown["advice"]["reconnect"] == "handshake"

    # a subscription to something that is no streaming channel
    subscribe = {"channel": "/meta/subscribe", "id": "5", "clientId": client_id, "subscription": "/topic/Foo"}
    [no_channel] = bayeux(emu, [subscribe], token).json()
    assert no_channel["successful"] is False
    assert no_channel["error"].startswith("400::The channel you requested to subscribe to does not exist")

    # bodies over 32,768 bytes and API versions before 37.0 are refused
    too_big = bayeux(emu, [{**subscribe, "ext": {"padding": "x" * 33_000}}], token)
    assert too_big.status_code == 413
    assert too_big.json()[0]["id"] == "5"
    old = bayeux(emu, [handshake], token, version="36.0")
    assert old.status_code == 400
    assert "Only API versions '37.0' and later are supported" in old.json()[0]["error"]

    [bye] = bayeux(emu, [{"channel": "/meta/disconnect", "id": "6", "clientId": client_id}], token).json()
    assert bye["successful"] is True
    clients = emu.admin("GET", "/admin/streaming/clients")["clients"]
    assert client_id not in {c["clientId"] for c in clients}


def test_events_ride_in_the_connect_response_in_batches(emu: RunningEmulator, sf: Salesforce) -> None:
    """A backlog reaches the client in few round trips, up to maxBatch events each."""
    emu.admin("POST", "/admin/streaming/settings", {"maxBatch": 250})

    async def scenario() -> tuple[list[int], list[str], list[str]]:
        token = await in_thread(access_token, emu)
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

            async def post(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
                async with session.post(f"{emu.url}/cometd/62.0", json=messages) as response:
                    return await response.json()  # type: ignore[no-any-return]

            async def open_client(replay: int) -> dict[str, Any]:
                [hs] = await post(
                    [{"channel": "/meta/handshake", "supportedConnectionTypes": ["long-polling"]}]
                )
                cid = hs["clientId"]
                ext = {"replay": {ACCOUNTS: replay}}
                await post(
                    [{"channel": "/meta/subscribe", "clientId": cid, "subscription": ACCOUNTS, "ext": ext}]
                )
                return {"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}

            def events(replies: list[dict[str, Any]]) -> list[dict[str, Any]]:
                return [m for m in replies if m["channel"] == ACCOUNTS]

            # learn the replay ID just before the backlog
            connect = await open_client(-1)
            await post([connect])
            await in_thread(new_account, sf)
            [marker] = events(await post([connect]))
            records = [{"attributes": {"type": "Account"}, "Name": f"Batch {n}"} for n in range(600)]
            created: list[str] = []
            for start in range(0, 600, 200):
                body = {"allOrNone": True, "records": records[start : start + 200]}
                results = await in_thread(sf.restful, "composite/sobjects", method="POST", json=body)
                created += [r["id"] for r in results]
            connect = await open_client(marker["data"]["event"]["replayId"])
            sizes: list[int] = []
            got: list[dict[str, Any]] = []
            while len(got) < 600:
                batch = events(await post([connect]))
                sizes.append(len(batch))
                got += batch
            return sizes, record_ids(got), created

    sizes, got, created = asyncio.run(scenario())
    assert sizes == [250, 250, 100]
    assert got == created
