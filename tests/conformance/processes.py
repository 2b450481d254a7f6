"""A component as the real process it is in production: `sagesf run <component>` as a subprocess,
with its environment, its log, and its /healthz read over HTTP."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sandbox.processes import free_port

__all__ = ["CRASHED_AFTER_THE_WRITE", "CRASH_AFTER_THE_WRITE", "ComponentProcess", "wait_until"]

REPO = Path(__file__).resolve().parents[2]

CRASHED_AFTER_THE_WRITE = "written; SIGKILL before the answer and the commit"
# Every sink's loop calls SinkLoop._answer right after the sink's write and before the answers are
# published and the offsets committed: a SIGKILL there is the same crash point for every sink.
CRASH_AFTER_THE_WRITE = f"""
import os, signal, sys
from sagesf.runner import component, run
from sagesf.sink import SinkLoop

answer = SinkLoop._answer

def killed_after_the_write(self, pending, outcomes):
    if any(not outcome.again for outcome in outcomes):
        print({CRASHED_AFTER_THE_WRITE!r}, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    return answer(self, pending, outcomes)

SinkLoop._answer = killed_after_the_write
sys.exit(run(component(sys.argv[1])))
"""


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    """Poll `condition` until it holds; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(every)


class ComponentProcess:
    """`sagesf run <component>` (or, with `script`, `python -c <script> <component>`) in a clean
    environment: the current one without any SAGESF_* variable, plus `env`, plus its own metrics
    port. Each start writes its own log file; `log_tail()` shows them all."""

    def __init__(self, component: str, env: Mapping[str, str], log_dir: Path) -> None:
        self.component = component
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SAGESF_")},
            "PYTHONUNBUFFERED": "1",
            **env,
            "SAGESF_METRICS__HOST": "127.0.0.1",
            "SAGESF_METRICS__PORT": str(self.port),
        }
        self.log_dir = log_dir
        self.logs: list[Path] = []
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, script: str | None = None) -> ComponentProcess:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.log_dir / f"{self.component}.{len(self.logs) + 1}.log"
        self.logs.append(log)
        if script is None:
            argv = [sys.executable, "-m", "sagesf", "run", self.component, "--log-level", "INFO"]
        else:
            argv = [sys.executable, "-c", script, self.component]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(argv, env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any] | None:
        """The /healthz document, or None while nothing answers (starting, or gone)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as resp:
                found: dict[str, Any] = json.loads(resp.read())
                return found
        except OSError as exc:
            body = getattr(exc, "read", None)  # 503 (unhealthy) still carries the document
            if body is None:
                return None
            try:
                found = json.loads(body())
            except ValueError:
                return None
            return found

    def stage_status(self, stage: str) -> str | None:
        """The /healthz status of one stage (None: not reported yet)."""
        health = self.health()
        component = (health or {}).get("components", {}).get(stage)
        return None if component is None else str(component.get("status"))

    def wait_ready(self, ready: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> None:
        def started() -> bool:
            assert self.running(), f"{self.component} exited with {self.returncode()}:\n{self.log_tail()}"
            health = self.health()
            return health is not None and ready(health)

        try:
            wait_until(started, timeout, f"{self.component} ready")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def wait_exit(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.component} still running after {timeout:.0f} s:\n{self.log_tail()}"
            ) from None

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def kill(self) -> None:
        """kill -9: no signal handler, no flush, no close."""
        assert self.running(), f"{self.component} is not running:\n{self.log_tail()}"
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, as a supervisor stops it; SIGKILL if it has not ended after 15 s."""
        if not self.running():
            return
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def log_text(self) -> str:
        """Everything every start of the process printed."""
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])
