"""Console users: a JSON file of names, argon2 password hashes (argon2-cffi) and roles.

Roles: `viewer` reads every page; `mapper` also edits, saves and rolls back mappings; `operator`
also replays dead letters and decides links. Every user can view. The file is rewritten whole
(to a temporary file, then renamed), readable by its owner only.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypedDict, get_args

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["MAPPER", "OPERATOR", "ROLES", "VIEWER", "Role", "User", "UserFile"]

Role = Literal["viewer", "mapper", "operator"]
ROLES: tuple[Role, ...] = get_args(Role)
VIEWER: Role = "viewer"
MAPPER: Role = "mapper"
OPERATOR: Role = "operator"

_hasher = PasswordHasher()
# verified against when the name is unknown, so a wrong name takes as long as a wrong password
_DUMMY_HASH = _hasher.hash("no such user")


class _Entry(TypedDict):
    hash: str
    roles: list[Role]


@dataclass(frozen=True)
class User:
    name: str
    roles: frozenset[Role]

    def can(self, role: Role) -> bool:
        """Whether this user acts as `role` (everyone is a viewer)."""
        return role == VIEWER or role in self.roles

    @property
    def role_names(self) -> str:
        return ", ".join(sorted(self.roles)) or VIEWER


class UserFile:
    """The users of one file; read again on every look-up, so a change applies at once."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self, name: str) -> User | None:
        entry = self._read().get(name)
        return None if entry is None else User(name, frozenset(entry["roles"]))

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when `password` is theirs; None otherwise (unknown name or wrong password)."""
        entry = self._read().get(name)
        try:
            _hasher.verify(entry["hash"] if entry else _DUMMY_HASH, password)
        except (VerificationError, InvalidHashError):
            return None
        return None if entry is None else User(name, frozenset(entry["roles"]))

    def add(self, name: str, password: str, roles: Iterable[Role]) -> User:
        """Add or replace the user `name`."""
        if not name or not name.isprintable() or name != name.strip():
            raise ValueError(f"a user name must be printable, without spaces at its ends: {name!r}")
        if not password:
            raise ValueError("the password is empty")
        wanted = sorted(set(roles))
        unknown = [role for role in wanted if role not in ROLES]
        if unknown:
            raise ValueError(f"unknown role(s) {unknown} (known: {', '.join(ROLES)})")
        users = self._read()
        users[name] = {"hash": _hasher.hash(password), "roles": wanted}
        self._write(users)
        return User(name, frozenset(wanted))

    def _read(self) -> dict[str, _Entry]:
        if not self.path.exists():
            return {}
        users: dict[str, _Entry] = json.loads(self.path.read_text()).get("users", {})
        return users

    def _write(self, users: dict[str, _Entry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
        with os.fdopen(fd, "w") as out:  # mkstemp made it 0600
            json.dump({"users": users}, out, indent=2, sort_keys=True)
        os.replace(tmp, self.path)
