"""Where the sandbox keeps its state (data, logs, pid files) and its download cache."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Per-checkout state: broker data, registry and emulator files, logs, pid files."""
    path = Path(os.environ.get("SAGESF_SANDBOX_DIR", REPO_ROOT / ".sandbox"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_dir() -> Path:
    """Per-machine download cache (Kafka jars), shared by every clone so a fresh one is fast."""
    base = os.environ.get("SAGESF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "sagesf"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path
