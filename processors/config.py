"""Configuration of the processors (the faust app): env prefix `SAGESF_PROCESSORS__`.

Owns the typed settings of `sagesf run processors` that are not shared with other
processes: the faust app id, where the mapping files and the systems' metadata are, topic name
overrides, the consumer-group timings, the inventory flush interval, the re-sends of orders Sage
has not answered (interval and limit) and the retry bound.
Kafka, the schema registry and the metrics endpoint come from sagesf.config
(`SAGESF_KAFKA__*`, `SAGESF_REGISTRY__*`, `SAGESF_METRICS__*`).

How it works: pydantic-settings reads `SAGESF_PROCESSORS__<FIELD>` (dicts as JSON, e.g.
`SAGESF_PROCESSORS__TOPICS='{"salesorder.v1": "tenant1.salesorder.v1"}'`) or the env file named
by `SAGESF_ENV_FILE`; `sagesf.config.load_settings` turns a bad value into `ConfigError` naming
the variable.

The systems' metadata the mappings are checked against defaults to what `sagesf mappings pull`
writes: mappings/metadata/salesforce.yaml and sage100.yaml (relative to the working directory).
Limits: set a path empty (`SAGESF_PROCESSORS__SALESFORCE_METADATA=`) to check without that
system's metadata (the worker logs which checks it skipped).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sagesf import topic_names
from sagesf.config import known_topic_renames

__all__ = ["ENV_PREFIX", "TOPICS", "ProcessorSettings"]

ENV_PREFIX = "SAGESF_PROCESSORS__"

# Every topic the processors read or write, by its name in topics.yaml.
TOPICS = (
    topic_names.SALES_ORDERS,
    topic_names.CUSTOMERS,
    topic_names.ITEMS,
    topic_names.INVENTORY,
    topic_names.ORDER_STATUS,
    topic_names.SAGE_COMMANDS,
    topic_names.SAGE_RESULTS,
    topic_names.SALESFORCE_COMMANDS,
    topic_names.dead_letter_topic("orders"),
    topic_names.dead_letter_topic("customers"),
    topic_names.dead_letter_topic("status"),
    topic_names.dead_letter_topic("inventory"),
    topic_names.LINK_STATE,
)


class ProcessorSettings(BaseSettings):
    """Settings of the processors worker."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    # faust app id: the consumer group and the prefix of the app's changelog topics
    app_id: str = Field(default="sagesf-processors", pattern=r"^[A-Za-z0-9._-]+$")
    mappings_dir: Path = Path("mappings")
    # the org's objects and fields, and the Sage 100 columns (`sagesf mappings pull` writes both)
    salesforce_metadata: Path | None = Path("mappings/metadata/salesforce.yaml")
    sage_metadata: Path | None = Path("mappings/metadata/sage100.yaml")
    mappings_reload_interval: float = Field(default=10.0, ge=0)  # seconds between checks for edits; 0: never
    # a candidate mapping directory run in shadow on all live traffic: differences counted, nothing
    # produced (processors/shadow.py)
    shadow_mappings_dir: Path | None = None
    topics: dict[str, str] = Field(default_factory=dict)  # topics.yaml name -> the topic to use instead
    replication_factor: int = Field(default=3, ge=1)  # of the changelog topics faust creates
    data_dir: Path = Path(tempfile.gettempdir()) / "sagesf-processors"  # faust's local app dir
    auto_offset_reset: Literal["earliest", "latest"] = "earliest"  # a new group starts here
    session_timeout: float = Field(default=30.0, gt=0)  # seconds
    heartbeat_interval: float = Field(default=3.0, gt=0)
    rebalance_timeout: float = Field(default=60.0, gt=0)
    commit_interval: float = Field(default=2.0, gt=0)
    inventory_flush_interval: float = Field(default=2.0, gt=0)  # seconds stock changes are coalesced
    held_order_sweep_interval: float = Field(default=30.0, gt=0)  # re-check held orders this often
    # an order (with its new customer, if it brings one) Sage has not answered is sent again after
    # this many seconds, then after twice as long each time (at least held_order_sweep_interval)
    order_resend_after: float = Field(default=300.0, gt=0)
    # re-sends before giving up: Error on the Opportunity, a dead letter, an alert (0: never re-send)
    order_resend_limit: int = Field(default=5, ge=0)
    order_retention_days: float = Field(default=180.0, gt=0)  # failed orders, Sage order numbers
    retry_limit_seconds: float = Field(default=300.0, gt=0)  # retriable failures, then the worker stops
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @field_validator("salesforce_metadata", "sage_metadata", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, value: dict[str, str]) -> dict[str, str]:
        return known_topic_renames(value, TOPICS, "the processors")

    def topic(self, name: str) -> str:
        """The topic to use for `name` (a topics.yaml name)."""
        return self.topics.get(name, name)
