"""The CDC source's mapping file, record mapping, event handling and batch retries, offline."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.salesforce.change_events import MalformedEvent, collapse, origin_client, parse_message
from connectors.salesforce.change_reader import ChangeReader
from connectors.salesforce.record_mapper import SOURCE_HEADERS, RecordMapper
from connectors.salesforce.soql import identifier
from connectors.salesforce.source import SalesforceCdcSource, SalesforceSourceSettings, _Work
from connectors.salesforce.source_mapping import DEFAULT_MAPPING_FILE, MappingError, load_source_mapping
from sagesf.dead_letter_writer import FailedRecord
from sagesf.errors import Permanent, Retriable
from sagesf.publisher import CanonicalRecord
from sagesf.retry import RetryPolicy
from sagesf.schemas import load_schema
from sagesf.source import Rejected, SourceBatch, SourceLoop
from tests.kit.stages import CapturingPublisher, MemoryPositions, in_background


def write_mapping(tmp_path: Path, change: Any) -> Path:
    """The shipped mapping with `change(raw)` applied, written to a temp file."""
    raw = yaml.safe_load(DEFAULT_MAPPING_FILE.read_text())
    change(raw)
    path = tmp_path / "salesforce_source.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_shipped_mapping_is_valid() -> None:
    mapping = load_source_mapping()
    assert mapping.producing("Opportunity") is not None
    assert mapping.producing("Contact") is None  # a child: it re-produces its Account
    assert {"customer.v1", "salesorder.v1", "item.v1"} <= mapping.topics()


@pytest.mark.parametrize(
    ("change", "entry", "reason"),
    [
        (
            lambda raw: raw["objects"]["Account"]["fields"].update(nickname="Name"),
            "objects.Account.fields.nickname",
            "Customer has no field 'nickname'",
        ),
        (
            lambda raw: raw["objects"]["Opportunity"]["fields"].update(
                status={"field": "StageName", "map": "nope"}
            ),
            "objects.Opportunity.fields.status.map",
            "no value map 'nope'",
        ),
        (
            lambda raw: raw["value_maps"]["opportunity_stage"]["values"].update({"Closed Won": "SHIPPED"}),
            "objects.Opportunity.fields.status.map",
            "maps to SHIPPED, not symbols of status",
        ),
        (
            lambda raw: raw["objects"]["Product2"]["fields"].pop("item_code"),
            "objects.Product2.fields",
            "Item.item_code is required and not mapped",
        ),
        (
            lambda raw: raw["objects"]["Contact"]["parent"].update(object="Lead"),
            "objects.Contact.parent.object",
            "'Lead' is not an object that produces records",
        ),
        (
            lambda raw: raw["objects"]["Account"]["fields"].update(name="Name; DROP"),
            "objects.Account.fields.name.field",
            "is not a Salesforce field name",
        ),
    ],
)
def test_a_wrong_mapping_names_file_entry_and_reason(
    tmp_path: Path, change: Any, entry: str, reason: str
) -> None:
    path = write_mapping(tmp_path, change)
    with pytest.raises(MappingError) as caught:
        load_source_mapping(path)
    message = str(caught.value)
    assert str(path) in message
    assert entry in message
    assert reason in message
    # each problem on its own names file, entry and reason: the runner prints one line
    assert any(str(path) in p and entry in p and reason in p for p in caught.value.problems)


def opportunity(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "Id": "006000000000001AAA",
        "StageName": "Closed Won",
        "CloseDate": "2025-01-31",
        "Amount": None,
        "AccountId": "001000000000001AAA",
        "Account": {"Name": "Acme", "ExternalID__c": "01-ACME", "BillingStreet": "1 Main\nFloor 2\nRoom 3"},
        "Name": "Deal",
        "OpportunityLineItems": {
            "records": [
                {
                    "Id": "00k2",
                    "SortOrder": 2,
                    "ProductCode": "B",
                    "Quantity": 1,
                    "UnitPrice": 5,
                    "TotalPrice": 5,
                },
                {
                    "Id": "00k1",
                    "Line_Note__c": "fragile",
                    "SortOrder": 1,
                    "ProductCode": "A",
                    "Quantity": 2.5,
                    "UnitPrice": 1.1,
                    "TotalPrice": 2.75,
                },
            ]
        },
    }
    record.update(overrides)
    return record


def encodes(schema: str, value: dict[str, Any]) -> None:
    fastavro.schemaless_writer(io.BytesIO(), load_schema(schema), value)


def test_an_opportunity_maps_to_a_sales_order_that_fits_the_schema() -> None:
    mapper = RecordMapper(load_source_mapping())
    mapped = mapper.object_record(
        "Opportunity", opportunity(), event_id="e1", event_time_ms=1_700_000_000_000
    )
    value = mapped.value
    assert value is not None
    assert (mapped.topic, mapped.schema, mapped.key) == ("salesorder.v1", "SalesOrder", "006000000000001AAA")
    assert mapped.headers == SOURCE_HEADERS  # says where it came from
    assert [line["product_code"] for line in value["lines"]] == ["A", "B"]  # SortOrder, then numbered
    assert [line["line_no"] for line in value["lines"]] == [1, 2]
    assert value["lines"][0]["unit_price"] == Decimal("1.100000")
    assert value["total_amount"] == Decimal("7.75")  # no Amount: the lines' sum
    assert value["customer"]["ar_division_no"] == "01"
    assert value["customer"]["customer_no"] == "ACME"
    assert value["bill_to"]["line3"] == "Room 3"
    assert [line["custom_fields"] for line in value["lines"]] == [
        {"line_note": "fragile"},
        {"line_note": None},
    ]
    encodes("SalesOrder", value)


def test_a_deleted_won_opportunity_is_a_deleted_order() -> None:
    mapper = RecordMapper(load_source_mapping())
    mapped = mapper.object_record("Opportunity", opportunity(), event_id="e", event_time_ms=0, deleted=True)
    assert mapped.value is not None  # a deleted order, not a tombstone
    assert mapped.value["status"] == "DELETED"
    encodes("SalesOrder", mapped.value)


@pytest.mark.parametrize(
    ("entity", "record", "names"),
    [
        ("Account", {"Id": "001000000000001AAA", "Name": "X", "Type": "Other"}, ["Account.Type", "'Other'"]),
        (
            "Account",
            {"Id": "001000000000001AAA", "Name": "X", "ExternalID__c": "ACME"},
            ["ARDivisionNo-CustomerNo"],
        ),
        ("Account", {"Id": "001000000000001AAA", "Name": "X", "Credit_Limit__c": 1e20}, ["Credit_Limit__c"]),
        (
            "Product2",
            {"Id": "01t000000000001AAA", "Name": "No code"},
            ["Product2.Sage_Item_Code__c / Product2.ProductCode is empty"],
        ),
        (
            "Opportunity",
            opportunity(CloseDate=None),
            ["Opportunity.CloseDate is empty", "order_date is required"],
        ),
    ],
)
def test_unmappable_records_are_permanent_errors_naming_the_field(
    entity: str, record: dict[str, Any], names: list[str]
) -> None:
    mapper = RecordMapper(load_source_mapping())
    with pytest.raises(Permanent) as caught:
        mapper.object_record(entity, record, event_id="e", event_time_ms=0)
    for name in names:
        assert name in str(caught.value)


def change(
    kind: str, record_id: str = "001000000000001AAA", changed: list[str] | None = None
) -> dict[str, Any]:
    return {
        "channel": "/data/AccountChangeEvent",
        "data": {
            "event": {"replayId": 7},
            "payload": {
                "ChangeEventHeader": {
                    "entityName": "Account",
                    "recordIds": [record_id],
                    "changeType": kind,
                    "changeOrigin": "com/salesforce/api/rest/62.0;client=sagesf",
                    "commitTimestamp": 1_700_000_000_000,
                    "changedFields": changed or [],
                    "transactionKey": "tx",
                    "sequenceNumber": 1,
                }
            },
        },
    }


def test_change_events_parse_and_name_their_origin_client() -> None:
    event = parse_message(change("UPDATE", changed=["Name"]))
    assert not isinstance(event, dict)
    assert origin_client(event.change_origin) == "sagesf"  # type: ignore[union-attr]
    assert origin_client("com/salesforce/api/rest/62.0") is None
    with pytest.raises(MalformedEvent):
        parse_message(
            {"channel": "/data/AccountChangeEvent", "data": {"event": {"replayId": 1}, "payload": {}}}
        )
    bad = change("RENAME")
    with pytest.raises(MalformedEvent, match="RENAME"):
        parse_message(bad)


def test_collapse_keeps_the_last_change_and_the_bodies_values() -> None:
    update_name = parse_message(change("UPDATE", changed=["Name"]))
    delete = parse_message(change("DELETE"))
    gap = parse_message(change("GAP_UPDATE"))
    update_name.fields["Name"] = "New"  # type: ignore[union-attr]
    rid = "001000000000001AAA"
    (target,) = collapse(
        [
            ("Account", rid, update_name, "UPDATE", 1, "a"),  # type: ignore[list-item]
            ("Account", rid, gap, "GAP_UPDATE", 2, "b"),  # type: ignore[list-item]
        ]
    )
    assert target.values == {"Name": "New"}
    assert target.reread
    assert not target.deleted
    (gone,) = collapse(
        [
            ("Account", rid, update_name, "UPDATE", 1, "a"),  # type: ignore[list-item]
            ("Account", rid, delete, "DELETE", 2, "b"),  # type: ignore[list-item]
            ("Account", rid, None, "CHILD", 3, "c"),  # a cascaded Contact deletion after it
        ]
    )
    assert gone.deleted


def test_an_opportunity_is_an_order_only_when_its_own_event_wins_it() -> None:
    mapper = RecordMapper(load_source_mapping())
    assert mapper.enters_state("Opportunity", {"StageName": "Closed Won", "Amount": 5})
    assert not mapper.enters_state("Opportunity", {"NextStep": "ship it"})
    assert not mapper.enters_state("Opportunity", {"StageName": "Prospecting"})
    assert mapper.in_state("Opportunity", opportunity())
    assert not mapper.in_state("Opportunity", opportunity(StageName="Closed Lost"))


CHANNEL = "/data/AccountChangeEvent"


def position(replay_id: int) -> dict[str, Any]:
    return {CHANNEL: {"replay_id": replay_id, "checkpoint_ms": 0}}


class FakeChanges:
    """Stands in for the ChangeReader: fails as told, `retriable` times with Retriable (Salesforce
    answering 503 on a read), always with a bug on messages named in `poison`."""

    def __init__(self, retriable: int = 0, poison: frozenset[int] = frozenset()) -> None:
        self.retriable = retriable
        self.poison = poison
        self.done: list[list[int]] = []
        self.rejected: list[int] = []

    def read(self, messages: list[dict[str, Any]]) -> Iterator[SourceBatch]:
        if self.retriable:
            self.retriable -= 1
            raise Retriable("Salesforce answered 503")
        numbers = [m["n"] for m in messages]
        if self.poison & set(numbers):
            raise ValueError("a bug meets a strange event")
        self.done.append(numbers)
        # tombstones: what is published does not matter here, only that it is, once
        records = [CanonicalRecord("customer.v1", "Customer", f"n{n}", None) for n in numbers]
        yield SourceBatch(records=records, positions=position(max(numbers)))

    def reject(self, message: dict[str, Any], error: BaseException) -> SourceBatch:
        self.rejected.append(message["n"])
        failed = FailedRecord(CHANNEL, 0, message["n"], None, b"{}")
        return SourceBatch(rejected=[Rejected(failed, error, "test")], positions=position(message["n"]))


def run_handed(
    changes: FakeChanges, batch: list[dict[str, Any]], *, unacknowledged: int = 0
) -> tuple[CapturingPublisher, MemoryPositions]:
    """Hand `batch` to the source as its streaming thread does and run the core loop until the
    source says the batch is published and checkpointed (Kafka failing `unacknowledged` confirms)."""
    settings = SalesforceSourceSettings(retry_initial=0.01, retry_maximum=0.02)
    source = SalesforceCdcSource(settings, None, changes, None)  # type: ignore[arg-type]
    publisher, positions = CapturingPublisher(), MemoryPositions()
    publisher.fail_next = unacknowledged
    loop = SourceLoop(source, publisher, positions, retry=RetryPolicy(initial=0.01, maximum=0.02))
    work = _Work(messages=batch)
    source._handed.put(work)
    with in_background(loop):
        try:
            work.done.result(timeout=10)
        except TimeoutError:
            raise AssertionError("the batch was not published and checkpointed within 10 s") from None
    return publisher, positions


def test_a_retriable_batch_is_handled_again_until_it_succeeds() -> None:
    changes = FakeChanges(retriable=2)
    publisher, positions = run_handed(changes, [{"n": 1}, {"n": 2}])
    assert changes.done == [[1, 2]]
    assert changes.rejected == []
    assert [r.key for r in publisher.records] == ["n1", "n2"]
    assert positions.stored == position(2)


def test_a_batch_kafka_did_not_acknowledge_is_handled_again_and_only_then_checkpointed() -> None:
    changes = FakeChanges()
    publisher, positions = run_handed(changes, [{"n": 1}, {"n": 2}], unacknowledged=1)
    assert changes.done == [[1, 2], [1, 2]]  # read again: the first records were lost on the way
    assert [r.key for r in publisher.records] == ["n1", "n2"]
    assert (positions.puts, positions.stored) == (1, position(2))


def test_a_poison_event_is_dead_lettered_alone_and_the_others_go_on() -> None:
    changes = FakeChanges(poison=frozenset({2}))
    publisher, positions = run_handed(changes, [{"n": 1}, {"n": 2}, {"n": 3}])
    assert changes.done == [[1], [3]]
    assert changes.rejected == [2]
    assert [r.key for r in publisher.records] == ["n1", "n3"]
    assert [failed.offset for failed, *_ in publisher.dead] == [2]
    assert positions.stored == position(3)


def test_channels_name_the_objects_a_catch_up_read_covers() -> None:
    mapping = load_source_mapping()
    changes = ChangeReader(
        mapping=mapping,
        reader=None,  # type: ignore[arg-type]
        mapper=RecordMapper(mapping),
        storage=None,  # type: ignore[arg-type]
        echo_clients=["sagesf"],
    )
    assert changes.entities("/data/OpportunityChangeEvent") == ["Opportunity"]
    assert changes.entities("/data/LeadChangeEvent") == []
    assert set(changes.entities("/data/ChangeEvents")) == set(mapping.objects)


INJECTION = "Name FROM Account WHERE Id != null --"


def _set(*path: str, value: Any = INJECTION) -> Any:
    """A change that puts the injection attempt at `path` in the raw mapping."""

    def change(raw: dict[str, Any]) -> None:
        node = raw
        for step in path[:-1]:
            node = node[step]
        node[path[-1]] = value

    return change


def _rename_object(raw: dict[str, Any]) -> None:
    raw["objects"][INJECTION] = raw["objects"].pop("Product2")


@pytest.mark.parametrize(
    ("change", "entry"),
    [
        (_set("objects", "Account", "fields", "name"), "objects.Account.fields.name"),
        (_set("objects", "Account", "key", value=[INJECTION]), "objects.Account.key"),
        (_set("objects", "Account", "external_id"), "objects.Account.external_id"),
        (
            _set("objects", "Account", "custom_fields", "salesforce_account_number"),
            "objects.Account.custom_fields",
        ),
        (_set("objects", "Account", "addresses", "billing_address", "prefix"), "objects.Account.addresses"),
        (_set("objects", "Account", "contacts", "relationship"), "objects.Account.contacts.relationship"),
        (_set("objects", "Opportunity", "lines", "order_by"), "objects.Opportunity.lines.order_by"),
        (
            _set("objects", "Opportunity", "lines", "fields", "product_code"),
            "objects.Opportunity.lines.fields",
        ),
        (_set("objects", "Opportunity", "when", "field"), "objects.Opportunity.when.field"),
        (_set("objects", "Opportunity", "customer", "name"), "objects.Opportunity.customer.name"),
        (_set("objects", "Contact", "parent", "field"), "objects.Contact.parent.field"),
        (_set("objects", "Contact", "parent", "object"), "objects.Contact.parent.object"),
        (_rename_object, "objects.Name FROM Account"),
    ],
)
def test_an_injection_attempt_in_any_soql_name_is_refused_at_load(
    tmp_path: Path, change: Any, entry: str
) -> None:
    path = write_mapping(tmp_path, change)
    with pytest.raises(MappingError) as caught:
        load_source_mapping(path)
    assert any(str(path) in p and entry in p and "Salesforce" in p for p in caught.value.problems), (
        caught.value.problems
    )


@pytest.mark.parametrize(
    "name",
    [
        "Name",
        "Account.ExternalID__c",
        "Sage_Item_Code__c",
        "ns__Field__c",
        "Parent__r.Name",
        "Loc__Latitude__s",
    ],
)
def test_salesforce_api_names_pass(name: str) -> None:
    assert identifier(name) == name


@pytest.mark.parametrize(
    "name",
    [
        INJECTION,
        "Name,Id",
        "Name)",
        "Bad_",
        "Bad___c",
        "a__b__c__d",
        "_Name",
        "1Name",
        "Account..Name",
        "Name__c ",
    ],
)
def test_what_is_not_a_salesforce_api_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="Salesforce API name"):
        identifier(name)


def test_an_echo_needs_our_client_and_our_user() -> None:
    from connectors.salesforce.change_events import is_echo

    def event(origin: str, user: str) -> Any:
        message = change("UPDATE")
        header = message["data"]["payload"]["ChangeEventHeader"]
        header["changeOrigin"], header["commitUser"] = origin, user
        return parse_message(message)

    ours, users = frozenset({"sagesf"}), frozenset({"005000000000001"})
    assert is_echo(event("com/salesforce/api/rest/62.0;client=sagesf", "005000000000001AAA"), ours, users)
    assert not is_echo(event("com/salesforce/api/rest/62.0;client=sagesf", "005000000000002AAA"), ours, users)
    assert not is_echo(event("com/salesforce/api/rest/62.0", "005000000000001AAA"), ours, users)
    assert not is_echo(event("com/salesforce/api/rest/62.0;client=sagesf", ""), ours, users)


# --- poison values: whatever Salesforce (or a forged event) sends, a record or a dead letter ------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=50)
    | st.sampled_from(["1e999999", "-Infinity", "NaN", "9999-12-31T23:59:59Z", "0000-00-00", "1" * 60]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


def _poisoned(entity: str, values: dict[str, Any]) -> dict[str, Any]:
    base = {"Account": {"Id": "001000000000001AAA", "Name": "X"}, "Opportunity": opportunity()}.get(
        entity, {"Id": "01t000000000001AAA", "Name": "P", "ProductCode": "P-1"}
    )
    record = dict(base)
    record.update(values)
    return record


@settings(max_examples=150, deadline=None)
@given(
    entity=st.sampled_from(["Account", "Opportunity", "Product2"]),
    values=st.dictionaries(
        st.sampled_from(
            [
                "Name",
                "Phone",
                "Credit_Limit__c",
                "Type",
                "CloseDate",
                "Amount",
                "ExternalID__c",
                "IsActive",
                "Quantity_On_Hand__c",
                "ProductCode",
                "BillingStreet",
                "Contacts",
                "OpportunityLineItems",
                "Account",
                "StageName",
                "Family",
                "AccountNumber",
            ]
        ),
        JSON_VALUES,
        max_size=4,
    ),
)
def test_any_field_value_maps_to_a_record_that_encodes_or_to_a_permanent_error(
    entity: str, values: dict[str, Any]
) -> None:
    mapper = RecordMapper(load_source_mapping())
    try:
        mapped = mapper.object_record(entity, _poisoned(entity, values), event_id="e", event_time_ms=0)
    except Permanent:
        return
    assert mapped.value is not None
    encodes(mapped.schema, mapped.value)


@settings(max_examples=150, deadline=None)
@given(
    message=JSON_VALUES,
    header=st.dictionaries(
        st.sampled_from(
            [
                "entityName",
                "recordIds",
                "changeType",
                "commitTimestamp",
                "changedFields",
                "sequenceNumber",
                "changeOrigin",
                "commitUser",
                "transactionKey",
            ]
        ),
        JSON_VALUES,
        max_size=6,
    ),
)
def test_any_streaming_message_is_an_event_or_a_malformed_one(message: Any, header: dict[str, Any]) -> None:
    forged = change("UPDATE")
    forged["data"]["payload"]["ChangeEventHeader"].update(header)
    for candidate in (
        message,
        forged,
        {"channel": "/event/Credit_Check_Request__e", "data": {"event": {"replayId": 1}, "payload": header}},
    ):
        with contextlib.suppress(MalformedEvent):  # refused with a reason: a dead letter
            parse_message(candidate)


@settings(max_examples=150, deadline=None)
@given(
    values=st.dictionaries(
        st.sampled_from(
            ["Correlation_Id__c", "Amount__c", "Reply_Deadline__c", "Account_Id__c", "External_Id__c"]
        ),
        JSON_VALUES | st.floats(min_value=-1e22, max_value=1e22) | st.integers(),
        max_size=5,
    )
)
def test_any_platform_event_payload_maps_to_a_record_that_encodes_or_to_a_permanent_error(
    values: dict[str, Any],
) -> None:
    mapper = RecordMapper(load_source_mapping())
    payload = {"Correlation_Id__c": "c-1", "Amount__c": 1, "Account_Id__c": "001000000000001AAA", **values}
    try:
        mapped = mapper.platform_event_record(
            "/event/Credit_Check_Request__e", payload, event_id="e", created_ms=0
        )
    except Permanent:
        return
    assert mapped.value is not None
    encodes(mapped.schema, mapped.value)


def test_a_deadline_far_outside_the_calendar_is_a_permanent_error_naming_the_field() -> None:
    mapper = RecordMapper(load_source_mapping())
    payload = {"Correlation_Id__c": "c-1", "Amount__c": 1, "Reply_Deadline__c": 1e20}
    with pytest.raises(Permanent, match="Reply_Deadline__c"):
        mapper.platform_event_record("/event/Credit_Check_Request__e", payload, event_id="e", created_ms=0)


def test_a_list_or_object_where_salesforce_sends_text_is_a_permanent_error() -> None:
    mapper = RecordMapper(load_source_mapping())
    for odd in ({"first": "Acme"}, ["Acme", "Inc"]):
        with pytest.raises(Permanent, match=r"Account\.Name"):
            mapper.object_record(
                "Account", {"Id": "001000000000001AAA", "Name": odd}, event_id="e", event_time_ms=0
            )


def test_an_order_whose_lines_did_not_all_come_back_is_a_permanent_error_not_a_short_order() -> None:
    mapper = RecordMapper(load_source_mapping())
    lines = opportunity()["OpportunityLineItems"]
    paged = {**lines, "totalSize": 450, "done": False, "nextRecordsUrl": "/services/data/v62.0/query/01g-2"}
    with pytest.raises(Permanent, match="2 of 450"):
        mapper.object_record(
            "Opportunity", opportunity(OpportunityLineItems=paged), event_id="e", event_time_ms=0
        )


class _BuggyMapper(RecordMapper):
    """A mapper with a bug that one record meets (a KeyError), as a new mapping entry might have."""

    def object_record(self, entity: str, record: Any, **kwargs: Any) -> CanonicalRecord:
        if record.get("Name") == "strange":
            raise KeyError("a bug meets a strange record")
        return super().object_record(entity, record, **kwargs)


class _ModifiedAccounts:
    """What a catch-up read of Account returns (the reader's query answer, without Salesforce)."""

    def modified_since(self, entity: str, since_ms: int) -> Iterator[dict[str, Any]]:
        for number, name in enumerate(["strange", "fine"], start=1):
            yield {"Id": f"00100000000000{number}AAA", "Name": name, "SystemModstamp": "2025-01-01T00:00:00Z"}


def test_a_record_that_meets_a_bug_in_a_catch_up_read_is_dead_lettered_and_the_read_goes_on() -> None:
    from connectors.salesforce.replay_storage import PositionReplayStorage

    mapping = load_source_mapping()
    changes = ChangeReader(
        mapping=mapping,
        reader=_ModifiedAccounts(),  # type: ignore[arg-type]
        mapper=_BuggyMapper(mapping),
        storage=PositionReplayStorage(MemoryPositions()),  # type: ignore[arg-type]
        echo_clients=["sagesf"],
    )
    batches = list(changes.catch_up("/data/AccountChangeEvent", 0, "replay_id_invalid"))
    produced = [r.key for b in batches for r in b.records]
    rejected = [r for b in batches for r in b.rejected]
    assert produced == ["001000000000002AAA"]
    assert [r.failed.key for r in rejected] == [b"001000000000001AAA"]
    assert "a bug meets a strange record" in str(rejected[0].error)


class _Accounts:
    """What reading changed Accounts returns (the reader's query answer, without Salesforce)."""

    def read(self, entity: str, ids: list[str], *, include_deleted: bool = False) -> dict[str, Any]:
        return {i: {"Id": i, "Name": f"Acme {i[-6:]}"} for i in ids}


def test_a_by_time_start_skips_the_older_events_of_every_batch_a_replay_brings() -> None:
    """A -2 replay (after `sagesf load salesforce` handed over at T0, or a first start) comes in
    many batches; the start still holds once the first batch stored a replay ID."""
    from connectors.salesforce.replay_storage import ChannelPosition, PositionReplayStorage

    mapping = load_source_mapping()
    positions = MemoryPositions()
    positions.put_many({CHANNEL: ChannelPosition(None, 1_000).to_json()})
    changes = ChangeReader(
        mapping=mapping,
        reader=_Accounts(),  # type: ignore[arg-type]
        mapper=RecordMapper(mapping),
        storage=PositionReplayStorage(positions),  # type: ignore[arg-type]
        echo_clients=["sagesf"],
    )

    def replayed(replay_id: int, commit_ms: int) -> dict[str, Any]:
        message = change("UPDATE", f"00100000000000{replay_id}AAA", changed=["Name"])
        message["data"]["event"]["replayId"] = replay_id
        header = message["data"]["payload"]["ChangeEventHeader"]
        header.update(commitTimestamp=commit_ms, changeOrigin="com/salesforce/api/rest/62.0")  # a user's
        return message

    def published(*messages: dict[str, Any]) -> list[int]:
        """What the batch publishes, its positions stored afterwards as the SourceLoop does."""
        found = []
        for batch in changes.read(list(messages)):
            found += [int(str(r.key)[14]) for r in batch.records]
            positions.put_many(batch.positions or {})
        return found

    assert published(replayed(1, 500), replayed(2, 900)) == []
    assert published(replayed(3, 999), replayed(4, 1_000)) == [4]
    assert ChannelPosition.from_json(positions.get(CHANNEL)) == ChannelPosition(4, 1_000, 1_000)
    assert published(replayed(5, 700)) == []  # never an event older than the start
