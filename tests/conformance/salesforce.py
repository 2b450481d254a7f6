"""The Salesforce connector's adapters: `SalesforceSinkAdapter` (salesforce-sink) and
`SalesforceSourceAdapter` (salesforce-source), on the emulator of the `salesforce_emulator`
fixture (a real HTTP server, simple-salesforce as the client), with the values of
data/salesforce.yaml."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import yaml

from connectors.salesforce.soql import quote
from connectors.salesforce.source_mapping import DEFAULT_MAPPING_FILE
from sandbox.salesforce.harness import RunningEmulator
from tests.conformance.protocol import (
    FAST_CONSUMER_GROUP,
    Change,
    Command,
    Refused,
    SinkTopics,
    SourceTopics,
    Stack,
    Unmappable,
    load_data,
)

__all__ = ["SalesforceSinkAdapter", "SalesforceSourceAdapter"]

PREFIX = "SAGESF_SALESFORCE__"


def login_env(emulator: RunningEmulator, client: str) -> dict[str, str]:
    """The password flow against the emulator, stamping `client` on every call."""
    return {**emulator.login_env(), f"{PREFIX}CALL_OPTIONS_CLIENT": client}


class SalesforceSinkAdapter:
    """Command i upserts Account `ExternalID__c = 01-<tag><i>`; its effect is the Accounts
    carrying that external ID, counted by a user's SOQL query."""

    component = "salesforce-sink"
    stage = "salesforce-sink"
    command_schema = "SalesforceCommand"
    result_schema = "SalesforceResult"

    def __init__(self, stack: Stack) -> None:
        self.emulator: RunningEmulator = stack.fixture("salesforce_emulator")
        self.emulator.admin("DELETE", "/admin/faults")
        self.shared = load_data("salesforce")
        self.data = self.shared["sink"]
        self.tag = uuid.uuid4().hex[:8].upper()
        self.topics = SinkTopics(
            commands=stack.new_topic("sf-commands"),
            results=stack.new_topic("sf-results"),
            dead_letters=stack.new_topic("sf-dlq"),
            group=f"conformance-sf-sink-{self.tag}",
        )
        self.sf = self.emulator.connect()
        self._commands: dict[int, Command] = {}

    def env(self) -> dict[str, str]:
        return {
            **login_env(self.emulator, self.shared["integration_client"]),
            f"{PREFIX}BATCH_WINDOW": str(self.data["batch_window"]),
            f"{PREFIX}RATE_LIMIT_PAUSE": str(self.data["rate_limit_pause"]),
            f"{PREFIX}SINK__COMMANDS_TOPIC": self.topics.commands,
            f"{PREFIX}SINK__RESULTS_TOPIC": self.topics.results,
            f"{PREFIX}SINK__DEAD_LETTER_TOPIC": self.topics.dead_letters,
            f"{PREFIX}SINK__GROUP_ID": self.topics.group,
            f"{PREFIX}SINK__CONSUMER_CONFIG": json.dumps(FAST_CONSUMER_GROUP),
        }

    def external_id(self, i: int) -> str:
        return f"01-{self.tag}{i}"

    def command(self, i: int) -> Command:
        if i not in self._commands:
            self._commands[i] = self._upsert(i, {"Name": f"Conformance {self.tag} {i}"})
        return self._commands[i]

    def refused(self, i: int) -> Refused:
        fields = {"Name": f"Refused {self.tag} {i}", **self.data["refused_fields"]}
        return Refused(self._upsert(i, fields), tuple(self.data["refused_reason"]))

    def effects(self, i: int) -> int:
        field, value = self.data["external_id_field"], quote(self.external_id(i))
        found = self.sf.query(f"SELECT Id FROM {self.data['sobject']} WHERE {field} = {value}")  # noqa: S608
        return int(found["totalSize"])

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """A rate-limit storm: 403 REQUEST_LIMIT_EXCEEDED on every REST call until cleared."""
        self.emulator.admin("POST", "/admin/faults/storm", {"seconds": self.data["storm_seconds"]})
        try:
            yield
        finally:
            self.emulator.admin("DELETE", "/admin/faults")

    def close(self) -> None:
        self.emulator.admin("DELETE", "/admin/faults")

    def _upsert(self, i: int, fields: dict[str, Any]) -> Command:
        key = f"{self.data['sobject']}/{self.external_id(i)}"
        command_id = f"cmd-{self.tag}-{i}-{uuid.uuid4().hex[:6]}"
        return Command(
            key,
            {
                "envelope": {
                    "event_id": str(uuid.uuid4()),
                    "event_time": datetime.now(UTC),
                    "source_system": "SAGESF",
                    "source_record_id": key,
                    "correlation_id": f"corr-{command_id}",
                },
                "command_id": command_id,
                "operation": "UPSERT",
                "sobject": self.data["sobject"],
                "record_id": None,
                "external_id_field": self.data["external_id_field"],
                "external_id": self.external_id(i),
                "fields": fields,
                "source_event_time": None,
            },
        )


class SalesforceSourceAdapter:
    """Change i is a new Account created by a user; its record is on customer.v1 keyed by the
    Account ID. Own changes are made with `Sforce-Call-Options: client=<integration client>`,
    unmappable ones carry a Type the source mapping's value map lacks."""

    component = "salesforce-source"
    stage = "salesforce-source"

    def __init__(self, stack: Stack) -> None:
        self.emulator: RunningEmulator = stack.fixture("salesforce_emulator")
        self.emulator.admin("DELETE", "/admin/faults")
        self.shared = load_data("salesforce")
        self.data = self.shared["source"]
        self.tag = uuid.uuid4().hex[:8]
        self.customers = stack.new_topic("customer")
        self.topics = SourceTopics(
            dead_letters=stack.new_topic("sf-source-dlq"),
            positions=stack.new_topic("positions", config={"cleanup.policy": "compact"}),
        )
        self.user = self.emulator.connect()
        self.integration = self.emulator.connect(client=self.shared["integration_client"])
        mapped = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())["value_maps"]["account_type"]["values"]
        assert self.data["unmappable_type"] not in mapped, "data/salesforce.yaml: that Type is mapped now"

    def env(self) -> dict[str, str]:
        return {
            **login_env(self.emulator, self.shared["integration_client"]),
            f"{PREFIX}SOURCE__COMPONENT": f"salesforce-source-{self.tag}",
            f"{PREFIX}SOURCE__CHANNELS": json.dumps(self.data["channels"]),
            f"{PREFIX}SOURCE__TOPICS": json.dumps({"customer.v1": self.customers}),
            f"{PREFIX}SOURCE__POSITIONS_TOPIC": self.topics.positions,
            f"{PREFIX}SOURCE__DEAD_LETTER_TOPIC": self.topics.dead_letters,
            f"{PREFIX}SOURCE__START_LOOKBACK_SECONDS": "0",
            f"{PREFIX}SOURCE__CONNECTION_TIMEOUT": "5",
            f"{PREFIX}SOURCE__RETRY_MAXIMUM": "2",
        }

    def ready(self, health: dict[str, Any]) -> bool:
        streaming = health.get("components", {}).get("salesforce-streaming", {})
        return bool(streaming.get("status") == "ok")

    def change(self, i: int) -> Change:
        return self._account(self.user, f"Conformance {self.tag} {i}")

    def own_change(self, i: int) -> Change:
        return self._account(self.integration, f"Written by the integration {self.tag} {i}")

    def unmappable(self, i: int) -> Unmappable:
        change = self._account(self.user, f"Odd type {self.tag} {i}", Type=self.data["unmappable_type"])
        return Unmappable(change, change.key.encode(), tuple(self.data["unmappable_reason"]))

    def close(self) -> None:
        self.emulator.admin("DELETE", "/admin/faults")

    def _account(self, client: Any, name: str, **fields: str) -> Change:
        account = client.Account.create({"Name": name, **fields})["id"]
        return Change(self.customers, "Customer", str(account))
