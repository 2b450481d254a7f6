"""`Service`: one sandbox service as `sandbox.stack` starts, stops and lists it.

Each service's own package makes its record (`kafka_service()` in sandbox/kafka,
`registry_service()` in sandbox/registry, ...); the stack imports them all, and none imports the
stack.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Service:
    """Start (returns its address), stop (True when stopped) and its address (None: not running)."""

    name: str
    start: Callable[[], str]
    stop: Callable[[], bool]
    address: Callable[[], str | None]
    pipeline: bool = False  # a connector or the processors: started after topics are provisioned
