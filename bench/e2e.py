"""Closed Won -> Sage order number visible in Salesforce: the whole pipeline's latency and throughput.

Starts the sandbox (or reuses the running one: `SAGESF_SANDBOX_DIR`, default `.sandbox`), seeds
the Salesforce org, and makes opportunities the way a sales org would, through simple-salesforce
against the emulator: open ones with product lines first (not timed), then each is moved to
Closed Won, and the clock runs from that update call returning until `Sage_Order_No__c` is seen
on the opportunity. Two modes, `--orders` opportunities each:

- steady: opportunities are won at `--rate` per second, spread over `--senders` sales reps
  (threads with their own sessions). The pipeline sustains the rate if the completed orders per
  minute match it and the latency does not grow through the run.
- burst: every opportunity is won at once (sObject Collections, 200 records a call, as a data
  load or a mass update would); completed per minute is the drain rate of the backlog.

Orders are for existing Sage customers (Salesforce accounts whose ExternalID__c is an AR_Customer
key) unless `--new-customers` gives the share of orders for new accounts, which first create
their customer in AR_Customer.

How the time is measured: one SOQL query per `--poll` seconds (`SELECT Id, Sage_Order_No__c FROM
Opportunity WHERE Id IN (...)`, 200 IDs a query) for every won opportunity still without a
number; an order counts as seen when that query returns, so latencies are upper bounds, about
`--poll` + one query too high at most. Where the time goes is read afterwards from Kafka: the
first record of each opportunity on salesorder.v1, sage.commands.v1, sage.results.v1 and
salesforce.commands.v1 (producer timestamps, same host clock) splits each order's latency into
hops. The machine's core count is printed with the figures: everything (Kafka, the registry,
the emulator, five pipeline processes and this script) shares it.

Targets (issue 6): p95 under 2 s and at least 1,000 orders per minute.

    .venv/bin/python bench/e2e.py [--orders 200] [--rate 20] [--mode both] [--new-customers 0]

Limits: each run adds its opportunities and orders to the sandbox for good (use a throw-away
`SAGESF_SANDBOX_DIR` to start clean), and its API calls count towards the emulator org's daily
limit (100,000; the pipeline's sink uses at most half).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import random
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from rich.console import Console
from rich.table import Table

from sandbox import pipeline, stack
from sandbox.order_flow import SageDatabase, order_numbers, price_book, sage_customer_accounts, sales_rep
from sandbox.salesforce.scenarios import seed

BATCH = 200  # sObject Collections and SOQL IN (...) size
CUSTOMERS = 20  # existing Sage customers the orders are spread over
HOPS = [  # (topic, the stage that wrote the record), in pipeline order
    ("salesorder.v1", "Salesforce CDC source"),
    ("sage.commands.v1", "orders processor"),
    ("sage.results.v1", "Sage sink"),
    ("salesforce.commands.v1", "results processor"),
]
SALESFORCE_ID = re.compile(rb"006[0-9A-Za-z]{15}")  # an Opportunity ID inside a record key

console = Console(highlight=False)
if not console.is_terminal:
    console.width = 120  # a log file gets whole tables


@dataclass
class Order:
    opportunity_id: str
    new_customer: bool
    won_at: float | None = None  # monotonic, when the Closed Won call returned
    won_wall: float | None = None  # the same moment in epoch seconds (Kafka timestamps)
    seen_at: float | None = None  # monotonic, when the query that first showed the number returned
    seen_wall: float | None = None

    @property
    def latency(self) -> float:
        assert self.won_at is not None
        assert self.seen_at is not None
        return self.seen_at - self.won_at


# --- preparation (not timed) ---------------------------------------------------------------------


def create(sf: Any, sobject: str, records: list[dict[str, Any]]) -> list[str]:
    """Create `records` with sObject Collections, 200 a call; their IDs in order."""
    ids: list[str] = []
    for start in range(0, len(records), BATCH):
        body = [{"attributes": {"type": sobject}, **r} for r in records[start : start + BATCH]]
        results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": body})
        failed = [r for r in results if not r["success"]]
        if failed:
            raise RuntimeError(f"creating {sobject} records failed: {failed[0]['errors']}")
        ids += [r["id"] for r in results]
    return ids


def prepare(
    sf: Any,
    count: int,
    accounts: list[tuple[str, str]],
    entries: dict[str, tuple[str, float]],
    new_share: float,
    lines: int,
    rng: random.Random,
) -> list[Order]:
    """`count` open opportunities with `lines` product lines each, ready to be won."""
    run = uuid.uuid4().hex[:6].upper()
    new = set(rng.sample(range(count), round(count * new_share)))
    new_ids = iter(
        create(
            sf,
            "Account",
            [
                {
                    "Name": f"Bench {run} Customer {i}",
                    "BillingStreet": "12 Harbor Way",
                    "BillingCity": "Irvine",
                    "BillingState": "CA",
                    "BillingPostalCode": "92618",
                    "BillingCountry": "United States",
                }
                for i in sorted(new)
            ],
        )
    )
    owners = [next(new_ids) if i in new else accounts[i % len(accounts)][0] for i in range(count)]
    opportunity_ids = create(
        sf,
        "Opportunity",
        [
            {
                "Name": f"Bench {run} order {i}",
                "AccountId": owner,
                "StageName": "Prospecting",
                "CloseDate": time.strftime("%Y-%m-%d"),
            }
            for i, owner in enumerate(owners)
        ],
    )
    codes = sorted(entries)
    create(
        sf,
        "OpportunityLineItem",
        [
            {
                "OpportunityId": opportunity_id,
                "PricebookEntryId": entries[code][0],
                "Quantity": rng.randint(1, 20),
                "UnitPrice": entries[code][1],
                "SortOrder": number,
            }
            for opportunity_id in opportunity_ids
            for number, code in enumerate(rng.sample(codes, min(lines, len(codes))), start=1)
        ],
    )
    return [Order(opportunity_id, i in new) for i, opportunity_id in enumerate(opportunity_ids)]


# --- winning them --------------------------------------------------------------------------------


def won(order: Order) -> None:
    order.won_wall = time.time()
    order.won_at = time.monotonic()


def win_steady(url: str, orders: list[Order], rate: float, senders: int) -> Callable[[], None]:
    """A function that wins `orders` at `rate` per second from `senders` threads (and returns
    when all are won)."""

    def run() -> None:
        start = time.monotonic() + 0.2
        errors: list[BaseException] = []

        def sender(first: int) -> None:
            try:
                rep = sales_rep(url)
                for i in range(first, len(orders), senders):
                    delay = start + i / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    rep.Opportunity.update(orders[i].opportunity_id, {"StageName": "Closed Won"})
                    won(orders[i])
            except BaseException as exc:  # noqa: BLE001 - re-raised by run()
                errors.append(exc)

        threads = [threading.Thread(target=sender, args=(k,), daemon=True) for k in range(senders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]

    return run


def win_burst(url: str, orders: list[Order]) -> Callable[[], None]:
    """A function that wins every order at once: sObject Collections updates, 200 a call."""

    def run() -> None:
        rep = sales_rep(url)
        for start in range(0, len(orders), BATCH):
            chunk = orders[start : start + BATCH]
            records = [
                {"attributes": {"type": "Opportunity"}, "Id": o.opportunity_id, "StageName": "Closed Won"}
                for o in chunk
            ]
            results = rep.restful(
                "composite/sobjects", method="PATCH", json={"allOrNone": True, "records": records}
            )
            failed = [r for r in results if not r["success"]]
            if failed:
                raise RuntimeError(f"winning opportunities failed: {failed[0]['errors']}")
            for order in chunk:
                won(order)

    return run


def measure(sf: Any, orders: list[Order], win: Callable[[], None], poll: float, timeout: float) -> None:
    """Win the orders in the background; poll Salesforce until every order number is visible."""
    failure: list[BaseException] = []

    def winning() -> None:
        try:
            win()
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure.append(exc)

    winner = threading.Thread(target=winning, name="win", daemon=True)
    winner.start()
    deadline = time.monotonic() + timeout
    pending = list(orders)
    while pending and time.monotonic() < deadline:
        asked = [o for o in pending if o.won_at is not None]
        if asked:
            found = order_numbers(sf, [o.opportunity_id for o in asked])
            now, wall = time.monotonic(), time.time()
            for order in asked:
                if found.get(order.opportunity_id):
                    order.seen_at, order.seen_wall = now, wall
            pending = [o for o in pending if o.seen_at is None]
        if failure:
            raise failure[0]
        time.sleep(poll)
    winner.join(timeout=60)
    if failure:
        raise failure[0]
    if pending:
        console.print(f"[red]{len(pending)} of {len(orders)} orders not seen within {timeout:.0f} s[/red]")


# --- where the time goes -------------------------------------------------------------------------


def topic_ends(kafka: str) -> dict[tuple[str, int], int]:
    """High watermark of every partition of the hop topics (where a run's records start)."""
    consumer = Consumer({"bootstrap.servers": kafka, "group.id": f"bench-{uuid.uuid4().hex[:8]}"})
    try:
        ends = {}
        for topic, _ in HOPS:
            for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
                ends[(topic, p)] = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        return ends
    finally:
        consumer.close()


def first_records(kafka: str, since: dict[tuple[str, int], int]) -> dict[str, dict[str, float]]:
    """topic -> Opportunity ID -> epoch seconds of its first record since `since` on that topic."""
    ends = topic_ends(kafka)
    consumer = Consumer(
        {"bootstrap.servers": kafka, "group.id": f"bench-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False}
    )
    firsts: dict[str, dict[str, float]] = {topic: {} for topic, _ in HOPS}
    try:
        todo = {tp: end for tp, end in ends.items() if end > since.get(tp, 0)}
        consumer.assign([TopicPartition(t, p, since.get((t, p), 0)) for t, p in todo])
        deadline = time.monotonic() + 60
        while todo and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            found = SALESFORCE_ID.search(msg.key() or b"")
            if found:
                key = found.group().decode()
                stamp = msg.timestamp()[1] / 1000
                firsts[topic][key] = min(stamp, firsts[topic].get(key, stamp))
            if offset + 1 >= todo.get((topic, partition), 0):
                todo.pop((topic, partition), None)
    finally:
        consumer.close()
    return firsts


def hops(orders: list[Order], firsts: dict[str, dict[str, float]]) -> list[tuple[str, list[float]]]:
    """Per hop, each fully traced order's time in it (seconds)."""
    names = ["Closed Won -> salesorder.v1 (CDC source)"]
    names += [f"{a} -> {b} ({stage})" for (a, _), (b, stage) in itertools.pairwise(HOPS)]
    names.append("salesforce.commands.v1 -> visible in Salesforce (Salesforce sink, poll)")
    out: list[list[float]] = [[] for _ in names]
    for order in orders:
        if order.won_wall is None or order.seen_wall is None:
            continue
        stamps = [firsts[topic].get(order.opportunity_id) for topic, _ in HOPS]
        if any(s is None for s in stamps):
            continue
        points = [order.won_wall, *[s for s in stamps if s is not None], order.seen_wall]
        for i in range(len(names)):
            out[i].append(max(0.0, points[i + 1] - points[i]))
    return list(zip(names, out, strict=True))


# --- report --------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Result:
    mode: str
    orders: list[Order]
    offered_per_minute: float | None
    breakdown: list[tuple[str, list[float]]]

    @property
    def done(self) -> list[Order]:
        return [o for o in self.orders if o.seen_at is not None]

    def latencies(self) -> list[float]:
        return [o.latency for o in self.done]

    def per_minute(self) -> float:
        """Completions per minute between the first and the last one (the pipeline's output rate,
        without the time the first order takes to get through)."""
        seen = sorted(o.seen_at for o in self.done if o.seen_at is not None)
        if len(seen) < 2:
            return 0.0
        return (len(seen) - 1) / max(seen[-1] - seen[0], 1e-9) * 60

    def won_per_minute(self) -> float:
        """Closed Won updates per minute the sales reps achieved (the offered load, really)."""
        won = sorted(o.won_at for o in self.orders if o.won_at is not None)
        if len(won) < 2:
            return 0.0
        return (len(won) - 1) / max(won[-1] - won[0], 1e-9) * 60

    def span(self) -> float:
        """Seconds from the first Closed Won to the last order number seen."""
        won = [o.won_at for o in self.orders if o.won_at is not None]
        seen = [o.seen_at for o in self.done if o.seen_at is not None]
        return max(seen) - min(won) if won and seen else 0.0


def report(results: list[Result], args: argparse.Namespace) -> None:
    table = Table(title="Closed Won -> order number visible in Salesforce", title_justify="left")
    columns = (
        "mode",
        "orders",
        "offered/min",
        "won/min",
        "completed/min",
        "span s",
        "p50 s",
        "p95 s",
        "p99 s",
        "max s",
    )
    for column in columns:
        table.add_column(column, justify="right" if column != "mode" else "left")
    for r in results:
        lat = r.latencies()
        figures = [f"{percentile(lat, p):.2f}" for p in (50, 95, 99, 100)] if lat else ["-"] * 4
        table.add_row(
            r.mode,
            f"{len(r.done)}/{len(r.orders)}",
            f"{r.offered_per_minute:,.0f}" if r.offered_per_minute else "all at once",
            f"{r.won_per_minute():,.0f}" if r.offered_per_minute else "-",
            f"{r.per_minute():,.0f}",
            f"{r.span():.1f}",
            *figures,
        )
    console.print(table)
    for r in results:
        new = [o.latency for o in r.done if o.new_customer]
        if new:  # these wait for their customer to be created in Sage first
            console.print(
                f"{r.mode}: {len(new)} orders for new customers: p50 {percentile(new, 50):.2f} s, "
                f"p95 {percentile(new, 95):.2f} s"
            )
        lat = r.latencies()
        if len(lat) >= 8:  # does the latency grow through the run (the pipeline falling behind)?
            quarter = len(lat) // 4
            console.print(
                f"{r.mode}: median latency of the first quarter {percentile(lat[:quarter], 50):.2f} s, "
                f"of the last quarter {percentile(lat[-quarter:], 50):.2f} s"
            )
    for r in results:
        hop_table = Table(title=f"where the time goes ({r.mode}), seconds", title_justify="left")
        hop_table.add_column("hop")
        for column in ("orders", "median", "p95"):
            hop_table.add_column(column, justify="right")
        for name, values in r.breakdown:
            if values:
                hop_table.add_row(
                    name, str(len(values)), f"{percentile(values, 50):.3f}", f"{percentile(values, 95):.3f}"
                )
        console.print(hop_table)
    console.print(
        f"cores: {os.cpu_count()} (os.cpu_count()); orders of {args.lines} lines; "
        f"{args.new_customers:.0%} for new customers; poll every {args.poll} s"
    )
    # the targets are about a sustained load: judged on the steady run when there is one (a
    # burst's latency is mostly its own queue)
    judged = next((r for r in results if r.mode == "steady"), results[0])
    latencies = judged.latencies()
    p95 = percentile(latencies, 95) if latencies else float("inf")
    rate = judged.per_minute()
    keeps_up = len(judged.done) == len(judged.orders)

    def verdict(ok: bool) -> str:
        return "[green]met[/green]" if ok else "[red]missed[/red]"

    console.print(
        f"targets ({judged.mode}): p95 < 2 s {verdict(p95 < 2 and keeps_up)} ({p95:.2f} s); "
        f">= 1,000 orders/min {verdict(rate >= 1000 and keeps_up)} ({rate:,.0f}/min"
        + (f" at {judged.offered_per_minute:,.0f}/min offered)" if judged.offered_per_minute else ")")
    )


# --- main ----------------------------------------------------------------------------------------


def run_mode(
    mode: str,
    args: argparse.Namespace,
    url: str,
    kafka: str,
    sf: Any,
    accounts: list[tuple[str, str]],
    entries: dict[str, tuple[str, float]],
    rng: random.Random,
) -> Result:
    orders = prepare(sf, args.orders, accounts, entries, args.new_customers, args.lines, rng)
    time.sleep(args.settle)  # let the pipeline pass over the preparation's change events
    since = topic_ends(kafka)
    win = win_burst(url, orders) if mode == "burst" else win_steady(url, orders, args.rate, args.senders)
    with console.status(f"{mode}: {args.orders} orders ..."):
        measure(sf, orders, win, args.poll, args.timeout)
    return Result(
        mode,
        orders,
        args.rate * 60 if mode == "steady" else None,
        hops(orders, first_records(kafka, since)),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=200, help="orders per mode (default 200)")
    parser.add_argument("--mode", choices=["steady", "burst", "both"], default="both")
    parser.add_argument("--rate", type=float, default=20.0, help="steady: orders won per second")
    parser.add_argument("--senders", type=int, default=4, help="steady: sales reps winning in parallel")
    parser.add_argument("--new-customers", type=float, default=0.0, help="share of orders for new accounts")
    parser.add_argument("--lines", type=int, default=2, help="product lines per opportunity")
    parser.add_argument("--poll", type=float, default=0.1, help="seconds between Salesforce queries")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to wait after preparing")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for each mode's orders")
    parser.add_argument("--seed", type=int, default=6)
    args = parser.parse_args(argv)
    if not 0 <= args.new_customers <= 1:
        parser.error("--new-customers is a share between 0 and 1")

    sandbox = stack.up(console.print)
    url, kafka = sandbox.addresses["salesforce"], sandbox.addresses["kafka"]
    sf = sales_rep(url)
    seed(sf)
    entries = price_book(sf)
    database = SageDatabase(pipeline.sage_database_path())
    try:
        accounts = sage_customer_accounts(sf, database, CUSTOMERS)
    finally:
        database.close()
    rng = random.Random(args.seed)
    # warm-up: the first orders of a process pay its registry look-ups and connections
    warm = prepare(sf, 5, accounts, entries, 0.0, args.lines, rng)
    measure(sf, warm, win_steady(url, warm, 5.0, 1), args.poll, 120)

    modes = ["steady", "burst"] if args.mode == "both" else [args.mode]
    results = [run_mode(mode, args, url, kafka, sf, accounts, entries, rng) for mode in modes]
    report(results, args)
    console.print(
        f"the sandbox is still running (state in {stack.env_file().parent}); stop it: sagesf sandbox down"
    )


if __name__ == "__main__":
    main()
