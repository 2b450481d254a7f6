"""The pipeline's own processes in the sandbox: both connectors' sources and sinks, and the processors.

Each runs as `sagesf run <component>` detached (the web console too, with its own settings:
sandbox/web_console.py), with its log in `.sandbox/<name>/<name>.log` and its
`/metrics` and `/healthz` on a port of its own (`sagesf sandbox status` lists them). Ready means
/healthz answers 200. Settings reach them as `SAGESF_*` environment variables built from the
running sandbox: Kafka and the registry, the Salesforce emulator's URL and its connected-app
credentials (password flow: the emulator's demo user, sandbox-only secrets), and the Sage 100
sandbox database's ODBC connection string. They are started after Kafka, the registry and the
emulators, and after topics.yaml is applied, and stopped first.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox.paths import REPO_ROOT, mappings_dir, mappings_reload_interval, state_dir
from sandbox.processes import HttpProcess


class ComponentProcess(HttpProcess):
    """One pipeline process; `argv` is what follows `python -m` (`sagesf run <component>`)."""

    health_path = "/healthz"

    def __init__(self, name: str, argv: list[str], data_dir: Path) -> None:
        self.name = name
        self.argv = argv
        super().__init__(data_dir)

    def start_with(self, env: dict[str, str], timeout: float = 90.0) -> str:
        return self._launch(
            lambda port: [sys.executable, "-m", *self.argv],
            timeout,
            env={**env, "SAGESF_METRICS__HOST": "127.0.0.1"},
            port_env="SAGESF_METRICS__PORT",
            cwd=REPO_ROOT,
        )


@dataclass(frozen=True)
class Component:
    name: str  # also the stage name in sagesf.stages
    argv: list[str]


# started in this order; the web console last, so that it finds the others' /metrics
COMPONENTS = [
    Component(name, ["sagesf", "run", name])
    for name in ("sage-sink", "salesforce-sink", "processors", "sage-source", "salesforce-source", "console")
]
CONSOLE = "console"


def component_process(component: Component) -> ComponentProcess:
    return ComponentProcess(component.name, component.argv, state_dir() / component.name)


def component_env(component: Component, env: dict[str, str]) -> dict[str, str]:
    """`env` (pipeline_env) plus what this component alone needs: the console gets its own settings
    and the /metrics URLs of the other processes that run (sandbox/web_console.py)."""
    if component.name != CONSOLE:
        return env
    from sandbox.web_console import console_env

    others = {
        c.name: url + "/metrics"
        for c in COMPONENTS
        if c.name != CONSOLE and (url := component_process(c).address()) is not None
    }
    return {**env, **console_env(others)}


def sage_database_path() -> Path:
    return state_dir() / "sage100" / "sage100.db"


def ensure_sage_database() -> Path:
    """The sandbox's Sage 100 company: created and seeded on first use, kept afterwards."""
    from sandbox.sage100 import create_database, open_database, seed
    from sandbox.sage100.database import add_missing_udfs

    path = sage_database_path()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        seed(create_database(path))
    else:
        add_missing_udfs(open_database(path))  # a sandbox made before a UDF was added
    return path


def pipeline_env(kafka: str, registry: str, salesforce_url: str) -> dict[str, str]:
    """Every component's settings for this sandbox (they contain sandbox credentials: never print)."""
    from sandbox.sage100 import connection_string
    from sandbox.sage100.database import DEFAULT_UDF_COLUMNS
    from sandbox.salesforce import sandbox_credentials

    creds = sandbox_credentials(salesforce_url)
    return {
        "SAGESF_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "SAGESF_REGISTRY__URL": registry,
        "SAGESF_SALESFORCE__LOGIN_URL": creds.url,
        "SAGESF_SALESFORCE__AUTH_FLOW": "password",
        "SAGESF_SALESFORCE__CLIENT_ID": creds.client_id,
        "SAGESF_SALESFORCE__CLIENT_SECRET": creds.client_secret,
        "SAGESF_SALESFORCE__USERNAME": creds.username,
        "SAGESF_SALESFORCE__PASSWORD": creds.password,
        "SAGESF_SAGE100__CONNECTION_STRING": connection_string(ensure_sage_database()),
        "SAGESF_SAGE100__UDF_COLUMNS": json.dumps(DEFAULT_UDF_COLUMNS),
        "SAGESF_SAGE100__SOURCE__POLL_INTERVAL": "1.0",
        # the source's own map of Account fields (salesforce_source.yaml) is one of the files the
        # console saves: it must read the same directory as the processors, and reload as often
        "SAGESF_SALESFORCE__SOURCE__MAPPING_FILE": str(mappings_dir() / "salesforce_source.yaml"),
        "SAGESF_SALESFORCE__SOURCE__MAPPING_RELOAD_INTERVAL": mappings_reload_interval(),
        "SAGESF_PROCESSORS__REPLICATION_FACTOR": "1",
        "SAGESF_PROCESSORS__DATA_DIR": str(state_dir() / "processors" / "data"),
        "SAGESF_PROCESSORS__SALESFORCE_METADATA": str(
            REPO_ROOT / "mappings" / "metadata" / "salesforce.yaml"
        ),
        "SAGESF_PROCESSORS__SAGE_METADATA": str(REPO_ROOT / "mappings" / "metadata" / "sage100.yaml"),
        "SAGESF_PROCESSORS__SESSION_TIMEOUT": "10",
        "SAGESF_PROCESSORS__HEARTBEAT_INTERVAL": "1",
    }
