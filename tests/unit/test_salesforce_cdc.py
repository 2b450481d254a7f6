"""The emulator's change event bodies follow Salesforce's CDC rules; its event log keeps them durably."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from sandbox.salesforce.cdc import Change, change_channel, change_data, gap_change
from sandbox.salesforce.events import EventLog

COMMIT_MS = 1_714_156_685_000


def change(
    change_type: str, fields: dict[str, Any], changed: list[str] | None = None, **extra: Any
) -> Change:
    values: dict[str, Any] = {
        "entity": "Account",
        "change_type": change_type,
        "record_ids": ["0015e0000000001AAA"],
        "fields": fields,
        "changed_fields": changed or [],
        "commit_user": "0055e0000000001AAA",
        "origin_client": None,
        "transaction_key": "00006bec-ce66-0611-9018-30a98446c9f2",
        "sequence_number": 1,
        "commit_timestamp_ms": COMMIT_MS,
    }
    values.update(extra)
    return Change(**values)


def payload(c: Change) -> dict[str, Any]:
    data = change_data(c)
    assert set(data) == {"schema", "payload"}
    assert isinstance(data["schema"], str)
    assert len(data["schema"]) == 22
    result: dict[str, Any] = data["payload"]
    return result


def body(p: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in p.items() if k != "ChangeEventHeader"}


def test_create_carries_every_non_null_field_and_a_full_header() -> None:
    fields = {
        "attributes": {"type": "Account"},
        "Id": "0015e0000000001AAA",
        "IsDeleted": False,
        "SystemModstamp": "2024-04-26T18:38:05.000+0000",
        "Name": "Acme",
        "Phone": None,
        "ExternalID__c": "01-ABF",
        "CreatedDate": "2024-04-26T18:38:05.000+0000",
        "LastModifiedDate": "2024-04-26T18:38:05.250+0000",
    }
    p = payload(change("CREATE", fields, origin_client="sagesf-sink"))
    assert body(p) == {
        "Name": "Acme",
        "ExternalID__c": "01-ABF",
        "CreatedDate": "2024-04-26T18:38:05Z",  # CDC JSON datetimes, not REST's +0000 form
        "LastModifiedDate": "2024-04-26T18:38:05.250Z",
    }
    header = p["ChangeEventHeader"]
    assert header == {
        "entityName": "Account",
        "recordIds": ["0015e0000000001AAA"],
        "changeType": "CREATE",
        "changeOrigin": "com/salesforce/api/rest/62.0;client=sagesf-sink",
        "transactionKey": "00006bec-ce66-0611-9018-30a98446c9f2",
        "sequenceNumber": 1,
        "commitTimestamp": COMMIT_MS,
        "commitNumber": header["commitNumber"],
        "commitUser": "0055e0000000001AAA",
        "nulledFields": [],
        "diffFields": [],
        "changedFields": [],
    }
    assert isinstance(header["commitNumber"], int)
    assert header["commitNumber"] > 0


def test_change_origin_without_a_client_id_names_only_the_api() -> None:
    p = payload(change("CREATE", {"Name": "Acme"}, api_name="bulkapi", api_version="61.0"))
    assert p["ChangeEventHeader"]["changeOrigin"] == "com/salesforce/api/bulkapi/61.0"


def test_update_carries_only_changed_fields_nulls_and_last_modified_date() -> None:
    fields = {"Phone": "555-0100", "Website": None, "LastModifiedDate": "2024-04-26T18:40:00.000+0000"}
    p = payload(change("UPDATE", fields, changed=["Phone", "Website"]))
    assert body(p) == {"Phone": "555-0100", "Website": None, "LastModifiedDate": "2024-04-26T18:40:00Z"}
    assert p["ChangeEventHeader"]["changedFields"] == ["Phone", "Website", "LastModifiedDate"]


def test_update_without_last_modified_date_gets_the_commit_time() -> None:
    p = payload(change("UPDATE", {"Phone": "1"}, changed=["Phone"]))
    assert p["LastModifiedDate"] == "2024-04-26T18:38:05Z"
    assert p["ChangeEventHeader"]["changedFields"] == ["Phone", "LastModifiedDate"]


def test_address_fields_are_nested_and_named_compound_dot_component() -> None:
    created = payload(
        change(
            "CREATE",
            {"Name": "Acme", "BillingCity": "Austin", "BillingState": None, "ShippingStreet": "1 Main"},
        )
    )
    assert body(created) == {
        "Name": "Acme",
        "BillingAddress": {"City": "Austin"},
        "ShippingAddress": {"Street": "1 Main"},
    }
    updated = payload(
        change(
            "UPDATE",
            {
                "BillingCity": "Dallas",
                "BillingPostalCode": None,
                "LastModifiedDate": "2024-04-26T18:40:00.000+0000",
            },
            changed=["BillingCity", "BillingPostalCode"],
        )
    )
    assert updated["BillingAddress"] == {"City": "Dallas", "PostalCode": None}
    assert updated["ChangeEventHeader"]["changedFields"] == [
        "BillingAddress.City",
        "BillingAddress.PostalCode",
        "LastModifiedDate",
    ]


def test_contact_name_is_the_compound_of_its_parts() -> None:
    fields = {"Name": "Ms. Ann O'Brien", "Salutation": "Ms.", "FirstName": "Ann", "LastName": "O'Brien"}
    p = payload(change("CREATE", fields, entity="Contact"))
    assert body(p) == {"Name": {"Salutation": "Ms.", "FirstName": "Ann", "LastName": "O'Brien"}}


def test_delete_carries_no_field() -> None:
    p = payload(change("DELETE", {}))
    assert body(p) == {}
    assert p["ChangeEventHeader"]["changeType"] == "DELETE"
    assert p["ChangeEventHeader"]["changedFields"] == []


def test_undelete_carries_the_restored_record_like_a_create() -> None:
    p = payload(change("UNDELETE", {"Name": "Acme", "Fax": None, "IsDeleted": False}))
    assert body(p) == {"Name": "Acme"}
    assert p["ChangeEventHeader"]["changeType"] == "UNDELETE"


@pytest.mark.parametrize("kind", ["GAP_CREATE", "GAP_UPDATE", "GAP_DELETE", "GAP_UNDELETE"])
def test_gap_events_carry_record_ids_and_no_fields(kind: str) -> None:
    p = payload(
        gap_change("Account", kind, ["0015e0000000001AAA", "0015e0000000002AAA"], "0055e0000000001AAA")
    )
    assert body(p) == {}
    header = p["ChangeEventHeader"]
    assert header["changeType"] == kind
    assert header["recordIds"] == ["0015e0000000001AAA", "0015e0000000002AAA"]
    assert header["sequenceNumber"] == 1
    assert header["changeOrigin"] == ""


def test_overflow_event_has_no_record_ids() -> None:
    p = payload(gap_change("Opportunity", "GAP_OVERFLOW", None, "0055e0000000001AAA"))
    assert p["ChangeEventHeader"]["recordIds"] == []
    assert p["ChangeEventHeader"]["entityName"] == "Opportunity"
    assert body(p) == {}


def test_gap_events_need_record_ids_and_a_gap_type() -> None:
    with pytest.raises(ValueError, match="record id"):
        gap_change("Account", "GAP_UPDATE", [], "005")
    with pytest.raises(ValueError, match="gap change type"):
        gap_change("Account", "UPDATE", ["001"], "005")
    with pytest.raises(ValueError, match="unknown change type"):
        change_data(change("MERGE", {}))


def test_channel_names_for_standard_and_custom_objects() -> None:
    assert change_channel("Account") == "/data/AccountChangeEvent"
    assert change_channel("Sage_Order__c") == "/data/Sage_Order__ChangeEvent"


# -- the event log -------------------------------------------------------------------------


def data_of(log: EventLog, channel: str, after: int = 0) -> list[dict[str, Any]]:
    return [json.loads(e.data_json) for e in log.events_after(channel, after, 1000)]


def test_replay_ids_increase_without_being_contiguous(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    ids = [log.record_change(change("CREATE", {"Name": f"A{i}"})) for i in range(60)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    steps = {b - a for a, b in itertools.pairwise(ids)}
    assert steps <= {1, 2, 3, 4, 5}
    assert steps != {1}
    assert [d["event"]["replayId"] for d in data_of(log, "/data/AccountChangeEvent")] == ids


def test_change_events_fan_out_to_their_object_channel_and_change_events(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    account = log.record_change(change("CREATE", {"Name": "Acme"}))
    contact = log.record_change(change("CREATE", {"LastName": "Doe"}, entity="Contact"))
    platform = log.publish("/event/Sage_Order_Status__e", {"Order_Id__c": "006x", "Status__c": "Open"})
    assert [d["event"]["replayId"] for d in data_of(log, "/data/AccountChangeEvent")] == [account]
    assert [d["event"]["replayId"] for d in data_of(log, "/data/ContactChangeEvent")] == [contact]
    assert [d["event"]["replayId"] for d in data_of(log, "/data/ChangeEvents")] == [account, contact]
    [event] = data_of(log, "/event/Sage_Order_Status__e")
    assert event["event"]["replayId"] == platform
    assert event["payload"]["Status__c"] == "Open"
    assert event["payload"]["CreatedDate"].endswith("Z")
    assert data_of(log, "/data/ChangeEvents", after=contact) == []


def test_the_log_and_its_replay_ids_survive_a_restart(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    first = [log.record_change(change("CREATE", {"Name": "A"})) for _ in range(3)]
    log.age_out(first[-1] + 1)  # purge everything: the next ID must still be higher
    log.close()
    reopened = EventLog(tmp_path / "events.db")
    assert reopened.last_replay_id == first[-1]
    later = reopened.record_change(change("CREATE", {"Name": "B"}))
    assert later > first[-1]
    assert not reopened.is_retained(first[0])
    assert reopened.is_retained(later)


def test_retention_window_purges_old_events(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db", retention_hours=1 / 3_600_000)  # one millisecond
    old = log.record_change(change("CREATE", {"Name": "A"}))
    with log._lock:  # make the event older than the window without sleeping
        log._db.execute("UPDATE events SET created_ms = created_ms - 10")
    assert log.prune_expired() == 1
    assert not log.is_retained(old)
    assert data_of(log, "/data/ChangeEvents") == []


def test_age_out_purges_events_below_a_replay_id(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    ids = [log.record_change(change("CREATE", {"Name": str(i)})) for i in range(4)]
    assert log.age_out(ids[2]) == 2
    assert [d["event"]["replayId"] for d in data_of(log, "/data/ChangeEvents")] == ids[2:]
    assert not log.is_retained(ids[1])
    assert log.is_retained(ids[2])


def test_one_transactions_changes_are_stored_together_in_order(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    changes = [change("CREATE", {"Name": str(i)}, sequence_number=i + 1) for i in range(200)]
    ids = log.record_changes(changes)
    assert ids == sorted(ids)
    stored = data_of(log, "/data/ChangeEvents")
    assert [d["event"]["replayId"] for d in stored] == ids
    assert [d["payload"]["ChangeEventHeader"]["sequenceNumber"] for d in stored] == list(range(1, 201))


def test_replay_ids_keep_increasing_after_the_retention_window_emptied_the_log(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db", retention_hours=1 / 3_600_000)
    old = log.record_change(change("CREATE", {"Name": "A"}))
    with log._lock:
        log._db.execute("UPDATE events SET created_ms = created_ms - 10")
    log.prune_expired()
    log.close()
    assert EventLog(tmp_path / "events.db").record_change(change("CREATE", {"Name": "B"})) > old


def test_platform_event_uuid_from_the_publish_call_rides_in_the_event_object(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.db")
    published = {"Correlation_Id__c": "c-1", "EventUuid": "71abbd1f-a2f1-4c3e-a2d2-3c8d4f6cad4b"}
    log.publish("/event/Credit_Check_Request__e", published)
    [event] = data_of(log, "/event/Credit_Check_Request__e")
    assert event["event"]["EventUuid"] == "71abbd1f-a2f1-4c3e-a2d2-3c8d4f6cad4b"
    assert "EventUuid" not in event["payload"]
    assert published["EventUuid"] == "71abbd1f-a2f1-4c3e-a2d2-3c8d4f6cad4b"  # the caller's dict is untouched
