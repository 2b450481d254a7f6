"""Settings of `sagesf link ...` (prefix SAGESF_LINK__), beside the core's Kafka and registry ones."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from linking.effects import LinkFields
from linking.matcher import Thresholds
from sagesf import topic_names
from sagesf.config import ENV_PREFIX, known_topic_renames

__all__ = ["LinkSettings"]

TOPICS = (
    topic_names.CUSTOMERS,
    topic_names.ITEMS,
    topic_names.LINK_STATE,
    topic_names.SAGE_COMMANDS,
    topic_names.SALESFORCE_COMMANDS,
)


class LinkSettings(BaseSettings):
    """How sure a pair must be to link by itself, and where links go."""

    model_config = SettingsConfigDict(
        env_prefix=f"{ENV_PREFIX}LINK__", env_nested_delimiter="__", extra="ignore", case_sensitive=False
    )

    auto_threshold: float = Field(default=0.999, gt=0, le=1)  # match probability that links by itself
    review_threshold: float = Field(default=0.5, gt=0, le=1)  # below it a pair is not suggested
    margin_bits: float = Field(default=10.0, ge=0)  # a rival pair this close (log2 evidence) needs review
    account_field: str = "ExternalID__c"  # customers.yaml external_id
    product_field: str = "Sage_Item_Code__c"  # products.yaml inventory.external_id_field
    read_timeout: float = Field(default=30.0, gt=0)  # seconds without progress while reading a topic
    topics: dict[str, str] = Field(default_factory=dict)  # topics.yaml name -> the topic to use instead

    @field_validator("topics")
    @classmethod
    def _known_topics(cls, value: dict[str, str]) -> dict[str, str]:
        return known_topic_renames(value, TOPICS, "the linker")

    @model_validator(mode="after")
    def _thresholds_in_order(self) -> LinkSettings:
        if self.review_threshold > self.auto_threshold:
            raise ValueError(
                f"{ENV_PREFIX}LINK__REVIEW_THRESHOLD ({self.review_threshold}) is above "
                f"{ENV_PREFIX}LINK__AUTO_THRESHOLD ({self.auto_threshold}): nothing would wait for review"
            )
        return self

    def topic(self, name: str) -> str:
        return self.topics.get(name, name)

    @property
    def thresholds(self) -> Thresholds:
        return Thresholds(self.auto_threshold, self.review_threshold, self.margin_bits)

    @property
    def fields(self) -> LinkFields:
        return LinkFields(self.account_field, self.product_field)
