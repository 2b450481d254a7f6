"""The sandbox's services in start order, and the env file that points clients at them.

Each service starts idempotently (a running one is found, not started twice) and remembers itself
in `.sandbox/<name>/`, so `sagesf sandbox down` in another shell stops what `up` started.
`.sandbox/sagesf.env` holds the `SAGESF_*` settings for the running sandbox; `export
SAGESF_ENV_FILE=.sandbox/sagesf.env` makes every `sagesf` command use it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox.kafka import KafkaBroker
from sandbox.paths import state_dir
from sandbox.processes import port_open

DEFAULT_KAFKA_PORT = 9092


@dataclass
class Service:
    name: str
    start: Callable[[], str]
    stop: Callable[[], bool]
    address: Callable[[], str | None]


def kafka_broker() -> KafkaBroker:
    data = state_dir() / "kafka"
    port = None if port_open(DEFAULT_KAFKA_PORT) else DEFAULT_KAFKA_PORT
    return KafkaBroker(data, port=port)


def _kafka_address() -> str | None:
    broker = kafka_broker()
    return broker.bootstrap if broker.running() else None


def kafka_service() -> Service:
    broker = kafka_broker()
    return Service("kafka", broker.start, broker.stop, _kafka_address)


def services() -> list[Service]:
    """Every sandbox service, in start order (stop runs in reverse)."""
    found = [kafka_service()]
    try:
        from sandbox.registry import registry_service
    except ImportError:
        pass
    else:
        found.append(registry_service())
    return found


def env_file() -> Path:
    return state_dir() / "sagesf.env"


def write_env_file(values: dict[str, str]) -> Path:
    path = env_file()
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
    return path
