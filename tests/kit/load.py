"""`sagesf load` killed part-way at a known point, as a crash would stop it: `killed_load` runs the
real command in a subprocess that SIGKILLs itself just before it stores the position of a chosen
checkpoint, after Kafka acknowledged that checkpoint's records (sagesf.source `SourceLoop.commit`
steps 4 and 5). A rerun resumes from the checkpoint before it and publishes that one again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

__all__ = ["killed_load"]

REPO = Path(__file__).resolve().parents[2]

_KILLED_AT_A_CHECKPOINT = """
import os, signal, sys
from sagesf.cli import main
from sagesf.positions import PositionStore

store = PositionStore.put_many
kill_at, reached = int(sys.argv[1]), 0

def killed_before_storing(self, positions):
    global reached
    partial = [
        s for s, p in positions.items() if isinstance(p, dict) and p.get("published") and not p.get("done")
    ]
    if partial:
        reached += 1
        if reached == kill_at:
            print("killed before storing", *partial, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    store(self, positions)

PositionStore.put_many = killed_before_storing
sys.argv = ["sagesf", *sys.argv[2:]]
main()
"""


def killed_load(env: Mapping[str, str], *args: str, checkpoint: int = 2) -> list[str]:
    """Run `sagesf load <args>` killed before it stores its `checkpoint`-th position of a part
    published part-way (records published, not done); the streams of that position."""
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_AT_A_CHECKPOINT, str(checkpoint), "load", *args],
        env=dict(env),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout[-3000:] + proc.stderr[-3000:]
    [line] = [x for x in proc.stdout.splitlines() if x.startswith("killed before storing")]
    return line.split()[3:]
