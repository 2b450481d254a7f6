"""The Sage 100 connector's adapters: `SageSinkAdapter` (sage-sink's command sink) and
`SageSourceAdapter` (sage-source), on the sandbox company of the `sage_db` fixture (SQLite over
unixODBC, the real driver), with the values of data/sage.yaml."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pyodbc

from sandbox.sage100.database import SandboxDatabase, connection_string
from sandbox.sage100.simulator import SageSimulator
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
from tests.kit.orders import order_body

__all__ = ["SageSinkAdapter", "SageSourceAdapter"]


def envelope(record_id: str, source: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_time": datetime.now(UTC),
        "source_system": source,
        "source_record_id": record_id,
        "correlation_id": f"corr-{record_id}",
    }


class SageSinkAdapter:
    """Command i is a CreateSalesOrder for Salesforce opportunity `006<tag><i>` (one line of a
    seeded item for a seeded customer); its effect is the Sage orders carrying that ID."""

    component = "sage-sink"
    stage = "sage-sink"
    command_schema = "SageCommand"
    result_schema = "SageResult"

    def __init__(self, stack: Stack) -> None:
        self.db: SandboxDatabase = stack.fixture("sage_db")
        self.data = load_data("sage")["sink"]
        self.tag = uuid.uuid4().hex[:8].upper()
        self.topics = SinkTopics(
            commands=stack.new_topic("sage-commands"),
            results=stack.new_topic("sage-results"),
            dead_letters=stack.new_topic("sage-dlq"),
            group=f"conformance-sage-sink-{self.tag}",
        )
        self.odbc = self.db.odbc()
        [(division, customer_no)] = self.odbc.fetchall(
            "SELECT ARDivisionNo, CustomerNo FROM AR_Customer WHERE CustomerStatus = ? "
            "ORDER BY CustomerNo LIMIT 1",
            ["A"],
        )
        [(self.item,)] = self.odbc.fetchall(
            "SELECT ItemCode FROM CI_Item WHERE InactiveItem = ? AND ItemType = ? ORDER BY ItemCode LIMIT 1",
            ["N", "1"],
        )
        self.customer = {"ar_division_no": division, "customer_no": customer_no}
        self._commands: dict[int, Command] = {}

    def env(self) -> dict[str, str]:
        lock_timeout = float(self.data["lock_timeout"])
        return {
            "SAGESF_SAGE100__CONNECTION_STRING": connection_string(self.db.path, lock_timeout),
            "SAGESF_SAGE100__UDF_COLUMNS": json.dumps(self.db.udf_columns),
            "SAGESF_SAGE_SINK__COMMANDS_TOPIC": self.topics.commands,
            "SAGESF_SAGE_SINK__RESULTS_TOPIC": self.topics.results,
            "SAGESF_SAGE_SINK__DEAD_LETTER_TOPIC": self.topics.dead_letters,
            "SAGESF_SAGE_SINK__GROUP_ID": self.topics.group,
            "SAGESF_SAGE_SINK__CREDIT_ENABLED": "false",
            "SAGESF_SAGE_SINK__CONSUMER_CONFIG": json.dumps(FAST_CONSUMER_GROUP),
            "SAGESF_SAGE100__BREAKER_MAX_BACKOFF": str(self.data["breaker_max_backoff"]),
        }

    def opportunity(self, i: int) -> str:
        return f"006{self.tag}{i:07d}"

    def command(self, i: int) -> Command:
        if i not in self._commands:
            self._commands[i] = self._order(i, self.item)
        return self._commands[i]

    def refused(self, i: int) -> Refused:
        return Refused(self._order(i, self.data["missing_item"]), tuple(self.data["missing_item_reason"]))

    def effects(self, i: int) -> int:
        [(orders,)] = self.odbc.fetchall(
            "SELECT COUNT(*) FROM SO_SalesOrderHeader WHERE UDF_SALESFORCE_ID = ?", [self.opportunity(i)]
        )
        return int(orders)

    @contextlib.contextmanager
    def refusing(self) -> Iterator[None]:
        """Sage locked: a transaction of the test's own holds SQLite's write lock."""
        blocker = pyodbc.connect(self.db.connection_string, autocommit=False)
        try:
            blocker.execute(self.data["lock_statement"])
            yield
        finally:
            blocker.rollback()
            blocker.close()

    def close(self) -> None:
        self.odbc.close()

    def _order(self, i: int, item: str) -> Command:
        opportunity = self.opportunity(i)
        quantity, price = Decimal(self.data["quantity"]), Decimal(self.data["unit_price"])
        amount = (quantity * price).quantize(Decimal("0.01"))
        line = {
            "line_no": 1,
            "salesforce_line_id": f"00k{self.tag}{i:07d}",
            "item_code": item,
            "product_code": item,
            "quantity_ordered": quantity,
            "unit_price": price,
            "extension_amount": amount,
        }
        order = {
            "envelope": envelope(opportunity, "SALESFORCE"),
            "salesforce_opportunity_id": opportunity,
            "customer": self.customer,
            "status": "NEW",
            "source_status": "Closed Won",
            "order_date": date.today(),
            "customer_po_no": f"PO-{i}",
            "currency_code": "USD",
            "total_amount": amount,
            "lines": [line],
        }
        command = {
            "envelope": envelope(opportunity, "SAGESF"),
            "command_id": f"cmd-{self.tag}-{i}",
            "command": ("io.sagesf.canonical.CreateSalesOrder", order_body(order)),
        }
        return Command(opportunity, command)


class SageSourceAdapter:
    """Change i is a new CI_Item row `CONF-<i>` saved by a Sage user; its record is on item.v1
    keyed by the item code. Own changes are saved by the integration user, unmappable ones have
    an ItemType Sage does not have."""

    component = "sage-source"
    stage = "sage-source"

    def __init__(self, stack: Stack) -> None:
        self.db: SandboxDatabase = stack.fixture("sage_db")
        self.data = load_data("sage")["source"]
        self.name = f"sage-source-{uuid.uuid4().hex[:8]}"
        self.items = stack.new_topic("item")
        self.topics = SourceTopics(
            dead_letters=stack.new_topic("sage-source-dlq"),
            positions=stack.new_topic("positions", config={"cleanup.policy": "compact"}),
        )
        self.simulator = SageSimulator(self.db)
        self._lock = threading.Lock()  # one ODBC connection, changes from the test and its writer thread

    def env(self) -> dict[str, str]:
        prefix = "SAGESF_SAGE100__"
        return {
            f"{prefix}CONNECTION_STRING": connection_string(self.db.path, float(self.data["lock_timeout"])),
            f"{prefix}UDF_COLUMNS": json.dumps(self.db.udf_columns),
            f"{prefix}INTEGRATION_USER_KEY": self.data["integration_user"],
            f"{prefix}SOURCE__COMPONENT": self.name,
            f"{prefix}SOURCE__TABLES": json.dumps(self.data["tables"]),
            f"{prefix}SOURCE__TOPICS": json.dumps({"item.v1": self.items}),
            f"{prefix}SOURCE__POSITIONS_TOPIC": self.topics.positions,
            f"{prefix}SOURCE__DEAD_LETTER_TOPIC": self.topics.dead_letters,
            f"{prefix}SOURCE__POLL_INTERVAL": str(self.data["poll_interval"]),
            f"{prefix}BREAKER_MAX_BACKOFF": str(self.data["breaker_max_backoff"]),
        }

    def ready(self, health: dict[str, Any]) -> bool:
        stage = health.get("components", {}).get(self.stage, {})
        return bool(stage.get("status") == "ok")

    def change(self, i: int) -> Change:
        return self._item(f"CONF-{i:04d}", self.data["user"])

    def own_change(self, i: int) -> Change:
        return self._item(f"OWN-{i:04d}", self.data["integration_user"])

    def unmappable(self, i: int) -> Unmappable:
        change = self._item(f"ODD-{i:04d}", self.data["user"], ItemType=self.data["unmappable_item_type"])
        return Unmappable(change, change.key.encode(), tuple(self.data["unmappable_reason"]))

    def close(self) -> None:
        self.simulator.close()

    def _item(self, code: str, user: str, **columns: str) -> Change:
        with self._lock:
            self.simulator.write_row("CI_Item", {"ItemCode": code, **self.data["item"], **columns}, user=user)
        return Change(self.items, "Item", code)
