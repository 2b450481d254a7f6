"""The credit check's round trip: Credit_Check_Request__e published in Salesforce -> Sage's answer
seen as a Credit_Check_Reply__e by a subscriber in Salesforce, the figures read from the
requester's Credit_Check__c record the event names.

Starts the sandbox (or reuses the running one: `SAGESF_SANDBOX_DIR`, default `.sandbox`), seeds
the org, links `--accounts` Salesforce accounts to Sage customers, subscribes to the replies over
CometD (aiosfstream-ng, as a Salesforce client would) and then publishes `--requests` requests at
`--rate` per second through simple-salesforce, each with a 30 s deadline. The clock runs from the
publish call returning until the subscriber receives the reply with the same correlation ID, so
it covers the Salesforce source, credit.requests.v1, the Sage sink's responder (AR_Customer and
open SO_SalesOrderHeader reads), credit.replies.v1, the processors' credit agent, the Salesforce
sink's publish and the emulator's streaming delivery. Prints p50/p95/p99, replies per second and
how many came within the deadline, with the machine's core count (everything shares it).

    .venv/bin/python bench/credit.py [--requests 200] [--rate 20]

One sales rep asks every question, so a sandbox it starts allows that rep `--requests` per minute
(SAGESF_SAGE_SINK__CREDIT_REQUESTS_PER_REQUESTER); a running sandbox keeps its own limit, and the
answers over it count as RATE_LIMITED below.

Limits: the sink's batch window (1.0 s by default) is most of the latency; the published requests
stay in the emulator's event log (use a throw-away `SAGESF_SANDBOX_DIR` to start clean).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import time
import uuid
from collections import Counter
from functools import partial

from rich.console import Console

from sandbox import pipeline, stack
from sandbox.credit_flow import ReplyListener, answer_record
from sandbox.order_flow import SageDatabase, sage_customer_accounts, sales_rep
from sandbox.salesforce.scenarios import request_credit_check, seed

console = Console()
DEADLINE_S = 30.0  # request_credit_check's Reply_Deadline__c


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] if ordered else float("nan")


async def run(url: str, externals: list[str], count: int, rate: float, timeout: float) -> None:
    sf = sales_rep(url)
    loop = asyncio.get_running_loop()
    sent: dict[str, float] = {}
    async with ReplyListener(url) as replies:
        started = time.monotonic()
        for n in range(count):
            due = started + n / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            correlation = uuid.uuid4().hex
            amount = 100.0 if n % 2 else 5_000_000.0  # half fit any limit, half exceed it
            external = externals[n % len(externals)]
            await loop.run_in_executor(None, partial(request_credit_check, sf, external, amount, correlation))
            sent[correlation] = time.monotonic()
        try:
            await replies.wait(set(sent), timeout)
        except TimeoutError as exc:
            console.print(f"[red]{exc}[/red]")
        got = {c: replies.received[c] for c in sent if c in replies.received}
    latencies = [got[c][0] - sent[c] for c in got]
    decisions: Counter[str] = Counter()
    for _, payload in got.values():
        record = answer_record(sf, payload)
        decisions[str(record.get("Decision__c")) if record else "no record"] += 1
    span = max((at for at, _ in got.values()), default=started) - started
    console.print(f"cores: {os.cpu_count()} (os.cpu_count()); requests: {count} at {rate:g}/s")
    console.print(
        f"round trip, publish -> reply received (s): p50 {percentile(latencies, 50):.2f}  "
        f"p95 {percentile(latencies, 95):.2f}  p99 {percentile(latencies, 99):.2f}  "
        f"max {max(latencies, default=float('nan')):.2f}"
    )
    within = sum(1 for v in latencies if v <= DEADLINE_S)
    console.print(
        f"replies: {len(got)} of {count}, {within} within the {DEADLINE_S:g} s deadline; "
        f"{len(got) / span if span else 0:.1f} replies/s; decisions: "
        + ", ".join(f"{name} {n}" for name, n in sorted(decisions.items()))
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rate", type=float, default=20.0, help="requests published per second")
    parser.add_argument("--accounts", type=int, default=12, help="accounts the requests are spread over")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the last reply")
    args = parser.parse_args(argv)

    os.environ.setdefault("SAGESF_SAGE_SINK__CREDIT_REQUESTS_PER_REQUESTER", str(max(20, args.requests + 10)))
    sandbox = stack.up(console.print)
    url = sandbox.addresses["salesforce"]
    sf = sales_rep(url)
    seed(sf)
    database = SageDatabase(pipeline.sage_database_path())
    try:
        accounts = sage_customer_accounts(sf, database, args.accounts)
    finally:
        database.close()
    externals = [sf.Account.get(account_id)["ExternalID__c"] for account_id, _ in accounts]
    asyncio.run(run(url, externals, 5, 5.0, 60.0))  # warm-up: first lookups and connections
    console.print("warm-up done")
    asyncio.run(run(url, externals, args.requests, args.rate, args.timeout))
    console.print(
        f"the sandbox is still running (state in {stack.env_file().parent}); stop it: sagesf sandbox down"
    )


if __name__ == "__main__":
    main()
