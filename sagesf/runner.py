"""One way to start any sagesf process: `sagesf run <component>`.

Components declare themselves as `Component` objects in the `sagesf.components` entry-point group
(pyproject.toml), so the core starts connectors and processors without importing them by name.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from importlib.metadata import entry_points
from typing import Any, Protocol, TypeVar

from confluent_kafka.schema_registry import SchemaRegistryClient
from pydantic_settings import BaseSettings

from sagesf.config import Settings, load_settings
from sagesf.errors import StartupError
from sagesf.logs import configure_logging, register_settings_secrets
from sagesf.metrics import Health, MetricsServer
from sagesf.producer import ConfirmedProducer, Headers
from sagesf.publisher import CanonicalPublisher
from sagesf.source import Replayer

__all__ = [
    "ENTRY_POINTS",
    "Component",
    "Concurrently",
    "OnceRunnable",
    "Process",
    "Runnable",
    "assembled",
    "component",
    "components",
    "run",
]

log = logging.getLogger(__name__)

ENTRY_POINTS = "sagesf.components"
EXIT_STARTUP = 2  # the process cannot start as configured (sagesf.errors.StartupError)
S = TypeVar("S", bound=BaseSettings)


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
    its dead letters whose origin is no Kafka topic (a Sage row, a Salesforce event).
    """

    name: str
    summary: str
    build: Callable[[Process], Runnable]
    settings: tuple[type[BaseSettings], ...] = ()
    once: bool = False  # whether `--once` is supported (the runnable has `run_once`)
    replay: Callable[[Process], Replayer] | None = None


@dataclass
class Process:
    """What a component's `build` gets: its loaded settings, the health it reports to, its parts."""

    name: str
    core: Settings
    health: Health
    loaded: dict[type[BaseSettings], BaseSettings]
    _closers: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def settings(self, cls: type[S]) -> S:
        found = self.loaded.get(cls)
        if not isinstance(found, cls):
            raise KeyError(f"{cls.__name__} is not among the settings of component {self.name}")
        return found

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
    ) -> CanonicalPublisher:
        """The canonical publisher of a stage (its own producer unless one is given)."""
        return CanonicalPublisher(
            producer or self.producer(),
            self.registry,
            stage=stage,
            auto_register=self.core.registry.auto_register,
            topics=topics,
            dead_letter_topic=dead_letter_topic,
            headers=headers,
            timeout=timeout,
        )

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
    5. the component built and run until stopped (or once);
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
        metrics = MetricsServer(health, core.metrics.host, core.metrics.port)
        # 4.
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        # 5.
        process = Process(component.name, core, health, loaded)
        runnable = component.build(process)
        log.info("%s running (metrics and health on port %d)", component.name, metrics.port)
        if once:
            runnable.run_once()  # type: ignore[attr-defined]
        else:
            runnable.run(stop)
    except StartupError as exc:
        print(f"{component.name}: {exc.line()}", file=sys.stderr)
        return EXIT_STARTUP
    finally:
        # 6.
        if process is not None:
            process.close()
        if metrics is not None:
            metrics.stop()
    return 0
