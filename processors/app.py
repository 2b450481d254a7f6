"""The processors: one faust-streaming app with the orders, customers, status, inventory and credit agents.

What it owns: `Processors`, which builds the faust app and wires everything else to it:
- agents, one per input topic, each reading raw bytes (key and value serializer `raw`) so that
  decoding happens here, with sagesf.serde, where a failure can be dead-lettered:
  salesorder.v1 (orders), sage.results.v1 (results), customer.v1 (customers: the cross-reference
  and the customer sync both ways, processors/customers.py, behind the link guard of
  processors/customer_directory.py), item.v1 (items),
  orderstatus.v1 (status), inventory.v1 (inventory), credit.replies.v1 (credit: Sage's answers
  to credit checks, stored on the requester's record in Salesforce, processors/credit.py),
  salesforce.results.v1 (credit-results: that record written -> the reply event naming it) and
  link.state.v1 (links: record linking's decisions, JSON, processors/link_review.py);
- the changelog-backed tables (processors/tables.py, `Tables` in processors/state.py);
- timers: the inventory flush, the held-order sweep, the mapping reload;
- the outputs: commands to sage.commands.v1 and salesforce.commands.v1 (Avro, Confluent framing,
  string keys as topics.yaml says), dead letters to dlq.<stage>.v1 through
  sagesf.dead_letter_writer.DeadLetterWriter (original bytes, Kafka Connect error headers).

How one record is handled (`_handle`): decode key and value -> run the stage's logic (orders.py,
customer_directory.py, customers.py, status.py, inventory.py, credit.py) -> produce its commands
and wait until Kafka acknowledged every one -> write its dead letters (acknowledged too) -> only
then does the agent take the next record, so faust commits the offset after the effects
(at-least-once; every command carries a deterministic command_id and every effect downstream is
idempotent). Errors:
- a key or value that cannot be decoded, a `Permanent` error, or any unexpected exception (a bug,
  counted as such) dead-letters that one record and the stream goes on;
- `Retriable` (registry or Kafka unreachable) is retried with exponential backoff and jitter for
  up to `retry_limit_seconds`; after that the worker stops with an error, so its supervisor
  restarts it and the uncommitted records are redelivered.
Metrics (processors/metrics.py) and /healthz come from sagesf.metrics: faust's own web server is
off. A mapping edit is picked up by the reload timer; an invalid edit keeps the previous mappings
and marks the health component `mappings` degraded.

Limits: faust's exactly-once mode is not used (it has open bugs); processing is at-least-once.
The first decode of each schema id and the first encode per subject ask the registry
synchronously (once per process). Timers that produce run on the group leader only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import faust
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from confluent_kafka.schema_registry import SchemaRegistryClient

from processors.config import ProcessorSettings
from processors.credit import CreditReplies
from processors.customers import CustomerSync
from processors.inventory import InventoryPipeline
from processors.link_review import LinkReview
from processors.mapping_files import MappingError, load_mappings, reload_changed
from processors.mapping_model import Mappings
from processors.metrics import (
    COMMANDS,
    HELD_ORDERS,
    INVENTORY_PENDING,
    MAPPING_RELOADS,
    RECORD_SECONDS,
    RECORDS,
    RETRIES,
)
from processors.orders import OrderPipeline
from processors.shadow import ShadowMappings
from processors.state import MappingsRef, Origin, Step, Tables
from processors.status import StatusPipeline
from processors.tables import SharedTable, shared_table
from processors.transport import SeekingApp
from sagesf import topic_names
from sagesf.config import KafkaSettings, Settings
from sagesf.dead_letter_writer import (
    STAGE_KEY_CONVERTER,
    STAGE_TRANSFORMATION,
    STAGE_VALUE_CONVERTER,
    DeadLetterWriter,
    FailedRecord,
)
from sagesf.errors import Permanent, Retriable
from sagesf.group_lag import GroupLag
from sagesf.metrics import RECORDS_IN, Health
from sagesf.producer import ConfirmedProducer
from sagesf.serde import AvroSerde, SerdeError

log = logging.getLogger(__name__)

__all__ = ["Processors", "faust_credentials"]

T = TypeVar("T")
Handler = Callable[[str | None, Any, Origin], Step]

# stage -> its dead-letter topic (topics.yaml name); results and items dead-letter with the orders
DLQ_TOPICS = {
    "orders": topic_names.dead_letter_topic("orders"),
    "results": topic_names.dead_letter_topic("orders"),
    "items": topic_names.dead_letter_topic("orders"),
    "customers": topic_names.dead_letter_topic("customers"),
    "status": topic_names.dead_letter_topic("status"),
    "inventory": topic_names.dead_letter_topic("inventory"),
    "credit": topic_names.dead_letter_topic("credit"),
    "credit-results": topic_names.dead_letter_topic("credit"),
    "links": topic_names.dead_letter_topic("customers"),
}
JSON = "json"  # the schema name of a topic whose keys are UTF-8 text and values JSON (link.state.v1)


class _Converter(Permanent):
    """A key or value that cannot be decoded (the Connect stage says which)."""

    def __init__(self, error: SerdeError, step: str) -> None:
        super().__init__(str(error))
        self.step = step


class _Fatal(Exception):
    """A retriable failure lasted longer than the retry limit: the worker must stop."""


def faust_credentials(kafka: KafkaSettings) -> Any:
    """faust credentials for SSL / SASL clusters (None for PLAINTEXT); secrets go to the client only."""
    context = None
    if kafka.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=kafka.ssl_ca_location)
    if kafka.security_protocol.startswith("SASL"):
        assert kafka.sasl_password is not None  # checked by KafkaSettings
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


class Processors:
    """The faust app of the processors, its tables, agents and outputs (see the module doc)."""

    def __init__(
        self,
        settings: ProcessorSettings,
        core: Settings,
        mappings: Mappings,
        health: Health | None = None,
        registry: SchemaRegistryClient | None = None,
    ) -> None:
        self.settings = settings
        self.core = core
        self.health = health or Health()
        self.mappings_ref = MappingsRef(mappings)
        self.shadow = (
            ShadowMappings(settings.shadow_mappings_dir, settings.salesforce_metadata, settings.sage_metadata)
            if settings.shadow_mappings_dir is not None
            else None
        )
        self.registry = registry or SchemaRegistryClient(core.registry.client_config())
        self._serdes: dict[tuple[str, str], AvroSerde] = {}
        self._out: dict[str, Any] = {}
        self._rebuilt = False
        self._dlq_lock: asyncio.Lock | None = None
        self.app = self._faust_app()
        self.tables = Tables(
            customers=(
                xref := shared_table(self.app, "customer-xref", "Account ID -> ARDivisionNo/CustomerNo")
            ),
            accounts=shared_table(self.app, "pending-accounts", "Account ID -> Salesforce Customer record"),
            items=shared_table(self.app, "item-xref", "ItemCode -> active, product code, price"),
            products=shared_table(self.app, "product-xref", "ProductCode -> ItemCode"),
            orders=shared_table(self.app, "order-state", "Salesforce order ID -> order state"),
            held=shared_table(
                self.app, "held-orders", "Account ID -> the order bringing the new customer, orders waiting"
            ),
            order_numbers=shared_table(self.app, "order-numbers", "SalesOrderNo -> Salesforce record IDs"),
            inventory=(
                levels := shared_table(self.app, "inventory-levels", "ItemCode/WarehouseCode -> stock")
            ),
            inventory_sent=shared_table(self.app, "inventory-sent", "ItemCode -> stock fields last sent"),
            sage_customers=shared_table(
                self.app, "sage-customers", "ARDivisionNo-CustomerNo -> Account fields known and written"
            ),
            link_state=(
                pairs := shared_table(self.app, "link-state", "record linking's pair key -> its state")
            ),
        )
        self.orders = OrderPipeline(
            self.mappings_ref,
            self.tables,
            decode_order=self.serde(topic_names.SALES_ORDERS, "SalesOrder").decode,
            decode_customer=self.serde(topic_names.CUSTOMERS, "Customer").decode,
            resend_after=max(settings.order_resend_after, settings.held_order_sweep_interval),
            resend_limit=settings.order_resend_limit,
            retention_days=settings.order_retention_days,
        )
        self.customer_directory = self.orders.customer_directory
        xref.add_listener(self.customer_directory.links.changed)  # links other workers write
        pairs.add_listener(self.customer_directory.review.changed)
        self.link_review = LinkReview(self.tables, self.customer_directory)
        self.status = StatusPipeline(self.orders)
        self.customers = CustomerSync(self.mappings_ref, self.customer_directory)
        self.credit = CreditReplies(self.mappings_ref)
        self.inventory = InventoryPipeline(self.mappings_ref, self.tables)
        levels.add_listener(self.inventory.changed)
        self._dlq_producer = ConfirmedProducer(core.kafka)
        self._dlq = {
            stage: DeadLetterWriter(self._dlq_producer, stage, topic=settings.topic(topic))
            for stage, topic in DLQ_TOPICS.items()
        }
        self._register()

    # --- the faust app ----------------------------------------------------------------------

    def _faust_app(self) -> Any:
        settings, kafka = self.settings, self.core.kafka
        data_dir = settings.data_dir / settings.app_id
        data_dir.mkdir(parents=True, exist_ok=True)
        return SeekingApp(
            settings.app_id,
            broker=[f"kafka://{host.strip()}" for host in kafka.bootstrap_servers.split(",") if host.strip()],
            broker_credentials=faust_credentials(kafka),
            broker_client_id=f"{kafka.client_id}-processors",
            broker_session_timeout=settings.session_timeout,
            broker_heartbeat_interval=settings.heartbeat_interval,
            broker_rebalance_timeout=settings.rebalance_timeout,
            broker_commit_interval=settings.commit_interval,
            consumer_auto_offset_reset=settings.auto_offset_reset,
            processing_guarantee="at_least_once",
            producer_acks=-1,
            store="memory://",
            GlobalTable=SharedTable,
            table_standby_replicas=0,
            topic_replication_factor=settings.replication_factor,
            topic_allow_declare=True,
            web_enabled=False,
            autodiscover=False,
            datadir=str(data_dir),
        )

    def serde(self, topic: str, schema: str) -> AvroSerde:
        """The serde of `topic`'s values (schema name) or keys (`key`), cached."""
        found = self._serdes.get((topic, schema))
        if found is None:
            auto = self.core.registry.auto_register
            actual = self.settings.topic(topic)
            if schema == "key":
                found = AvroSerde.string_key(self.registry, actual, auto_register=auto)
            else:
                found = AvroSerde.canonical(self.registry, schema, actual, auto_register=auto)
            self._serdes[(topic, schema)] = found
        return found

    def _topic(self, topic: str) -> Any:
        return self.app.topic(
            self.settings.topic(topic),
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
        )

    def _register(self) -> None:
        sources: list[tuple[str, str, str, Handler]] = [
            ("orders", topic_names.SALES_ORDERS, "SalesOrder", self.orders.on_sales_order),
            ("results", topic_names.SAGE_RESULTS, "SageResult", self.orders.on_sage_result),
            (
                "customers",
                topic_names.CUSTOMERS,
                "Customer",
                self.customer_directory.guarded(self.customers.on_customer),
            ),
            ("items", topic_names.ITEMS, "Item", self.orders.on_item),
            (
                "status",
                topic_names.ORDER_STATUS,
                "OrderStatusChange",
                lambda k, v, o: self.status.on_status_change(k, v),
            ),
            (
                "inventory",
                topic_names.INVENTORY,
                "InventoryLevel",
                lambda k, v, o: self.inventory.on_level(k, v),
            ),
            ("credit", topic_names.CREDIT_REPLIES, "CreditCheckReply", self.credit.on_reply),
            (
                "credit-results",
                topic_names.SALESFORCE_RESULTS,
                "SalesforceResult",
                self.credit.on_salesforce_result,
            ),
            ("links", topic_names.LINK_STATE, JSON, self.link_review.on_link_state),
        ]
        for stage, topic, schema, handler in sources:
            self.app.agent(self._topic(topic), name=f"sagesf-{stage}")(
                self._agent(stage, topic, schema, handler)
            )
        settings = self.settings
        self.app.timer(settings.inventory_flush_interval, on_leader=True, name="inventory-flush")(
            self._flush_inventory
        )
        self.app.timer(settings.held_order_sweep_interval, on_leader=True, name="held-sweep")(self._sweep)
        self.app.timer(1.0, name="tables-health")(self._watch_recovery)
        # consumer lag per stage, for /metrics and for /healthz: a stalled agent with records
        # waiting turns the worker unhealthy, so a liveness probe restarts it
        self._lag = GroupLag(
            self.core.kafka,
            self.settings.app_id,
            {self.settings.topic(topic): stage for stage, topic, _, _ in sources},
            self.health,
        )
        self.app.timer(5.0, name="consumer-lag")(self._measure_lag)
        if settings.mappings_reload_interval > 0:
            self.app.timer(settings.mappings_reload_interval, name="mappings-reload")(self._reload_mappings)

    def _agent(
        self, stage: str, topic: str, schema: str, handler: Handler
    ) -> Callable[[Any], Awaitable[None]]:
        async def agent(stream: Any) -> None:
            async for event in stream.events():
                await self._handle(stage, topic, schema, handler, event)

        agent.__name__ = agent.__qualname__ = f"{stage}_agent"
        return agent

    # --- one record -------------------------------------------------------------------------

    async def _handle(self, stage: str, topic: str, schema: str, handler: Handler, event: Any) -> None:
        msg = event.message
        origin = Origin(
            topic=str(msg.topic),
            partition=int(msg.partition),
            offset=int(msg.offset),
            key=msg.key,
            value=msg.value,
            headers=tuple(
                (str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in (msg.headers or ())
            ),
        )
        RECORDS_IN.labels(stage, origin.topic).inc()
        started = time.monotonic()

        async def compute() -> Step:
            try:
                key = self._decode_key(topic, schema, origin.key)
            except SerdeError as exc:
                raise _Converter(exc, STAGE_KEY_CONVERTER) from exc
            if origin.value is None:
                return Step("tombstone")
            try:
                value = self._decode_value(topic, schema, origin.value)
            except SerdeError as exc:
                raise _Converter(exc, STAGE_VALUE_CONVERTER) from exc
            if self.shadow is not None:
                self.shadow.observe(topic, value, self.mappings_ref.current)
            return handler(key, value, origin)

        try:
            try:
                step = await self._retry(stage, f"{stage}: decode and process", compute)
            except Permanent as exc:
                step = Step(
                    "dead_lettered" if not isinstance(exc, _Converter) else "undecodable",
                    dead_letters=[(origin, exc)],
                )
            except _Fatal:
                raise
            except Exception as exc:  # a bug: one record must not stall the partition
                log.exception(
                    "%s: unexpected error on %s[%d]@%d", stage, origin.topic, origin.partition, origin.offset
                )
                step = Step("error", dead_letters=[(origin, exc)])
            await self._finish(stage, step, origin)
        except _Fatal as exc:
            log.critical(
                "%s: giving up: %s; stopping the worker (uncommitted records are redelivered)", stage, exc
            )
            await self.app.crash(exc)
            raise
        RECORDS.labels(stage, step.outcome).inc()
        RECORD_SECONDS.labels(stage).observe(time.monotonic() - started)
        self.health.progress(stage)

    def _decode_key(self, topic: str, schema: str, key: bytes | None) -> str | None:
        if key is None:
            return None
        if schema == JSON:
            try:
                return key.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SerdeError(f"a key that is not UTF-8 text: {exc}") from None
        return str(self.serde(topic, "key").decode(key))

    def _decode_value(self, topic: str, schema: str, value: bytes) -> Any:
        if schema == JSON:
            try:
                return json.loads(value)
            except ValueError as exc:
                raise SerdeError(f"a value that is not JSON: {exc}") from None
        return self.serde(topic, schema).decode(value)

    async def _finish(self, stage: str, step: Step, origin: Origin | None) -> None:
        """Produce the step's records (acknowledged), then its dead letters (acknowledged)."""
        if step.outbound:
            try:
                await self._retry(stage, f"{stage}: produce", lambda: self._produce(stage, step))
            except Permanent as exc:  # a record we built does not fit its schema: a bug
                log.error("%s: cannot encode a command: %s", stage, exc)
                if origin is None:
                    raise
                step.dead_letters.append((origin, exc))
        if step.dead_letters:
            await self._retry(stage, f"{stage}: dead letters", lambda: self._dead_letter(stage, step))

    async def _produce(self, stage: str, step: Step) -> None:
        futures = []
        try:
            for out in step.outbound:
                topic = self._out.get(out.topic)
                if topic is None:
                    topic = self._out[out.topic] = self._topic(out.topic)
                key = self.serde(out.topic, "key").encode(out.key)
                value = self.serde(out.topic, out.schema).encode(out.value)
                futures.append(await topic.send(key=key, value=value))
            for fut in futures:
                await fut
        except MessageSizeTooLargeError as exc:  # retrying cannot make it fit
            raise Permanent(f"a command is over Kafka's size limit: {exc}") from exc
        except (KafkaError, TimeoutError, ConnectionError) as exc:
            raise Retriable(f"Kafka did not acknowledge a command: {exc!r}") from exc
        for out in step.outbound:
            COMMANDS.labels(stage, out.topic).inc()
        if step.after is not None:
            step.after()

    async def _dead_letter(self, stage: str, step: Step) -> None:
        items: list[tuple[FailedRecord, BaseException, str, str]] = []
        for origin, error in step.dead_letters:
            failed = FailedRecord(
                origin.topic, origin.partition, origin.offset, origin.key, origin.value, list(origin.headers)
            )
            where = "processors.app" if isinstance(error, _Converter) else f"processors.{stage}"
            items.append((failed, error, getattr(error, "step", STAGE_TRANSFORMATION), where))
            log.warning(
                "%s: dead-lettered %s[%d]@%d: %s", stage, origin.topic, origin.partition, origin.offset, error
            )
        if self._dlq_lock is None:
            self._dlq_lock = asyncio.Lock()
        async with self._dlq_lock:  # one confirmed producer: one flush at a time
            await asyncio.to_thread(self._dlq[stage].send, items)

    async def _retry(self, stage: str, what: str, fn: Callable[[], Awaitable[T]]) -> T:
        deadline = time.monotonic() + self.settings.retry_limit_seconds
        delay = 0.2
        failed = False
        while True:
            try:
                result = await fn()
            except Retriable as exc:
                RETRIES.labels(stage).inc()
                if time.monotonic() + delay > deadline:
                    raise _Fatal(f"{what}: {exc}") from exc
                failed = True
                self.health.dependency("kafka/registry", False, str(exc))
                log.warning("%s: %s; retrying in %.1f s", what, exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter, not crypto
                delay = min(delay * 2, 30.0)
                continue
            if failed:
                self.health.dependency("kafka/registry", True)
            return result

    # --- timers -----------------------------------------------------------------------------

    def _recovered(self) -> bool:
        return bool(self.app.tables.recovery.completed.is_set()) and not self.app.in_recovery

    async def _measure_lag(self) -> None:
        try:
            await asyncio.to_thread(self._lag.measure)
        except Exception as exc:  # noqa: BLE001 - a missed measurement is retried in 5 s
            log.warning("consumer lag not measured: %s", exc)

    async def _watch_recovery(self) -> None:
        """/healthz component `tables`: ok once the tables are rebuilt and the agents run."""
        self.health.dependency("tables", self._recovered(), "recovering the tables from their changelogs")

    async def _flush_inventory(self) -> None:
        if not self._recovered():
            return
        if not self._rebuilt:
            self.inventory.rebuild()
            self._rebuilt = True
        step = self.inventory.flush()
        await self._timer_step("inventory", step)
        INVENTORY_PENDING.set(len(self.inventory.dirty))

    async def _sweep(self) -> None:
        if not self._recovered():
            return
        step = self.orders.sweep()
        await self._timer_step("orders", step)
        HELD_ORDERS.set(self.customer_directory.held_count())

    async def _timer_step(self, stage: str, step: Step) -> None:
        try:
            await self._finish(stage, step, None)
        except _Fatal as exc:
            log.critical("%s: giving up: %s; stopping the worker", stage, exc)
            await self.app.crash(exc)
            raise
        if step.outbound or step.dead_letters:
            RECORDS.labels(stage, step.outcome).inc()

    async def _reload_mappings(self) -> None:
        if self.shadow is not None:
            await asyncio.to_thread(self.shadow.reload_if_changed)
        settings = self.settings
        try:
            fresh = await asyncio.to_thread(
                reload_changed,
                self.mappings_ref.current,
                lambda: load_mappings(
                    settings.mappings_dir,
                    salesforce_metadata=settings.salesforce_metadata,
                    sage_metadata=settings.sage_metadata,
                ),
            )
        except MappingError as exc:
            MAPPING_RELOADS.labels("invalid").inc()
            self.health.dependency(
                "mappings", False, f"edited mappings are invalid; using the previous ones: {exc.problems[0]}"
            )
            log.error(
                "mappings edited but invalid, keeping the previous ones:\n  %s", "\n  ".join(exc.problems)
            )
            return
        if fresh is None:
            return
        self.mappings_ref.current = fresh
        MAPPING_RELOADS.labels("ok").inc()
        self.health.dependency("mappings", True)
        log.info("mappings reloaded from %s", settings.mappings_dir)

    def close(self) -> None:
        self._dlq_producer.close()
