"""The web console in the sandbox: its settings, and demo users.

`console_env` gives the console process its SAGESF_CONSOLE__* settings: a session secret made
once and kept in `.sandbox/console/session-secret`, the users file and audit log beside it, the
port (8600 when free), and the /metrics URLs of the pipeline's processes for the Processes page.
The first time, it creates one demo user per role (`viewer`, `mapper`, `operator`) and `admin`
with every role, with random passwords written to `.sandbox/console/passwords.txt` (readable by
its owner only) and never printed or logged.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

from console.users import ROLES, Role, UserFile
from sandbox.paths import REPO_ROOT, mappings_dir, mappings_reload_interval, state_dir
from sandbox.processes import free_port, port_open

__all__ = ["console_env", "console_url", "passwords_file"]

PREFERRED_PORT = 8600
DEMO_USERS: dict[str, tuple[Role, ...]] = {**{role: (role,) for role in ROLES}, "admin": ROLES}


def _folder() -> Path:
    folder = state_dir() / "console"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def passwords_file() -> Path:
    return _folder() / "passwords.txt"


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def _session_secret() -> str:
    path = _folder() / "session-secret"
    if not path.exists():
        _private(path, secrets.token_urlsafe(48))
    return path.read_text().strip()


def _demo_users(users: UserFile) -> None:
    """The demo users, once: their passwords go to passwords.txt only."""
    if passwords_file().exists() and users.path.exists():
        return
    lines = ["# the sandbox console's demo users (sagesf console user add changes them)\n"]
    for name, roles in DEMO_USERS.items():
        password = secrets.token_urlsafe(12)
        users.add(name, password, roles)
        lines.append(f"{name}\t{password}\t{','.join(roles)}\n")
    _private(passwords_file(), "".join(lines))


def _port() -> int:
    saved = _folder() / "port"
    if saved.exists():
        return int(saved.read_text())
    port = PREFERRED_PORT if not port_open(PREFERRED_PORT) else free_port()
    saved.write_text(str(port))
    return port


def console_url() -> str:
    return f"http://127.0.0.1:{_port()}"


def console_env(processes: dict[str, str]) -> dict[str, str]:
    """The console's settings (they hold the session secret: never print them). `processes`: name
    -> /metrics URL of each running pipeline process."""
    users = UserFile(_folder() / "users.json")
    _demo_users(users)
    return {
        "SAGESF_CONSOLE__HOST": "127.0.0.1",
        "SAGESF_CONSOLE__PORT": str(_port()),
        "SAGESF_CONSOLE__USERS_FILE": str(users.path),
        "SAGESF_CONSOLE__SESSION_SECRET": _session_secret(),
        "SAGESF_CONSOLE__AUDIT_LOG": str(_folder() / "audit.jsonl"),
        # the mapping editor edits the files the processors read, checked against their metadata
        "SAGESF_CONSOLE__MAPPINGS_DIR": str(mappings_dir()),
        "SAGESF_CONSOLE__SALESFORCE_METADATA": str(REPO_ROOT / "sandbox" / "salesforce" / "metadata.yaml"),
        "SAGESF_CONSOLE__SAGE_METADATA": str(REPO_ROOT / "mappings" / "metadata" / "sage100.yaml"),
        "SAGESF_CONSOLE__STATE_DIR": str(_folder() / "state"),
        "SAGESF_CONSOLE__PROCESSORS_RELOAD_INTERVAL": mappings_reload_interval(),
        "SAGESF_CONSOLE__PROCESSES": json.dumps(processes),
    }
