"""The deterministic ID of a command: one UUIDv5 namespace for every writer of commands (the
processors, the linker), so a command about the same thing gets the same ID whoever builds it and
a redelivered, replayed or repeated one is recognisably the same command downstream."""

from __future__ import annotations

import uuid

__all__ = ["NAMESPACE", "command_id"]

# Fixed namespace of every command ID (uuid5): changing it changes every ID ever derived.
NAMESPACE = uuid.UUID("6f1c3f4e-1f5d-5b8e-9a54-5a6765736600")


def command_id(kind: str, *parts: str) -> str:
    """The ID of a command of `kind` about `parts` (UUIDv5 in NAMESPACE)."""
    return str(uuid.uuid5(NAMESPACE, "\x1f".join((kind, *parts))))
