"""`make chaos`: the whole pipeline under load while its parts fail, and one table of what came through.

Starts its own sandbox (`SAGESF_SANDBOX_DIR`, default a new temporary folder) and runs the
scenarios one after another, each with its own opportunities won steadily by sales reps
(bench/e2e.py's `prepare` and `win_steady`):

| scenario | what fails |
|---|---|
| kill -9 | a random pipeline process killed every few seconds (restarted 1 s later, as a supervisor would) |
| broker restart | Kafka stopped and started again mid-run |
| Sage locked | the Sage 100 database held in an exclusive transaction for 60 s |
| Salesforce 403 | every REST call answered 403 REQUEST_LIMIT_EXCEEDED for 30 s |
| emulator down | the Salesforce emulator stopped for 60 s |
| fuzz | malformed change events and Sage rows (hypothesis) injected while orders flow |

After each, it waits until every won opportunity shows its Sage order number (or the wait runs
out) and counts: orders offered (won), orders in Sage (opportunities with an order), duplicates
(orders beyond the first per opportunity, open or in history), lost (won, no order), write-backs
missing (an order in Sage, no number on the opportunity), crashes (a pipeline process that ended
without being killed by the run; it is restarted and counted). Every row must read 0 lost,
0 duplicate, 0 missing, 0 crashes; the exit code is 1 otherwise.

    make chaos            # every scenario (about 15 minutes on 2 cores)
    .venv/bin/python -m bench.chaos --only kill-9 --kill-orders 50

Not part of `make test` (too long); CI runs the fast subset: tests/e2e kills each process once.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from rich.console import Console
from rich.table import Table

from bench.e2e import Order, prepare, win_steady
from sandbox import pipeline, stack
from sandbox.order_flow import SageDatabase, order_numbers, price_book, sage_customer_accounts, sales_rep
from sandbox.salesforce.scenarios import seed

console = Console(highlight=False, width=120)

PIPELINE = [c.name for c in pipeline.COMPONENTS]
# a chaos sandbox has short failure detection, as the e2e tests do
ENV = {
    "SAGESF_SAGE_SINK__CONSUMER_CONFIG": '{"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000}',
    "SAGESF_SALESFORCE__SINK__CONSUMER_CONFIG": (
        '{"session.timeout.ms": 10000, "heartbeat.interval.ms": 1000}'
    ),
}


@dataclass
class Row:
    scenario: str
    offered: int = 0
    in_sage: int = 0
    duplicates: int = 0
    lost: int = 0
    missing: int = 0
    crashes: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # the run itself went wrong: proves nothing

    @property
    def ok(self) -> bool:
        return self.lost == self.duplicates == self.missing == self.crashes == 0 and not self.failures


class Supervisor:
    """Watches the pipeline processes: one that ends without being killed by the run is a crash,
    counted and restarted; `kill(name)` is an expected death, restarted after `down` seconds."""

    def __init__(self) -> None:
        self.crashes = 0
        self._expected: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def kill(self, name: str, down: float = 1.0) -> None:
        with self._lock:
            self._expected.add(name)
        state = pipeline.component_process(_component(name)).state
        if state is not None and state.alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(state.pid, signal.SIGKILL)
        time.sleep(down)
        _service(name).start()
        with self._lock:
            self._expected.discard(name)

    def _watch(self) -> None:
        while not self._stop.wait(0.5):
            for name in PIPELINE:
                with self._lock:
                    if name in self._expected:
                        continue
                state = pipeline.component_process(_component(name)).state
                if state is None or not state.alive:
                    self.crashes += 1
                    console.print(f"   [red]crash[/red]: {name} ended by itself; restarting it")
                    with contextlib.suppress(Exception):
                        _service(name).start()


def _component(name: str) -> pipeline.Component:
    return next(c for c in pipeline.COMPONENTS if c.name == name)


def _service(name: str) -> stack.Service:
    return next(s for s in stack.services() if s.name == name)


# --- what fails ----------------------------------------------------------------------------------

Disruption = Callable[[Supervisor, threading.Event], None]


def kill_random_processes(every: float) -> Disruption:
    def disrupt(supervisor: Supervisor, winning: threading.Event) -> None:
        rng = random.Random(7)
        while winning.is_set():
            time.sleep(every)
            name = rng.choice(PIPELINE)
            console.print(f"   kill -9 {name}")
            supervisor.kill(name)

    return disrupt


def restart_broker(after: float) -> Disruption:
    def disrupt(supervisor: Supervisor, winning: threading.Event) -> None:
        time.sleep(after)
        kafka = _service("kafka")
        console.print("   stopping Kafka")
        kafka.stop()
        time.sleep(5)
        kafka.start()
        console.print("   Kafka back")

    return disrupt


def lock_sage(seconds: float, after: float) -> Disruption:
    def disrupt(supervisor: Supervisor, winning: threading.Event) -> None:
        time.sleep(after)
        db = sqlite3.connect(pipeline.sage_database_path(), timeout=30, isolation_level=None)
        try:
            db.execute("BEGIN EXCLUSIVE")
            console.print(f"   Sage database locked for {seconds:.0f} s")
            time.sleep(seconds)
            db.execute("ROLLBACK")
        finally:
            db.close()
        console.print("   Sage database unlocked")

    return disrupt


def storm(url: str, seconds: float, after: float) -> Disruption:
    def disrupt(supervisor: Supervisor, winning: threading.Event) -> None:
        time.sleep(after)
        requests.post(f"{url}/admin/faults/storm", json={"seconds": seconds}, timeout=10).raise_for_status()
        console.print(f"   Salesforce answers 403 REQUEST_LIMIT_EXCEEDED for {seconds:.0f} s")
        time.sleep(seconds)

    return disrupt


def emulator_down(seconds: float, after: float) -> Disruption:
    def disrupt(supervisor: Supervisor, winning: threading.Event) -> None:
        time.sleep(after)
        emulator = _service("salesforce")
        emulator.stop()
        console.print(f"   Salesforce emulator down for {seconds:.0f} s")
        time.sleep(seconds)
        emulator.start()
        console.print("   Salesforce emulator back")

    return disrupt


def fuzz(url: str, examples: int) -> Disruption:
    """Malformed change events (into the emulator's event log) and Sage rows (written as a broken
    Visual Integrator import would), generated by hypothesis, `examples` of each, while orders flow."""

    def disrupt(supervisor: Supervisor, winning: threading.Event) -> None:
        from sandbox.sage100 import open_database
        from sandbox.sage100.simulator import SageSimulator

        inject_event = _event_injector(url, examples)
        console.print(f"   fuzzing: {examples} malformed change events")
        inject_event()
        simulator = SageSimulator(open_database(pipeline.sage_database_path()))
        try:
            console.print(f"   fuzzing: {examples} malformed Sage rows")
            _row_injector(simulator, examples)()
        finally:
            simulator.close()

    return disrupt


def _event_injector(url: str, examples: int) -> Callable[[], None]:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=40),
    )
    anything = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
        max_leaves=12,
    )
    ids = st.one_of(st.from_regex(r"001[A-Za-z0-9]{15}", fullmatch=True), st.text(max_size=20), st.integers())
    header = st.fixed_dictionaries(
        {},
        optional={
            "entityName": st.sampled_from(["Account", "Opportunity", "OpportunityLineItem", "Nope"])
            | anything,
            "recordIds": st.lists(ids, max_size=3) | anything,
            "changeType": st.sampled_from(
                ["CREATE", "UPDATE", "DELETE", "UNDELETE", "GAP_UPDATE", "GAP_OVERFLOW", "X"]
            )
            | anything,
            "changeOrigin": st.text(max_size=60) | anything,
            "transactionKey": st.text(max_size=20) | anything,
            "sequenceNumber": st.integers() | anything,
            "commitTimestamp": st.integers(min_value=-(2**63), max_value=2**63) | anything,
            "commitUser": st.text(max_size=20) | anything,
            "changedFields": st.lists(st.text(max_size=20), max_size=3) | anything,
        },
    )
    payload = st.fixed_dictionaries(
        {"ChangeEventHeader": header | anything}, optional={"Name": anything, "StageName": anything}
    )
    data = st.one_of(
        st.fixed_dictionaries({"schema": st.text(max_size=10), "payload": payload | anything}),
        st.dictionaries(st.text(max_size=8), anything, max_size=3),
    )
    channels = st.sampled_from(
        ["/data/AccountChangeEvent", "/data/OpportunityChangeEvent", "/event/Credit_Check_Request__e"]
    )

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(channel=channels, body=data)
    def inject(channel: str, body: dict[str, Any]) -> None:
        requests.post(f"{url}/admin/streaming/inject", json={"channel": channel, "data": body}, timeout=10)

    return inject


def _row_injector(simulator: Any, examples: int) -> Callable[[], None]:
    """Rows as a broken import writes them: a real row of the table (so Sage's NOT NULL columns are
    filled and the row is stamped now, where the poll reads it) with one to three columns replaced
    by junk, the key and the stamp included sometimes."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from connectors.sage100.values import format_hours

    tables = ("CI_Item", "AR_Customer")
    names = {t: [c.name for c in simulator.tables[t].columns] for t in tables}
    templates = {}
    for t in tables:
        sql = f"SELECT {', '.join(names[t])} FROM {t}"  # noqa: S608 - the layout's own names
        templates[t] = dict(zip(names[t], simulator.odbc.fetchone(sql, []), strict=True))
    serial = iter(range(10**9))
    text = st.text(max_size=40)
    junk = st.one_of(
        text,
        st.none(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(["25.0000", "abc", "9" * 40, "n/a", "9999-12-31", " 9.5012", "-1"]),
    )
    changes = st.sampled_from(tables).flatmap(
        lambda table: st.tuples(
            st.just(table), st.dictionaries(st.sampled_from(names[table]), junk, min_size=1, max_size=3)
        )
    )

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(change=changes)
    def inject(change: tuple[str, dict[str, Any]]) -> None:
        table, junk_columns = change
        now = datetime.now(ZoneInfo("America/New_York"))
        row = dict(templates[table])
        key = f"FZ{next(serial):07d}"
        row.update({"ItemCode": key} if table == "CI_Item" else {"CustomerNo": key})
        row.update(DateUpdated=now.date(), TimeUpdated=format_hours(now.time()), UserUpdatedKey="0000000002")
        row.update(junk_columns)
        with contextlib.suppress(
            Exception
        ):  # a row SQLite itself refuses (NOT NULL, a duplicate key) is no test
            simulator.import_raw(table, row)

    return inject


# --- one scenario --------------------------------------------------------------------------------


@dataclass
class World:
    url: str
    kafka: str
    accounts: list[tuple[str, str]]
    entries: dict[str, tuple[str, float]]
    rng: random.Random


def dead_letters(kafka: str) -> dict[str, int]:
    """How many records each source's dead-letter topic holds now."""
    from sagesf.config import KafkaSettings
    from sagesf.topic_names import dead_letter_topic
    from sagesf.topic_scan import TopicReader

    with TopicReader(KafkaSettings(bootstrap_servers=kafka)) as reader:
        return {
            stage: sum(r.size for r in reader.ranges(dead_letter_topic(stage)))
            for stage in ("salesforce-source", "sage-source")
        }


def run_scenario(
    name: str, world: World, orders: int, rate: float, disrupt: Disruption, settle: float
) -> Row:
    row = Row(name)
    started = time.monotonic()
    letters_before = dead_letters(world.kafka)
    sf = sales_rep(world.url)
    offered = prepare(sf, orders, world.accounts, world.entries, 0.1, 2, world.rng)
    console.print(f"[bold]{name}[/bold]: {orders} orders at {rate:.0f}/s")
    with Supervisor() as supervisor:
        winning = threading.Event()
        winning.set()
        failures: list[BaseException] = []

        def fail_safe(work: Callable[[], None]) -> Callable[[], None]:
            def run() -> None:
                try:
                    work()
                except BaseException as exc:  # noqa: BLE001 - reported in the table
                    failures.append(exc)

            return run

        win = threading.Thread(target=fail_safe(_winning(world.url, offered, rate, winning)), daemon=True)
        chaos = threading.Thread(target=fail_safe(lambda: disrupt(supervisor, winning)), daemon=True)
        win.start()
        chaos.start()
        win.join()
        winning.clear()
        chaos.join()
        row.failures += [f"{type(f).__name__}: {f}"[:120] for f in failures]
        _count(row, world.url, offered, settle)
        row.crashes = supervisor.crashes
    letters = {k: v - letters_before.get(k, 0) for k, v in dead_letters(world.kafka).items()}
    if any(letters.values()):
        row.notes.append("new dead letters: " + ", ".join(f"{k} {v}" for k, v in letters.items()))
    row.seconds = time.monotonic() - started
    return row


def _winning(url: str, orders: list[Order], rate: float, winning: threading.Event) -> Callable[[], None]:
    run = win_steady(url, orders, rate, senders=2)

    def keep_trying() -> None:
        # a sales rep whose click fails (the emulator is down) clicks again later
        deadline = time.monotonic() + 600
        while True:
            try:
                run()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)

    return keep_trying


def _count(row: Row, url: str, offered: list[Order], settle: float) -> None:
    ids = [o.opportunity_id for o in offered]
    row.offered = len(ids)
    deadline = time.monotonic() + settle
    numbers: dict[str, str | None] = {}
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            numbers = order_numbers(sales_rep(url), ids)
            if all(numbers.get(i) for i in ids):
                break
        time.sleep(2)
    database = SageDatabase(pipeline.sage_database_path())
    try:
        in_sage = {i: database.orders_for(i) for i in ids}
    finally:
        database.close()
    row.in_sage = sum(1 for orders in in_sage.values() if orders)
    row.duplicates = sum(max(0, len(orders) - 1) for orders in in_sage.values())
    row.lost = sum(1 for orders in in_sage.values() if not orders)
    row.missing = sum(1 for i, orders in in_sage.items() if orders and not numbers.get(i))


# --- the run -------------------------------------------------------------------------------------


def scenarios(world: World, args: argparse.Namespace) -> dict[str, Callable[[], Row]]:
    n, rate, settle = args.orders, args.rate, args.settle
    return {
        "kill-9": lambda: run_scenario(
            "kill -9 every few s",
            world,
            args.kill_orders,
            rate,
            kill_random_processes(args.kill_every),
            settle,
        ),
        "broker": lambda: run_scenario(
            "broker restart", world, n, rate, restart_broker(n / rate / 3), settle
        ),
        "sage-locked": lambda: run_scenario("Sage locked 60 s", world, n, rate / 2, lock_sage(60, 3), settle),
        "storm": lambda: run_scenario(
            "Salesforce 403 for 30 s", world, n, rate / 2, storm(world.url, 30, 3), settle
        ),
        "emulator-down": lambda: run_scenario(
            "emulator down 60 s", world, n, rate / 2, emulator_down(60, 3), settle
        ),
        "fuzz": lambda: run_scenario(
            f"fuzz: {args.fuzz} events, {args.fuzz} rows",
            world,
            n,
            rate / 2,
            fuzz(world.url, args.fuzz),
            settle,
        ),
    }


def report(rows: list[Row]) -> None:
    table = Table(title="chaos: orders through failures")
    for column in (
        "scenario",
        "offered",
        "in Sage",
        "duplicates",
        "lost",
        "write-backs missing",
        "crashes",
        "s",
    ):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for row in rows:
        style = None if row.ok else "red"
        table.add_row(
            row.scenario,
            str(row.offered),
            str(row.in_sage),
            str(row.duplicates),
            str(row.lost),
            str(row.missing),
            str(row.crashes),
            f"{row.seconds:.0f}",
            style=style,
        )
    console.print(table)
    for row in rows:
        for failure in row.failures:
            console.print(f"[red]{row.scenario}: the run failed, so this row proves nothing: {failure}[/red]")
        for note in row.notes:
            console.print(f"{row.scenario}: {note}")


@contextlib.contextmanager
def chaos_sandbox() -> Iterator[stack.Sandbox]:
    os.environ.setdefault("SAGESF_SANDBOX_DIR", tempfile.mkdtemp(prefix="sagesf-chaos-"))
    os.environ.pop("SAGESF_ENV_FILE", None)
    os.environ.update(ENV)
    sandbox = stack.up(console.print)
    try:
        yield sandbox
    finally:
        with contextlib.ExitStack() as stops:
            for service in stack.services():
                stops.callback(service.stop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--only", action="append", help="run only these scenarios (repeatable)")
    parser.add_argument("--orders", type=int, default=60, help="orders per scenario (kill -9: --kill-orders)")
    parser.add_argument("--kill-orders", type=int, default=200)
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between two kills")
    parser.add_argument("--rate", type=float, default=4.0, help="orders won per second")
    parser.add_argument("--settle", type=float, default=420.0, help="seconds to wait for every order number")
    parser.add_argument(
        "--fuzz", type=int, default=300, help="malformed events and rows each, in the fuzz run"
    )
    args = parser.parse_args(argv)
    with chaos_sandbox() as sandbox:
        url = sandbox.addresses["salesforce"]
        sf = sales_rep(url)
        seed(sf)
        database = SageDatabase(pipeline.sage_database_path())
        try:
            accounts = sage_customer_accounts(sf, database, 20)
        finally:
            database.close()
        world = World(url, sandbox.addresses["kafka"], accounts, price_book(sf), random.Random(11))
        chosen = scenarios(world, args)
        unknown = set(args.only or []) - set(chosen)
        if unknown:
            parser.error(f"unknown scenarios {sorted(unknown)} (known: {', '.join(chosen)})")
        rows = [run() for name, run in chosen.items() if not args.only or name in args.only]
    report(rows)
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
