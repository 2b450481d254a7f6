"""deploy/k8s renders with kustomize and every resource is valid and says what a platform team needs.

Rendered with the real kustomize (built by deploy/tools/ensure.sh); Kubernetes' own kinds are
validated against the bundled Kubernetes JSON schemas (kubernetes-validate, strict: unknown
fields are errors), the custom resources against the CRD excerpts in crd_schemas.py. Then what a
user would trip over: a pipeline process not deployed, a probe on the wrong path or port, a
secret written into a manifest, a mapping file missing from the ConfigMap, topics out of date, a
console whose saved mappings the processes that read them do not see.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from sagesf.topics_file import load_topics
from sandbox.paths import REPO_ROOT
from sandbox.pipeline import COMPONENTS
from tests.deploy.crd_schemas import CUSTOM_RESOURCES
from tests.deploy.support import DEPLOY, K8S_BASE, K8S_PRODUCTION, render, run, seed_keeps_a_save

# the oldest Kubernetes release the manifests target (PodDisruptionBudget's
# unhealthyPodEvictionPolicy is on by default since 1.27) and the newest schemas bundled
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
SECRET_NAMES = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE_KEY|CONNECTION_STRING", re.IGNORECASE)

pytestmark = pytest.mark.timeout(1800)  # the first run on a machine builds kustomize


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return render(K8S_BASE)


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return render(K8S_PRODUCTION)


def _kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def _one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def _invalid(doc: dict[str, Any]) -> list[str]:
    key = (doc["apiVersion"], doc["kind"])
    where = f"{doc['kind']}/{doc['metadata']['name']}"
    if key in CUSTOM_RESOURCES:
        validator = jsonschema.Draft7Validator(CUSTOM_RESOURCES[key])
        return [f"{where}: {e.json_path}: {e.message}" for e in validator.iter_errors(doc)]
    problems = []
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{where} (Kubernetes {version}): {'.'.join(map(str, exc.path))}: {exc.message}")
    return problems


@pytest.mark.parametrize("overlay", ["base", "production"])
def test_every_rendered_resource_is_valid(overlay, request):
    docs = request.getfixturevalue(overlay)
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "ServiceMonitor",
        "KafkaTopic",
        "ConfigMap",
        "NetworkPolicy",
    } <= kinds
    problems = [p for doc in docs for p in _invalid(doc)]
    assert not problems, "\n".join(problems)


def test_the_validation_catches_a_typo_and_a_wrong_type(base):
    deployment = copy.deepcopy(_kind(base, "Deployment")[0])
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbes"] = container.pop("livenessProbe")
    assert _invalid(deployment)
    deployment = copy.deepcopy(_kind(base, "Deployment")[0])
    deployment["spec"]["replicas"] = "two"
    assert _invalid(deployment)
    monitor = copy.deepcopy(_kind(base, "ServiceMonitor")[0])
    monitor["spec"]["endpoints"][0]["intervall"] = "30s"
    assert _invalid(monitor)


def test_every_pipeline_process_is_a_deployment_running_its_command(base):
    deployments = {d["metadata"]["name"]: d for d in _kind(base, "Deployment")}
    # the pipeline's processes, and the reconciler, which the sandbox does not run
    assert set(deployments) == {f"sagesf-{c.name}" for c in COMPONENTS} | {"sagesf-reconciler"}
    for component in COMPONENTS:
        pod = deployments[f"sagesf-{component.name}"]["spec"]["template"]["spec"]
        [container] = pod["containers"]
        assert container["command"] == ["python", "-m", *component.argv], component.name
    [reconciler] = deployments["sagesf-reconciler"]["spec"]["template"]["spec"]["containers"]
    assert reconciler["command"] == ["python", "-m", "sagesf", "run", "reconciler"]


def test_probes_use_the_health_endpoint_liveness_and_readiness_paths(base):
    env = _one(base, "ConfigMap", _config_map_name(base, "sagesf-env"))["data"]
    for deployment in _kind(base, "Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == int(env["SAGESF_METRICS__PORT"])
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz/live", "port": "metrics"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/healthz/ready", "port": "metrics"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz/live"
        # liveness gives up only after Health.stall_after (120 s) has already turned it unhealthy
        live = container["livenessProbe"]
        assert live["periodSeconds"] * live["failureThreshold"] >= 60


def test_metrics_and_health_listen_beyond_loopback_for_prometheus_and_the_probes(base, production):
    for docs in (base, production):
        env_map = _config_map_name(docs, "sagesf-env")
        env = _one(docs, "ConfigMap", env_map)["data"]
        assert env["SAGESF_METRICS__HOST"] == "0.0.0.0"  # noqa: S104 - the default is 127.0.0.1
        for deployment in _kind(docs, "Deployment"):
            [container] = deployment["spec"]["template"]["spec"]["containers"]
            assert {"configMapRef": {"name": env_map}} in container["envFrom"], deployment["metadata"]["name"]
            assert "SAGESF_METRICS__HOST" not in {v["name"] for v in container.get("env", [])}


def test_only_the_monitoring_namespace_reaches_the_pods_and_only_their_metrics_port(base, production):
    """...and the ingress controller's namespace reaches the web console's pages, on their port only."""
    for docs in (base, production):
        policies = {p["metadata"]["name"]: p["spec"] for p in _kind(docs, "NetworkPolicy")}
        assert set(policies) == {"sagesf-metrics-from-monitoring", "sagesf-console-from-ingress"}
        spec = policies["sagesf-metrics-from-monitoring"]
        assert spec["policyTypes"] == ["Ingress"]  # everything not admitted below is refused
        for deployment in _kind(docs, "Deployment"):
            pod = deployment["spec"]["template"]
            name = deployment["metadata"]["name"]
            assert spec["podSelector"]["matchLabels"].items() <= pod["metadata"]["labels"].items(), name
            [container] = pod["spec"]["containers"]
            ports = [p["name"] for p in container["ports"]]
            assert ports == (["http", "metrics"] if name == "sagesf-console" else ["metrics"]), name
        [rule] = spec["ingress"]
        assert rule["from"] == [
            {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}
        ]
        assert rule["ports"] == [{"protocol": "TCP", "port": "metrics"}]
        console = policies["sagesf-console-from-ingress"]
        assert console["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "sagesf-console"}
        [rule] = console["ingress"]
        assert rule["ports"] == [{"protocol": "TCP", "port": "http"}]


def test_every_container_has_requests_and_limits_and_runs_locked_down(base):
    for deployment in _kind(base, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"] + pod.get("initContainers", []):
            where = f"{deployment['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert {"cpu", "memory"} <= set(resources["limits"]), where
            assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where


def test_pod_disruption_budgets_and_service_monitor_cover_every_deployment(base):
    monitor = _kind(base, "ServiceMonitor")[0]["spec"]
    selected = monitor["selector"]["matchLabels"]
    ports = {e["port"] for e in monitor["endpoints"]}
    for deployment in _kind(base, "Deployment"):
        pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
        pdbs = [
            p
            for p in _kind(base, "PodDisruptionBudget")
            if p["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
        ]
        assert len(pdbs) == 1, deployment["metadata"]["name"]
        services = [s for s in _kind(base, "Service") if s["spec"]["selector"].items() <= pod_labels.items()]
        assert len(services) == 1, deployment["metadata"]["name"]
        [service] = services
        assert selected.items() <= service["metadata"]["labels"].items(), "the ServiceMonitor must select it"
        assert ports & {p["name"] for p in service["spec"]["ports"]}
        # the job label becomes the Service's name label, as prometheus.yml's job names
        assert service["metadata"]["labels"][monitor["jobLabel"]] == deployment["metadata"]["name"]


def test_secrets_are_referenced_never_written(production, base):
    for docs in (base, production):
        assert not _kind(docs, "Secret"), "a Secret in the manifests would be committed to git"
        for config_map in _kind(docs, "ConfigMap"):
            leaked = [k for k in config_map.get("data", {}) if SECRET_NAMES.search(k)]
            assert not leaked, f"{config_map['metadata']['name']} holds {leaked}"
        for deployment in _kind(docs, "Deployment"):
            pod = deployment["spec"]["template"]["spec"]
            for container in pod["containers"] + pod.get("initContainers", []):
                for var in container.get("env", []):
                    if SECRET_NAMES.search(var["name"]):
                        assert "value" not in var, (
                            f"{deployment['metadata']['name']}: {var['name']} has a value"
                        )
                        assert "secretKeyRef" in var["valueFrom"], var["name"]


def test_the_readme_lists_every_secret_the_manifests_reference(production):
    readme = (DEPLOY / "k8s" / "README.md").read_text()
    referenced = set()
    for deployment in _kind(production, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        for container in pod["containers"] + pod.get("initContainers", []):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    referenced.add((ref["name"], ref["key"]))
        for volume in pod["volumes"]:
            if "secret" in volume:
                referenced |= {(volume["secret"]["secretName"], i["key"]) for i in volume["secret"]["items"]}
    assert len(referenced) >= 6
    missing = [
        f"{name} (key {key})"
        for name, key in sorted(referenced)
        if f"`{name}`" not in readme or key not in readme
    ]
    assert not missing, f"deploy/k8s/README.md does not tell how to create {missing}"


def test_the_sage_connector_is_marked_as_the_on_premise_part(base):
    for deployment in _kind(base, "Deployment"):
        name = deployment["metadata"]["name"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        on_premise = labels.get("sagesf.io/placement") == "on-premise"
        assert on_premise == name.startswith("sagesf-sage-"), name
        if on_premise:
            assert "Windows service" in deployment["metadata"]["annotations"]["sagesf.io/placement-note"]


def test_single_writer_sources_never_run_twice(base):
    for name in ("sagesf-salesforce-source", "sagesf-sage-source"):
        spec = _one(base, "Deployment", name)["spec"]
        assert (spec["replicas"], spec["strategy"]["type"]) == (1, "Recreate"), name


def _config_map_name(docs: list[dict[str, Any]], prefix: str) -> str:
    [name] = [
        str(d["metadata"]["name"])
        for d in _kind(docs, "ConfigMap")
        if d["metadata"]["name"].startswith(prefix + "-")
    ]
    return name


def test_config_maps_carry_every_mapping_file_and_topics_yaml(base):
    mappings = _one(base, "ConfigMap", _config_map_name(base, "sagesf-mappings"))["data"]
    assert set(mappings) == {p.name for p in (REPO_ROOT / "mappings").glob("*.yaml")}
    for name, text in mappings.items():
        assert text == (REPO_ROOT / "mappings" / name).read_text(), name
    topics = _one(base, "ConfigMap", _config_map_name(base, "sagesf-topics"))["data"]
    assert topics["topics.yaml"] == (REPO_ROOT / "topics.yaml").read_text()
    processors = _one(base, "Deployment", "sagesf-processors")["spec"]["template"]["spec"]
    [container] = processors["containers"]
    env = {v["name"]: v.get("value") for v in container["env"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert env["SAGESF_PROCESSORS__MAPPINGS_DIR"] == mounts["mappings"]
    metadata = _one(base, "ConfigMap", _config_map_name(base, "sagesf-metadata"))["data"]
    for name, text in metadata.items():
        assert text == (REPO_ROOT / "mappings" / "metadata" / name).read_text(), name
    assert env["SAGESF_PROCESSORS__SALESFORCE_METADATA"] == f"{mounts['metadata']}/salesforce.yaml"
    assert env["SAGESF_PROCESSORS__SAGE_METADATA"] == f"{mounts['metadata']}/sage100.yaml"
    assert set(metadata) == {"salesforce.yaml", "sage100.yaml"}


# the settings by which a process finds the mapping files the console saves
MAPPING_SETTINGS = ("SAGESF_PROCESSORS__MAPPINGS_DIR", "SAGESF_SALESFORCE__SOURCE__MAPPING_FILE")
MAPPING_READERS = {"sagesf-processors", "sagesf-salesforce-source", "sagesf-reconciler"}
FALLBACK = DEPLOY / "k8s" / "components" / "mappings-from-configmap"


def _pod(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    pod: dict[str, Any] = _one(docs, "Deployment", name)["spec"]["template"]["spec"]
    return pod


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {v["name"]: v.get("value") for v in container.get("env", [])}


def _volume_of(pod: dict[str, Any], container: dict[str, Any], path: str) -> tuple[dict[str, Any], str, bool]:
    """The pod's volume `path` lies on in `container`, the path on it, and whether it is mounted read-only."""
    holding = [m for m in container["volumeMounts"] if PurePosixPath(path).is_relative_to(m["mountPath"])]
    assert holding, f"{container['name']}: {path} is on no volume"
    mount = max(holding, key=lambda m: len(m["mountPath"]))
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    on_volume = str(PurePosixPath(path).relative_to(mount["mountPath"]))
    return volume, on_volume, bool(mount.get("readOnly"))


def _mapping_readers(docs: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Each Deployment configured with the mapping files (but the console): its settings for them."""
    found: dict[str, list[tuple[str, str]]] = {}
    for deployment in _kind(docs, "Deployment"):
        env = _env(deployment["spec"]["template"]["spec"]["containers"][0])
        if settings := [(k, env[k]) for k in MAPPING_SETTINGS if k in env]:
            found[deployment["metadata"]["name"]] = settings
    return found


@pytest.mark.parametrize("overlay", ["base", "production"])
def test_a_mapping_saved_in_the_console_is_the_file_every_mapping_reader_reads(overlay, request):
    """The console saves to a ReadWriteMany claim that every process reading the mapping files
    mounts read-only, at the same place on it; each of those pods seeds the claim from the
    ConfigMap first, and the console checks against the metadata the processors use."""
    docs = request.getfixturevalue(overlay)
    console_pod = _pod(docs, "sagesf-console")
    [console] = console_pod["containers"]
    saved_dir = _env(console)["SAGESF_CONSOLE__MAPPINGS_DIR"]
    volume, saved_on, read_only = _volume_of(console_pod, console, saved_dir)
    claim = volume.get("persistentVolumeClaim", {}).get("claimName")
    assert claim, f"the console saves to {volume}, which no other pod sees"
    assert not read_only, "the console cannot save"
    assert _one(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteMany"]
    readers = _mapping_readers(docs)
    assert set(readers) == MAPPING_READERS
    for name, settings in readers.items():
        pod = _pod(docs, name)
        for setting, path in settings:
            volume, read_on, read_only = _volume_of(pod, pod["containers"][0], path)
            assert volume.get("persistentVolumeClaim", {}).get("claimName") == claim, f"{name} {setting}"
            assert read_only, f"{name} may write the mapping files"
            file = "salesforce_source.yaml" if setting.endswith("FILE") else ""
            expected = PurePosixPath(saved_on) / file
            assert PurePosixPath(read_on) == expected, f"{name} {setting} reads {read_on}, saved: {saved_on}"
    shipped = _config_map_name(docs, "sagesf-mappings")
    for name in (*readers, "sagesf-console"):
        pod = _pod(docs, name)
        [seed] = [c for c in pod["initContainers"] if c["name"] == "seed-mappings"]
        mounts = {m["name"]: m for m in seed["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts["mappings"]["name"]]["persistentVolumeClaim"]["claimName"] == claim, name
        assert not mounts["mappings"].get("readOnly"), name
        assert volumes["shipped-mappings"]["configMap"]["name"] == shipped, name
    processors = _env(_pod(docs, "sagesf-processors")["containers"][0])
    for what in ("SALESFORCE_METADATA", "SAGE_METADATA"):
        path = _env(console)[f"SAGESF_CONSOLE__{what}"]
        assert path == processors[f"SAGESF_PROCESSORS__{what}"], what
        assert _volume_of(console_pod, console, path)[0]["configMap"]["name"].startswith("sagesf-metadata-")
    state = _volume_of(console_pod, console, _env(console)["SAGESF_CONSOLE__STATE_DIR"])[0]
    assert state["persistentVolumeClaim"]["claimName"] == "sagesf-console-data"


def test_the_seed_copies_what_the_claim_lacks_and_never_what_the_console_saved(base, tmp_path):
    pod = _pod(base, "sagesf-processors")
    [seed] = [c for c in pod["initContainers"] if c["name"] == "seed-mappings"]
    mounts = {m["name"]: m["mountPath"] for m in seed["volumeMounts"]}
    assert seed["command"][:2] == ["sh", "-c"]
    volume = seed_keeps_a_save(seed["command"][-1], mounts["shipped-mappings"], mounts["mappings"], tmp_path)
    (tmp_path / "shipped" / "pricing.yaml").write_text("added by a release\n")
    script = seed["command"][-1].replace(mounts["shipped-mappings"], str(tmp_path / "shipped"))
    run(["sh", "-c", script.replace(mounts["mappings"], str(volume))])
    assert (volume / "pricing.yaml").read_text() == "added by a release\n"
    assert (volume / "customers.yaml").read_text() == "saved in the console\n"
    assert not list(volume.glob(".*")), "a temporary file was left behind"


def test_without_rwx_storage_the_fallback_reads_the_config_map_and_the_console_refuses_saves(tmp_path: Path):
    overlay = tmp_path / "kustomization.yaml"
    overlay.write_text(
        f"resources: [{os.path.relpath(K8S_PRODUCTION, tmp_path)}]\n"
        f"components: [{os.path.relpath(FALLBACK, tmp_path)}]\n"
    )
    docs = render(tmp_path)
    problems = [p for doc in docs for p in _invalid(doc)]
    assert not problems, "\n".join(problems)
    assert not [d for d in _kind(docs, "PersistentVolumeClaim") if d["metadata"]["name"] == "sagesf-mappings"]
    shipped = _config_map_name(docs, "sagesf-mappings")
    for name in (*MAPPING_READERS, "sagesf-console"):
        pod = _pod(docs, name)
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["mappings"] == {"name": "mappings", "configMap": {"name": shipped}}, name
        assert "shipped-mappings" not in volumes, name
        assert "seed-mappings" not in [c["name"] for c in pod["initContainers"]], name
    assert _env(_pod(docs, "sagesf-console")["containers"][0])["SAGESF_CONSOLE__MAPPINGS_READ_ONLY"] == "true"
    readme = (DEPLOY / "k8s" / "README.md").read_text()
    assert "ReadWriteMany" in readme
    assert "components/mappings-from-configmap" in readme


def test_committed_kafka_topics_equal_a_fresh_render_of_topics_yaml(tmp_path):
    out = tmp_path / "topics.yaml"
    done = run(
        [
            str(REPO_ROOT / ".venv" / "bin" / "sagesf"),
            "topics",
            "render",
            "--format",
            "strimzi",
            "-o",
            str(out),
        ]
    )
    assert done.returncode == 0, done.stderr
    assert (K8S_BASE / "topics.yaml").read_text() == out.read_text(), (
        "deploy/k8s/base/topics.yaml is stale: run "
        "`.venv/bin/sagesf topics render --format strimzi -o deploy/k8s/base/topics.yaml`"
    )
    declared = {t.name for t in load_topics(REPO_ROOT / "topics.yaml").topics}
    import yaml

    rendered = {d["spec"]["topicName"] for d in yaml.safe_load_all(out.read_text()) if d}
    assert rendered == declared


def test_committed_prometheus_rule_equals_a_fresh_render_of_alerts_yml():
    done = run([str(REPO_ROOT / ".venv" / "bin" / "python"), "deploy/k8s/render_rules.py", "--check"])
    assert done.returncode == 0, done.stderr


def test_production_overlay_talks_tls_and_sasl_to_kafka(production):
    env = _one(production, "ConfigMap", _config_map_name(production, "sagesf-env"))["data"]
    assert env["SAGESF_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["SAGESF_KAFKA__SASL_MECHANISM"].startswith("SCRAM-SHA-")
    assert env["SAGESF_REGISTRY__URL"].startswith("https://")
    for deployment in _kind(production, "Deployment"):
        assert deployment["metadata"]["namespace"] == "sagesf"
        pod = deployment["spec"]["template"]["spec"]
        [container] = pod["containers"]
        names = {v["name"] for v in container["env"]}
        assert {"SAGESF_KAFKA__SASL_PASSWORD", "SAGESF_REGISTRY__BASIC_AUTH_PASSWORD"} <= names
        mounts = [m["mountPath"] for m in container["volumeMounts"]]
        assert any(env["SAGESF_KAFKA__SSL_CA_LOCATION"].startswith(m + "/") for m in mounts), "CA not mounted"
        assert container["image"].startswith("registry.example.com/")
    clusters = {t["metadata"]["labels"]["strimzi.io/cluster"] for t in _kind(production, "KafkaTopic")}
    assert clusters == {"production"}
    bootstrap = env["SAGESF_KAFKA__BOOTSTRAP_SERVERS"]
    assert bootstrap.startswith("production-kafka-bootstrap"), "bootstrap of the same Strimzi cluster"
