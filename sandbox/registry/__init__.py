"""The sandbox's schema registry as a background process: start, find, stop.

`RegistryProcess` runs `python -m sandbox.registry` (see server.py for what it serves and its
limits) detached, remembers it in `<data_dir>/registry.json`, and waits until it answers HTTP.
The server opens its port only after it has read its Kafka topic, so "answers" means "ready".
`registry_service()` is the sandbox stack's entry: state in `.sandbox/registry/`, port 8081 when
free, Kafka from the sandbox broker.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sandbox.kafka import kafka_service
from sandbox.paths import REPO_ROOT, state_dir
from sandbox.processes import HttpProcess, port_open
from sandbox.registry.server import DEFAULT_TOPIC
from sandbox.service import Service

DEFAULT_REGISTRY_PORT = 8081

__all__ = ["DEFAULT_REGISTRY_PORT", "RegistryProcess", "registry_process", "registry_service"]


class RegistryProcess(HttpProcess):
    """One registry server for one schemas topic; its state file lets another process stop it."""

    name = "registry"
    health_path = "/config"

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        topic: str = DEFAULT_TOPIC,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(data_dir, port, host)
        self.topic = topic

    def start(self, bootstrap: str, timeout: float = 30.0) -> str:
        """Start (or find running) against Kafka at `bootstrap`; returns the registry URL."""
        return self._launch(
            lambda port: [
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
            timeout,
            extra={"topic": self.topic, "bootstrap": bootstrap},
            cwd=REPO_ROOT,
        )


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
    """The registry as a `sandbox.service.Service` (started after Kafka, stopped before it)."""
    return Service("registry", _start, _stop, _address)
