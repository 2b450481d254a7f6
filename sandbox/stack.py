"""The sandbox's services in start order, and the env file that points clients at them.

Each service starts idempotently (a running one is found, not started twice) and remembers itself
in `.sandbox/<name>/`, so `sagesf sandbox down` in another shell stops what `up` started.
`.sandbox/sagesf.env` holds the `SAGESF_*` settings for the running sandbox; `export
SAGESF_ENV_FILE=.sandbox/sagesf.env` makes every `sagesf` command use it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sandbox import pipeline
from sandbox.kafka import kafka_service
from sandbox.paths import REPO_ROOT, state_dir
from sandbox.registry import registry_service
from sandbox.salesforce import salesforce_service
from sandbox.service import Service as Service  # re-exported: callers name it `stack.Service`


def services() -> list[Service]:
    """Every sandbox service, in start order (stop runs in reverse)."""
    return [kafka_service(), registry_service(), salesforce_service(), *pipeline_services()]


def stop_all() -> Iterator[tuple[str, bool]]:
    """Stop every service, last started first, and say of each whether it stopped. Each takes a
    few seconds to close its parts, so the pipeline's processes, which need nothing of each
    other, stop together; then the emulator and the registry together; Kafka, which all of them
    talk to, last."""
    every = list(reversed(services()))
    groups = [
        [s for s in every if s.pipeline],
        [s for s in every if not s.pipeline and s.name != "kafka"],
        [s for s in every if s.name == "kafka"],
    ]
    with ThreadPoolExecutor(max_workers=max(len(g) for g in groups)) as pool:
        for group in groups:
            yield from zip((s.name for s in group), pool.map(lambda s: s.stop(), group), strict=True)


def _infrastructure_addresses() -> dict[str, str]:
    found = {}
    for service in services():
        if not service.pipeline:
            address = service.address()
            if address is None:
                raise RuntimeError(f"the sandbox {service.name} is not running: `sagesf sandbox up`")
            found[service.name] = address
    return found


def pipeline_services() -> list[Service]:
    """The connectors and processors, as supervised processes (sandbox/pipeline.py)."""

    def start(component: pipeline.Component) -> Callable[[], str]:
        def run() -> str:
            addresses = _infrastructure_addresses()
            env = pipeline.pipeline_env(addresses["kafka"], addresses["registry"], addresses["salesforce"])
            env = pipeline.component_env(component, env)
            return pipeline.component_process(component).start_with(env) + "/metrics"

        return run

    def address(component: pipeline.Component) -> Callable[[], str | None]:
        def get() -> str | None:
            url = pipeline.component_process(component).address()
            return None if url is None else url + "/metrics"

        return get

    return [
        Service(c.name, start(c), pipeline.component_process(c).stop, address(c), pipeline=True)
        for c in pipeline.COMPONENTS
    ]


def env_file() -> Path:
    return state_dir() / "sagesf.env"


def write_env_file(values: dict[str, str]) -> Path:
    path = env_file()
    path.write_text("".join(f"{k}={v}\n" for k, v in sorted(values.items())))
    return path


@dataclass
class Sandbox:
    """What `up` started: service addresses and the env file that points clients at them."""

    addresses: dict[str, str] = field(default_factory=dict)
    env_file: Path = field(default_factory=env_file)

    @property
    def env(self) -> dict[str, str]:
        values = {"SAGESF_KAFKA__BOOTSTRAP_SERVERS": self.addresses["kafka"]}
        if "registry" in self.addresses:
            values["SAGESF_REGISTRY__URL"] = self.addresses["registry"]
        return values


def sagesf_command(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a `sagesf` command of this checkout against the sandbox (the same CLI a user runs)."""
    return subprocess.run(
        [sys.executable, "-m", "sagesf", *args],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        env={**os.environ, **env, "COLUMNS": "120"},
    )


def up(say: Callable[[str], None], *, with_pipeline: bool = True) -> Sandbox:
    """Start every service, write the env file, apply topics.yaml (replication 1), register schemas.

    `with_pipeline=False` starts the infrastructure only (Kafka, the registry, the Salesforce emulator),
    provisioned: what a go-live needs before the pipeline runs (seed, load, link); then
    `start_pipeline`."""
    sandbox = Sandbox()
    provisioned = False
    for service in services():
        if service.pipeline and not with_pipeline:
            continue
        if service.pipeline and not provisioned:
            _provision(sandbox, say)
            provisioned = True
        _start(service, sandbox, say)
    if not provisioned:
        _provision(sandbox, say)
    return sandbox


def start_pipeline(sandbox: Sandbox, say: Callable[[str], None]) -> None:
    """Start the pipeline's processes of a sandbox `up(with_pipeline=False)` started."""
    for service in pipeline_services():
        _start(service, sandbox, say)


def _start(service: Service, sandbox: Sandbox, say: Callable[[str], None]) -> None:
    started = time.monotonic()
    sandbox.addresses[service.name] = service.start()
    say(
        f"[green]up[/green]   {service.name:<17} {sandbox.addresses[service.name]}"
        f"  ({time.monotonic() - started:.1f} s)"
    )


def _provision(sandbox: Sandbox, say: Callable[[str], None]) -> None:
    """Write the env file, apply topics.yaml (replication 1) and register the schemas."""
    write_env_file(sandbox.env)
    for args in (["topics", "apply", "--replication-factor", "1"], ["schemas", "register"]):
        started = time.monotonic()
        done = sagesf_command(args, sandbox.env)
        if done.returncode != 0:
            raise RuntimeError(f"sagesf {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "done"
        say(f"[green]ok[/green]   sagesf {' '.join(args)}: {last}  ({time.monotonic() - started:.1f} s)")
    say(f"wrote {sandbox.env_file}")
