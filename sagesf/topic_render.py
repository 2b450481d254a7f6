"""topics.yaml as Kubernetes resources: Strimzi KafkaTopic, one YAML document per topic.

`sagesf topics render` (sagesf/cli/topics.py) is the command line.
"""

from __future__ import annotations

from typing import Any

import yaml

from sagesf.topics_file import TopicsFile

__all__ = ["render"]


def render(
    topics: TopicsFile,
    format: str = "strimzi",
    *,
    cluster: str = "my-cluster",
    replication_factor: int | None = None,
) -> str:
    """KafkaTopic resources (Strimzi, kafka.strimzi.io/v1beta2) as multi-document YAML."""
    if format != "strimzi":
        raise ValueError(f"unknown format {format!r}; supported: strimzi")
    docs = []
    for topic in topics.resolved(replication_factor):
        spec = topics.topic(topic.name)
        metadata: dict[str, Any] = {
            "name": topic.name,
            "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "sagesf"},
        }
        annotations = {}
        if spec.description:
            annotations["sagesf.io/description"] = spec.description
        for subject, schema in spec.subjects.items():
            annotations[f"sagesf.io/{'key' if subject.endswith('-key') else 'value'}-schema"] = schema
        if annotations:
            metadata["annotations"] = annotations
        docs.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                "metadata": metadata,
                "spec": {
                    "topicName": topic.name,
                    "partitions": topic.partitions,
                    "replicas": topic.replication_factor,
                    "config": topic.configs,
                },
            }
        )
    header = f"# Generated from {topics.source} by `sagesf topics render`; edit that file, not this one.\n"
    return header + yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True, width=110)
