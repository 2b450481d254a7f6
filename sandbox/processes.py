"""Background processes of the sandbox: start detached, remember by pid file, stop cleanly.

A process is described by a small JSON state file (pid, ports, log path) so that `sagesf sandbox
... status|stop` in another shell finds what `start` left running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child still answers kill(0); reap it if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return done == 0


@dataclass
class ProcessState:
    """What a started process left behind for later commands."""

    name: str
    pid: int
    log: str
    ports: dict[str, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> ProcessState | None:
        try:
            return cls(**json.loads(path.read_text()))
        except (FileNotFoundError, json.JSONDecodeError, TypeError):
            return None

    @property
    def alive(self) -> bool:
        return pid_alive(self.pid)


def spawn(
    argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a process in its own session (so a terminal's Ctrl-C does not reach it)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
        )


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, alive: Callable[[], bool] | None = None
) -> None:
    """Poll `check` until it is true; fail early with a clear message if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited before it was ready")
        time.sleep(0.1)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


def stop_pid(pid: int, timeout: float = 20.0) -> bool:
    """SIGTERM, wait, then SIGKILL. Returns True if the process is gone."""
    if not pid_alive(pid):
        return True
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    time.sleep(0.2)
    return not pid_alive(pid)


def http_ok(url: str) -> bool:
    """True when GET `url` answers 200 (the readiness check of the sandbox's HTTP services)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310 - our own http URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


class HttpProcess:
    """A sandbox service that is one detached process serving HTTP on one port.

    Remembered by `<data_dir>/<state_name>`, so another shell finds and stops it. A restart reuses
    the previous port when it is free (clients remember URLs). Ready means `health_path` answers 200.
    Subclasses build the command line and call `_launch` from their own `start`.
    """

    name = "process"
    health_path = "/"

    def __init__(
        self, data_dir: Path, port: int | None = None, host: str = "127.0.0.1", state_name: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self._port = port
        self.state_file = data_dir / (state_name or f"{self.name}.json")

    @property
    def state(self) -> ProcessState | None:
        return ProcessState.load(self.state_file)

    @property
    def url(self) -> str:
        state = self.state
        if state is None:
            raise RuntimeError(f"the sandbox {self.name} is not started")
        return f"http://{self.host}:{state.ports['http']}"

    def running(self) -> bool:
        state = self.state
        return state is not None and state.alive and port_open(state.ports["http"], self.host)

    def address(self) -> str | None:
        return self.url if self.running() else None

    def _choose_port(self) -> int:
        if self._port is not None:
            return self._port
        previous = self.state
        if previous is not None and not port_open(previous.ports["http"], self.host):
            return previous.ports["http"]
        return free_port()

    def _launch(
        self,
        argv: Callable[[int], Sequence[str]],
        timeout: float,
        env: Mapping[str, str] | None = None,
        extra: dict[str, Any] | None = None,
        cwd: Path | None = None,
        port_env: str | None = None,
    ) -> str:
        """Start `argv(port)` unless running; wait until healthy; return the base URL.

        `port_env` names an environment variable that tells the process its port, for programs
        that take it from their settings rather than the command line.
        """
        if self.running():
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        port = self._choose_port()
        log_path = self.data_dir / f"{self.name}.log"
        env = {**(env or {}), **({port_env: str(port)} if port_env else {})}
        proc = spawn(
            argv(port), log_path, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}, cwd=cwd
        )
        ProcessState(
            name=self.name, pid=proc.pid, log=str(log_path), ports={"http": port}, extra=extra or {}
        ).save(self.state_file)
        url = f"http://{self.host}:{port}"
        try:
            wait_until(
                lambda: http_ok(url + self.health_path),
                timeout,
                f"{self.name} on {url} (log: {log_path})",
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
