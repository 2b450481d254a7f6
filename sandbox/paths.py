"""Where the sandbox keeps its state (data, logs, pid files), its download cache and the mapping
files its processes read."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def state_dir() -> Path:
    """Per-checkout state: broker data, registry and emulator files, logs, pid files."""
    path = Path(os.environ.get("SAGESF_SANDBOX_DIR", REPO_ROOT / ".sandbox"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def mappings_dir() -> Path:
    """The mapping files every process of the sandbox reads and the console edits: the processors'
    SAGESF_PROCESSORS__MAPPINGS_DIR when set (a test's copy), else the checkout's mappings/."""
    return Path(os.environ.get("SAGESF_PROCESSORS__MAPPINGS_DIR") or REPO_ROOT / "mappings")


def mappings_reload_interval() -> str:
    """Seconds between the processes' looks for edited mapping files: the processors' setting,
    which the Salesforce source and the console's "in use within" follow, so a save reaches all
    of them in the time the console says."""
    return os.environ.get("SAGESF_PROCESSORS__MAPPINGS_RELOAD_INTERVAL", "10")


def cache_dir() -> Path:
    """Per-machine download cache (Kafka jars), shared by every clone so a fresh one is fast."""
    base = os.environ.get("SAGESF_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache")), "sagesf"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path
