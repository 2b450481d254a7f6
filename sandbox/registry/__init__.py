"""The sandbox's schema registry as a background process: start, find, stop.

`RegistryProcess` runs `python -m sandbox.registry` (see server.py for what it serves and its
limits) detached, remembers it in `<data_dir>/registry.json`, and waits until it answers HTTP.
The server opens its port only after it has read its Kafka topic, so "answers" means "ready".
`registry_service()` is the sandbox stack's entry: state in `.sandbox/registry/`, port 8081 when
free, Kafka from the sandbox broker.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

from sandbox.paths import REPO_ROOT, state_dir
from sandbox.processes import ProcessState, free_port, port_open, spawn, stop_pid, wait_until
from sandbox.registry.server import DEFAULT_TOPIC
from sandbox.stack import Service, kafka_service

DEFAULT_REGISTRY_PORT = 8081

__all__ = ["DEFAULT_REGISTRY_PORT", "RegistryProcess", "registry_process", "registry_service"]


class RegistryProcess:
    """One registry server for one schemas topic; its state file lets another process stop it."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        topic: str = DEFAULT_TOPIC,
        host: str = "127.0.0.1",
    ) -> None:
        self.data_dir = data_dir
        self.topic = topic
        self.host = host
        self._port = port
        self.state_file = data_dir / "registry.json"

    @property
    def state(self) -> ProcessState | None:
        return ProcessState.load(self.state_file)

    @property
    def url(self) -> str:
        state = self.state
        if state is None:
            raise RuntimeError("the sandbox schema registry is not started")
        return f"http://{self.host}:{state.ports['http']}"

    def running(self) -> bool:
        state = self.state
        return state is not None and state.alive and port_open(state.ports["http"], self.host)

    def address(self) -> str | None:
        return self.url if self.running() else None

    def _choose_port(self) -> int:
        """The asked port, else the previous one if free (clients remember it), else a free one."""
        if self._port is not None:
            return self._port
        previous = self.state
        if previous is not None and not port_open(previous.ports["http"], self.host):
            return previous.ports["http"]
        return free_port()

    def start(self, bootstrap: str, timeout: float = 30.0) -> str:
        """Start (or find running) against Kafka at `bootstrap`; returns the registry URL."""
        if self.running():
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self._choose_port()
        log_path = self.data_dir / "registry.log"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = spawn(
            [
                sys.executable,
                "-m",
                "sandbox.registry",
                "--bootstrap",
                bootstrap,
                "--port",
                str(port),
                "--host",
                self.host,
                "--topic",
                self.topic,
            ],
            log_path,
            env=env,
            cwd=REPO_ROOT,
        )
        ProcessState(
            name="registry",
            pid=proc.pid,
            log=str(log_path),
            ports={"http": port},
            extra={"topic": self.topic, "bootstrap": bootstrap},
        ).save(self.state_file)
        url = f"http://{self.host}:{port}"
        try:
            wait_until(
                lambda: _answers(url),
                timeout,
                f"schema registry on {url} (log: {log_path})",
                alive=lambda: proc.poll() is None,
            )
        except Exception:
            stop_pid(proc.pid)
            self.state_file.unlink(missing_ok=True)
            raise
        return url

    def stop(self, timeout: float = 10.0) -> bool:
        state = self.state
        if state is None:
            return True
        stopped = stop_pid(state.pid, timeout)
        if stopped:
            self.state_file.unlink(missing_ok=True)
        return stopped


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/config", timeout=1) as response:  # noqa: S310 - our own http URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def registry_process() -> RegistryProcess:
    """The sandbox's registry: `.sandbox/registry/`, port 8081 unless something else holds it."""
    process = RegistryProcess(state_dir() / "registry")
    if process.running():
        return process
    port = None if port_open(DEFAULT_REGISTRY_PORT) else DEFAULT_REGISTRY_PORT
    return RegistryProcess(state_dir() / "registry", port=port)


def _start() -> str:
    bootstrap = kafka_service().address()
    if bootstrap is None:
        raise RuntimeError(
            "the schema registry needs the sandbox Kafka broker: run `sagesf sandbox kafka start`"
        )
    return registry_process().start(bootstrap)


def _stop() -> bool:
    return registry_process().stop()


def _address() -> str | None:
    return registry_process().address()


def registry_service() -> Service:
    """The registry as a `sandbox.stack.Service` (started after Kafka, stopped before it)."""
    return Service("registry", _start, _stop, _address)
