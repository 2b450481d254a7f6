"""The Kafka and schema registry clients a command makes from the settings.

Secrets stay in the settings objects and go only to the clients; nothing here prints them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from sagesf.cli.output import fail
from sagesf.config import Settings
from sagesf.topic_scan import ScanTimeout, TopicMissing, TopicReader

__all__ = ["admin_client", "registry_client", "topic_reader"]


def admin_client(settings: Settings) -> AdminClient:
    conf: dict[str, str | int | float | bool] = {**settings.kafka.client_config()}
    # librdkafka would log every failed connection attempt; the command reports the error itself
    conf["log_level"] = 2
    return AdminClient(conf)


def registry_client(settings: Settings) -> SchemaRegistryClient:
    return SchemaRegistryClient(dict(settings.registry.client_config()))


@contextmanager
def topic_reader(settings: Settings, timeout: float) -> Iterator[TopicReader]:
    """A TopicReader; Kafka and scan failures become a one-line error and exit code 2."""
    try:
        with TopicReader(settings.kafka, timeout=timeout) as reader:
            yield reader
    except TopicMissing as exc:
        raise fail(f"topic {exc.args[0]} does not exist on the cluster (see `sagesf topics diff`)") from None
    except (KafkaException, ScanTimeout) as exc:
        raise fail(f"Kafka at {settings.kafka.bootstrap_servers}: {exc}") from None
