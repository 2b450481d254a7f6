"""One way to start any sagesf process: `sagesf run <component>`.

Components declare themselves as `Component` objects in the `sagesf.components` entry-point group
(pyproject.toml), so the core starts connectors and processors without importing them by name.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar

from confluent_kafka.schema_registry import SchemaRegistryClient
from pydantic_settings import BaseSettings

from sagesf.config import Settings, load_settings
from sagesf.errors import Retriable, StartupError
from sagesf.load import InitialLoad, LoadRequest
from sagesf.logs import configure_logging, register_settings_secrets
from sagesf.metrics import Health, MetricsServer
from sagesf.preflight import Check
from sagesf.producer import ConfirmedProducer, Headers
from sagesf.publisher import CanonicalPublisher
from sagesf.reconcile import DriftJudge, SnapshotReader
from sagesf.retry import RetryPolicy
from sagesf.source import Replayer
from sagesf.system_metadata import MetadataRequest, PulledMetadata

__all__ = [
    "ENTRY_POINTS",
    "SCHEMA_REGISTRY",
    "Component",
    "Concurrently",
    "OnceRunnable",
    "Process",
    "Runnable",
    "Stopped",
    "assembled",
    "component",
    "components",
    "run",
]

log = logging.getLogger(__name__)

ENTRY_POINTS = "sagesf.components"
EXIT_STARTUP = 2  # the process cannot start as configured (sagesf.errors.StartupError)
SCHEMA_REGISTRY = "schema-registry"  # the registry's name on /healthz
# how a process waiting at start-up retries a dependency that is down: soon at first, then every
# 10 s at most, so it notices within seconds that the dependency is back
STARTUP_RETRY = RetryPolicy(initial=0.5, maximum=10.0)
S = TypeVar("S", bound=BaseSettings)
T = TypeVar("T")


class Stopped(Exception):
    """The process was told to stop while it waited for a dependency at start-up."""


class Runnable(Protocol):
    """What a component builds: it works until `stop` is set."""

    def run(self, stop: threading.Event) -> None: ...


class OnceRunnable(Runnable, Protocol):
    """A runnable that can also do what is waiting once and return (`--once`)."""

    def run_once(self) -> Any: ...


@dataclass(frozen=True)
class Component:
    """A process sagesf can run.

    `build(process)` assembles its parts from `process.settings(...)` and `process.health`,
    registers each part that needs closing with `process.closing(...)` as soon as it exists, and
    returns what to run. It raises a `StartupError` for anything the user must fix. `settings`
    lists the settings classes it reads beyond the shared `Settings`: the runner loads and checks
    them (and registers their secrets) before anything starts, and `--help` lists their prefixes.
    A source may give `replay(process)`: the `Replayer` that `sagesf dlq replay <name>` uses for
    its dead letters whose origin is no Kafka topic (a Sage row, a Salesforce event);
    `load(process, request)`: the `InitialLoad` that `sagesf load <system>` runs, publishing what
    the system already holds and handing over to this source (sagesf.load); and
    `snapshot(process)`: the `SnapshotReader` that reconciliation reads its system with. The
    processors give `judge(process)`: the `DriftJudge` that compares the two systems' snapshots
    through the mappings (sagesf.reconcile). A component may give `preflight(process)`: the checks
    (sagesf.preflight `Check`) of what it needs in the system it talks to, which
    `sagesf preflight <system>` runs without starting it; and `metadata(process, request)`: its
    system's metadata as the component reads it (sagesf.system_metadata `PulledMetadata`), which
    `sagesf mappings pull` writes into the files the mapping checks read.
    """

    name: str
    summary: str
    build: Callable[[Process], Runnable]
    settings: tuple[type[BaseSettings], ...] = ()
    once: bool = False  # whether `--once` is supported (the runnable has `run_once`)
    replay: Callable[[Process], Replayer] | None = None
    preflight: Callable[[Process], Sequence[Check]] | None = None
    load: Callable[[Process, LoadRequest], InitialLoad] | None = None
    snapshot: Callable[[Process], SnapshotReader] | None = None
    judge: Callable[[Process], DriftJudge] | None = None
    metadata: Callable[[Process, MetadataRequest], PulledMetadata] | None = None


@dataclass
class Process:
    """What a component's `build` gets: its loaded settings, the health it reports to, its parts,
    and the stop signal (set by SIGTERM) that also ends a wait for a dependency at start-up."""

    name: str
    core: Settings
    health: Health
    loaded: dict[type[BaseSettings], BaseSettings]
    _closers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def settings(self, cls: type[S]) -> S:
        found = self.loaded.get(cls)
        if not isinstance(found, cls):
            raise KeyError(f"{cls.__name__} is not among the settings of component {self.name}")
        return found

    def wait_for(self, dependency: str, attempt: Callable[[], T]) -> T:
        """`attempt()`'s result once `dependency` answers; meanwhile the process waits and says so.

        A process starts while a dependency is down, so that it serves /healthz and a supervisor
        does not crash-loop it: a `Retriable` failure means "down", so /healthz names the
        dependency "degraded" with a short reason, the first failure is logged (the next ones at
        debug level) and the attempt is repeated with backoff (`STARTUP_RETRY`) until it succeeds.
        Anything else is raised at once: a `StartupError` (credentials refused, a schema not
        registered) still stops the process with exit 2, since "down" is not "refused".
        Raises `Stopped` when the process is told to stop meanwhile.
        """
        failures = 0
        while True:
            try:
                result = attempt()
            except Retriable as exc:
                wait = max(STARTUP_RETRY.delay(failures), exc.retry_after)
                failures += 1
                self.health.dependency(dependency, False, str(exc))
                level = logging.WARNING if failures == 1 else logging.DEBUG
                log.log(
                    level, "%s: waiting for %s (next try in %.1f s): %s", self.name, dependency, wait, exc
                )
                if self.stop.wait(wait):
                    raise Stopped(f"stopped while waiting for {dependency}") from None
                continue
            if failures:
                log.info("%s: %s answers after %d failed tries", self.name, dependency, failures)
            self.health.dependency(dependency, True)
            return result

    def closing(self, close: Callable[[], None], what: str = "") -> None:
        """Close `close` when the process ends: parts close in the reverse order of registration,
        so what was made last (the loop using the others) closes first."""
        self._closers.append((what or getattr(close, "__qualname__", repr(close)), close))

    @classmethod
    def of(cls, name: str, core: Settings, *settings: BaseSettings, health: Health | None = None) -> Process:
        """A process built from settings already in hand (tests, and programs that embed a component)."""
        loaded: dict[type[BaseSettings], BaseSettings] = {Settings: core}
        loaded.update({type(each): each for each in settings})
        return cls(name, core, health or Health(), loaded)

    @cached_property
    def registry(self) -> SchemaRegistryClient:
        return SchemaRegistryClient(self.core.registry.client_config())

    def producer(self) -> ConfirmedProducer:
        """A confirmed producer of this process, flushed when the process ends."""
        producer = ConfirmedProducer(self.core.kafka)
        self.closing(producer.close, "the Kafka producer")
        return producer

    def publisher(
        self,
        stage: str,
        *,
        producer: ConfirmedProducer | None = None,
        topics: Mapping[str, str] | None = None,
        dead_letter_topic: str | None = None,
        headers: Headers = (),
        timeout: float = 60.0,
        schemas: Iterable[tuple[str, str]] = (),
    ) -> CanonicalPublisher:
        """The canonical publisher of a stage (its own producer unless one is given).

        `schemas`, the (topic, schema) pairs it will publish, are looked up in the registry now,
        waiting while the registry is down (`wait_for`): a schema that is not registered stops the
        process at start-up, and a registry that is down is on /healthz from the start.
        """
        publisher = CanonicalPublisher(
            producer or self.producer(),
            self.registry,
            stage=stage,
            auto_register=self.core.registry.auto_register,
            topics=topics,
            dead_letter_topic=dead_letter_topic,
            headers=headers,
            timeout=timeout,
        )
        pairs = list(schemas)
        if pairs:
            self.wait_for(SCHEMA_REGISTRY, lambda: publisher.prepare(pairs))
        return publisher

    def close(self) -> None:
        """Close every registered part; one that fails is logged and the rest still close."""
        while self._closers:
            what, close = self._closers.pop()
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - closing the rest matters more
                log.warning("closing %s failed: %s", what, exc)


class Concurrently:
    """Runs several runnables, each on its own thread; when one stops (or fails), all stop.

    A failure is raised again once every thread has ended, so the process exits and its
    supervisor restarts it (uncommitted work is redelivered)."""

    def __init__(self, runnables: Mapping[str, Runnable]) -> None:
        self.runnables = dict(runnables)
        self._failures: list[BaseException] = []

    def run(self, stop: threading.Event) -> None:
        threads = [
            threading.Thread(target=self._run, args=(runnable, stop), name=name)
            for name, runnable in self.runnables.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if self._failures:
            raise self._failures[0]

    def _run(self, runnable: Runnable, stop: threading.Event) -> None:
        try:
            runnable.run(stop)
        except BaseException as exc:  # noqa: BLE001 - raised again on the runner's thread
            log.error("%s stopped: %s", threading.current_thread().name, exc)
            self._failures.append(exc)
        finally:
            if not stop.is_set():
                log.error("%s stopped; stopping the process", threading.current_thread().name)
            stop.set()


def components() -> dict[str, Component]:
    """Every installed component by name (the `sagesf.components` entry points)."""
    return {point.name: _load(point.name, point.load()) for point in sorted(_points(), key=lambda p: p.name)}


def component(name: str) -> Component:
    """The installed component `name` (only its own module is imported)."""
    for point in _points():
        if point.name == name:
            return _load(name, point.load())
    raise KeyError(f"no component {name!r} is installed (known: {', '.join(p.name for p in _points())})")


def _points() -> list[Any]:
    return list(entry_points(group=ENTRY_POINTS))


def _load(name: str, loaded: object) -> Component:
    if not isinstance(loaded, Component) or loaded.name != name:
        raise TypeError(f"entry point {name} in {ENTRY_POINTS} is not the Component {name!r}")
    return loaded


def _settings(component: Component) -> tuple[Settings, dict[type[BaseSettings], BaseSettings]]:
    """Every settings class of `component` loaded through one loader, its secrets registered."""
    core = load_settings(Settings)
    loaded: dict[type[BaseSettings], BaseSettings] = {Settings: core}
    for cls in component.settings:
        loaded[cls] = load_settings(cls)
    for settings in loaded.values():
        register_settings_secrets(settings)
    return core, loaded


@contextmanager
def assembled(component: Component) -> Iterator[Process]:
    """A `Process` of `component` for a tool that uses its parts without running it (`sagesf dlq
    replay` builds its `replay`): settings loaded and secrets registered as `run` does, its parts
    closed when the block ends. A wrong setting raises a StartupError naming the variable."""
    core, loaded = _settings(component)
    process = Process(component.name, core, Health(), loaded)
    try:
        yield process
    finally:
        process.close()


def run(component: Component, *, log_level: str = "INFO", once: bool = False) -> int:
    """Run a component as this process; returns the exit code.

    The order:
    1. logging first, so everything after it is logged with secrets masked;
    2. every settings class loaded through one loader and its secrets registered: a wrong value
       is a StartupError naming the variable;
    3. /metrics and /healthz served (SAGESF_METRICS__HOST/PORT), so a component whose dependency
       is down can still say so;
    4. SIGTERM and SIGINT set the stop signal;
    5. the component built and run until stopped (or once); a build waits for a dependency that
       is down (`Process.wait_for`) and reports it degraded meanwhile, and a stop signal during
       that wait ends the process normally;
    6. its parts closed, last made first; the metrics server last.
    A StartupError at any step prints one line (`<component>: <problem>`) and exits 2.
    """
    # 1.
    configure_logging(log_level, component=component.name)
    metrics: MetricsServer | None = None
    process: Process | None = None
    try:
        # 2.
        core, loaded = _settings(component)
        # 3.
        health = Health()
        metrics = MetricsServer(
            health, core.metrics.host, core.metrics.port, idle_timeout=core.metrics.idle_timeout
        )
        # 4.
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        # 5.
        log.info("%s starting (metrics and health on port %d)", component.name, metrics.port)
        process = Process(component.name, core, health, loaded, stop=stop)
        runnable = component.build(process)
        log.info("%s running", component.name)
        if once:
            runnable.run_once()  # type: ignore[attr-defined]
        else:
            runnable.run(stop)
    except StartupError as exc:
        print(f"{component.name}: {exc.line()}", file=sys.stderr)
        return EXIT_STARTUP
    except Stopped as exc:
        log.info("%s: %s", component.name, exc)
    finally:
        # 6.
        if process is not None:
            process.close()
        if metrics is not None:
            metrics.stop()
    return 0
