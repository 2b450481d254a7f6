"""How fast the Salesforce emulator serves what the pipeline asks of it.

Runs the emulator as a real subprocess (sandbox/salesforce/harness.py) on a temporary directory
and drives it with the unmodified simple-salesforce client over a socket, as the Salesforce sink
does:

- records/s upserted through sObject Collections (`PATCH composite/sobjects/Account/ExternalID__c`,
  200 records a request, allOrNone false): first as creates, then the same keys again as updates;
- CDC events/s delivered to one aiosfstream-ng subscriber: `bench_cdc_events` (the streaming
  half's; see the marked function below).

Aim (ARCHITECTURE.md, issue 3): 2,000 records/s and 2,000 events/s on the 2-core development
machine, so the emulator is never the bottleneck of a pipeline benchmark.

    .venv/bin/python bench/salesforce_emulator.py [--records 20000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from sandbox.salesforce.harness import RunningEmulator, start_emulator

BATCH = 200


def _records(run: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "attributes": {"type": "Account"},
            "ExternalID__c": f"{run}-{i:07d}",
            "Name": f"Bench Account {i}",
            "BillingCity": "Irvine",
            "BillingState": "CA",
            "Phone": "(949) 555-0100",
            "Type": "Customer - Direct",
            "Credit_Limit__c": 25000,
            "Sage_Sync_Status__c": "Synced",
        }
        for i in range(start, start + count)
    ]


def bench_collections_upsert(emulator: RunningEmulator, total: int) -> tuple[float, float]:
    """(creates/s, updates/s) through Collections upsert, 200 records a request, one client."""
    sf: Any = emulator.connect(client="bench")
    run = f"B{int(time.time())}"
    batches = [_records(run, min(BATCH, total - start), start) for start in range(0, total, BATCH)]
    rates = []
    for _ in ("create", "update"):
        started = time.perf_counter()
        for batch in batches:
            results = sf.restful(
                "composite/sobjects/Account/ExternalID__c",
                method="PATCH",
                json={"allOrNone": False, "records": batch},
            )
            if not all(r["success"] for r in results):
                raise RuntimeError(f"upsert failed: {next(r for r in results if not r['success'])}")
        rates.append(total / (time.perf_counter() - started))
    return rates[0], rates[1]


# ---- streaming (the streaming engineer's section) ------------------------------------------------
def bench_cdc_events(emulator: RunningEmulator, total: int) -> float | None:
    """CDC events/s delivered to one aiosfstream-ng subscriber on `/data/AccountChangeEvent`.

    Returns the backlog figure and prints all three, each over `total` Account creates committed
    through sObject Collections (200 a request, `Sforce-Call-Options: client=bench`):
    - `backlog`: the creates are committed first; an aiosfstream-ng client then resumes from the
      replay ID stored just before them, timed from subscribe to the last event received;
    - `live`: the same client stays subscribed while another batch is committed, timed from the
      first write to the last event received (bounded by the write rate as well);
    - `raw`: the backlog again, read with plain long-polling `/meta/connect` requests (no CometD
      client), which is what the emulator itself can serve: the headroom over the client.
    The emulator batches up to 1,000 events into one `/meta/connect` response, as Salesforce does,
    so the CometD client's per-message work, not the emulator, sets the first two figures.
    """
    import asyncio
    import json
    import time
    import uuid

    import aiohttp
    from aiosfstream_ng.auth import PasswordAuthenticator
    from aiosfstream_ng.client import Client
    from aiosfstream_ng.replay import ReplayMarker, ReplayMarkerStorage

    channel = "/data/AccountChangeEvent"
    sf = emulator.connect(client="bench")

    class Authenticator(PasswordAuthenticator):
        @property
        def _token_url(self) -> str:
            return f"{emulator.url}/services/oauth2/token"

    class Markers(ReplayMarkerStorage):
        def __init__(self) -> None:
            super().__init__()
            self.markers: dict[str, ReplayMarker] = {}

        async def get_replay_marker(self, subscription: str) -> ReplayMarker | None:
            return self.markers.get(subscription)

        async def set_replay_marker(self, subscription: str, replay_marker: ReplayMarker) -> None:
            self.markers[subscription] = replay_marker

    def write(count: int) -> None:
        for start in range(0, count, 200):
            records = [
                {"attributes": {"type": "Account"}, "Name": f"Bench {uuid.uuid4().hex[:12]}"}
                for _ in range(min(200, count - start))
            ]
            sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})

    def client(markers: Markers) -> Client:
        auth = Authenticator(emulator.client_id, emulator.client_secret, emulator.username, emulator.password)
        return Client(auth, replay=markers, max_pending_count=0)

    async def receive(subscriber: Client, count: int) -> None:
        for _ in range(count):
            await asyncio.wait_for(subscriber.receive(), 30)

    async def raw_rate(after: int, token: str) -> float:
        url = f"{emulator.url}/cometd/62.0"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:

            async def post(messages: list[dict[str, object]]) -> list[dict[str, object]]:
                async with session.post(url, json=messages) as response:
                    return json.loads(await response.read())  # type: ignore[no-any-return]

            started = time.perf_counter()
            hello: dict[str, object] = {
                "channel": "/meta/handshake",
                "supportedConnectionTypes": ["long-polling"],
            }
            [handshake] = await post([hello])
            cid = handshake["clientId"]
            ext = {"replay": {channel: after}}
            await post([{"channel": "/meta/subscribe", "clientId": cid, "subscription": channel, "ext": ext}])
            connect = {"channel": "/meta/connect", "clientId": cid, "connectionType": "long-polling"}
            received = 0
            while received < total:
                received += sum(1 for m in await post([connect]) if m["channel"] == channel)
            await post([{"channel": "/meta/disconnect", "clientId": cid}])
            return total / (time.perf_counter() - started)

    async def run() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        markers = Markers()
        async with client(markers) as subscriber:
            await subscriber.subscribe(channel)
            await loop.run_in_executor(None, write, 1)
            await receive(subscriber, 1)  # stores the replay ID just before the backlog
        before_backlog = markers.markers[channel].replay_id
        await loop.run_in_executor(None, write, total)
        async with client(markers) as subscriber:
            started = time.perf_counter()
            await subscriber.subscribe(channel)
            await receive(subscriber, total)
            backlog = total / (time.perf_counter() - started)
            started = time.perf_counter()
            writer = loop.run_in_executor(None, write, total)
            await receive(subscriber, total)
            live = total / (time.perf_counter() - started)
            await writer
            auth = subscriber.auth
            assert isinstance(auth, Authenticator)
            token = str(auth.access_token)
        return {"backlog": backlog, "live": live, "raw": await raw_rate(before_backlog, token)}

    rates = asyncio.run(run())
    print(f"cdc events, {total} Account creates, one subscriber on {channel}:")
    print(f"  aiosfstream-ng, backlog replay:    {rates['backlog']:8.0f} events/s")
    print(f"  aiosfstream-ng, live while writing: {rates['live']:8.0f} events/s")
    print(f"  plain long-polling, backlog:       {rates['raw']:8.0f} events/s   (the emulator's own rate)")
    return rates["backlog"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--records", type=int, default=20_000, help="records to upsert (default 20000)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sf-bench-") as directory:
        emulator = start_emulator(Path(directory))
        try:
            creates, updates = bench_collections_upsert(emulator, args.records)
            print(f"collections upsert, {BATCH}/request, {args.records} records:")
            print(f"  creates: {creates:8.0f} records/s")
            print(f"  updates: {updates:8.0f} records/s   (aim: 2,000 records/s)")
            events = bench_cdc_events(emulator, args.records)
            if events is None:
                print("cdc events to one aiosfstream-ng subscriber: not measured yet")
            else:
                print(f"cdc events to one aiosfstream-ng subscriber: {events:8.0f} events/s   (aim: 2,000/s)")
        finally:
            emulator.stop()


if __name__ == "__main__":
    main()
