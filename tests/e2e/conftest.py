"""One whole sandbox (Kafka, registry, Salesforce emulator, Sage 100 database, the five pipeline
processes) for the order-automation tests, in a temporary state directory and on free ports.

The processors read a copy of mappings/ under the state directory, reloaded every second, so a
test can fix the lookup table as an operator would without touching the checkout's files. Both
sinks' consumers get the 10 s session timeout the sandbox gives the processors (librdkafka's
default is 45 s: a sink killed with -9 would hold its partitions that long before its restarted
self is given them). The pipeline processes inherit these from the environment. Every service is
stopped at the end, whatever happened; the environment is restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from sandbox import stack as stack_module
from sandbox.paths import REPO_ROOT


@dataclass(frozen=True)
class OrderSandbox:
    state_dir: Path
    mappings_dir: Path  # what the running processors read
    env_file: Path  # SAGESF_ENV_FILE for `sagesf` commands
    salesforce_url: str
    kafka: str


_SINK_CONSUMER = json.dumps({"session.timeout.ms": 10_000, "heartbeat.interval.ms": 1_000})
_ENV = {
    "SAGESF_SANDBOX_DIR": None,  # set by the fixture
    "SAGESF_PROCESSORS__MAPPINGS_DIR": None,
    "SAGESF_PROCESSORS__MAPPINGS_RELOAD_INTERVAL": "1",
    "SAGESF_SAGE_SINK__CONSUMER_CONFIG": _SINK_CONSUMER,
    "SAGESF_SALESFORCE__SINK__CONSUMER_CONFIG": _SINK_CONSUMER,
    "SAGESF_ENV_FILE": None,  # a developer's exported env file must not steer the sandbox
}


@contextlib.contextmanager
def sandbox_stack(
    state_dir: Path, *, with_pipeline: bool = True
) -> Iterator[tuple[stack_module.Sandbox, Path]]:
    """A sandbox under `state_dir` with its own copy of mappings/ (the processors read it), in this
    process's environment while it lasts; every service stopped at the end, whatever happened."""
    mappings_dir = state_dir / "mappings"
    shutil.copytree(REPO_ROOT / "mappings", mappings_dir)
    values = dict(_ENV, SAGESF_SANDBOX_DIR=str(state_dir), SAGESF_PROCESSORS__MAPPINGS_DIR=str(mappings_dir))
    saved = {name: os.environ.get(name) for name in values}
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    try:
        yield stack_module.up(lambda line: None, with_pipeline=with_pipeline), mappings_dir
    finally:
        try:
            # ExitStack runs every stop, last started first, even when one of them raises
            with contextlib.ExitStack() as stops:
                for service in stack_module.services():
                    stops.callback(service.stop)
        finally:
            for name, old in saved.items():
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old


@pytest.fixture(scope="module")  # gone when the module is done: the rest of the run gets the cores
def order_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrderSandbox]:
    from sandbox.order_flow import sales_rep
    from sandbox.salesforce.scenarios import seed

    state_dir = tmp_path_factory.mktemp("sandbox")
    with sandbox_stack(state_dir) as (sandbox, mappings_dir):
        salesforce_url = sandbox.addresses["salesforce"]
        seed(sales_rep(salesforce_url))
        yield OrderSandbox(
            state_dir, mappings_dir, sandbox.env_file, salesforce_url, sandbox.addresses["kafka"]
        )
