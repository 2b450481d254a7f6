"""Contract tests: unmodified simple-salesforce, over a socket, against the Salesforce emulator.

Each test names the Salesforce behaviour a connector relies on (status codes, bodies, error codes,
limits, faults, token refresh) and checks it the way a client sees it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from aiohttp import web
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceMoreThanOneRecord,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)

from sandbox.processes import free_port
from sandbox.salesforce import ids
from sandbox.salesforce.app import create_app
from sandbox.salesforce.client import connect, emulator_session
from sandbox.salesforce.config import EmulatorConfig, key_pair
from sandbox.salesforce.harness import RunningEmulator, start_emulator


def _tag() -> str:
    return uuid.uuid4().hex[:10]


def _content(err: Exception) -> Any:
    """The decoded body simple-salesforce attached to its exception."""
    return err.content  # type: ignore[attr-defined]


def _error_code(err: Exception) -> str:
    return str(_content(err)[0]["errorCode"])


# ---- OAuth ----------------------------------------------------------------------------------------


def test_password_grant_points_instance_url_at_the_emulator(salesforce_emulator: RunningEmulator):
    session = emulator_session(salesforce_emulator.url)
    answer = session.post(
        "https://login.salesforce.com/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": salesforce_emulator.client_id,
            "client_secret": salesforce_emulator.client_secret,
            "username": salesforce_emulator.username,
            "password": salesforce_emulator.password + salesforce_emulator.security_token,
        },
        timeout=10,
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["instance_url"] == salesforce_emulator.url
    assert body["token_type"] == "Bearer"
    assert body["id"].endswith("/" + salesforce_emulator.user_ids[salesforce_emulator.username])


@pytest.mark.parametrize(
    ("change", "error", "description"),
    [
        ({"password": "wrong"}, "invalid_grant", "authentication failure"),
        ({"username": "nobody@test.sagesf"}, "invalid_grant", "authentication failure"),
        ({"client_secret": "wrong"}, "invalid_client", "invalid client credentials"),
        ({"client_id": "unknown-app"}, "invalid_client_id", "client identifier invalid"),
    ],
)
def test_wrong_credentials_get_salesforce_oauth_errors(salesforce_emulator, change, error, description):
    credentials = {
        "username": salesforce_emulator.username,
        "password": salesforce_emulator.password,
        "client_id": salesforce_emulator.client_id,
        "client_secret": salesforce_emulator.client_secret,
    }
    credentials.update(change)
    with pytest.raises(SalesforceAuthenticationFailed) as caught:
        connect(salesforce_emulator.url, **credentials)
    assert caught.value.code == error
    assert caught.value.auth_message == description


def test_client_credentials_grant_logs_in_as_the_run_as_user(salesforce_emulator):
    sf: Any = Salesforce(
        consumer_key=salesforce_emulator.client_id,
        consumer_secret=salesforce_emulator.client_secret,
        domain="sagesf-sandbox.my",
        session=emulator_session(salesforce_emulator.url),
    )
    created = sf.Account.create({"Name": f"cc {_tag()}"})
    record = sf.Account.get(created["id"])
    assert record["CreatedById"] == salesforce_emulator.user_ids[salesforce_emulator.username]


def test_jwt_bearer_grant_verifies_the_signature(salesforce_emulator):
    sf: Any = Salesforce(
        username=salesforce_emulator.other_username,
        consumer_key=salesforce_emulator.client_id,
        privatekey=salesforce_emulator.private_key_pem,
        session=emulator_session(salesforce_emulator.url),
    )
    created = sf.Account.create({"Name": f"jwt {_tag()}"})
    assert (
        sf.Account.get(created["id"])["CreatedById"]
        == salesforce_emulator.user_ids[salesforce_emulator.other_username]
    )

    other_key, _ = key_pair()
    assertion = jwt.encode(
        {
            "iss": salesforce_emulator.client_id,
            "sub": salesforce_emulator.username,
            "aud": "https://login.salesforce.com",
            "exp": int(time.time()) + 60,
        },
        other_key,
        algorithm="RS256",
    )
    answer = requests.post(
        f"{salesforce_emulator.url}/services/oauth2/token",
        data={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        timeout=10,
    )
    assert answer.status_code == 400
    assert answer.json() == {"error": "invalid_grant", "error_description": "invalid assertion"}


def test_refresh_token_grant(salesforce_emulator):
    refresh = salesforce_emulator.admin(
        "POST",
        "/admin/oauth/refresh-token",
        {"client_id": salesforce_emulator.client_id, "username": salesforce_emulator.username},
    )["refresh_token"]
    form = {
        "grant_type": "refresh_token",
        "client_id": salesforce_emulator.client_id,
        "refresh_token": refresh,
    }
    answer = requests.post(f"{salesforce_emulator.url}/services/oauth2/token", data=form, timeout=10)
    assert answer.status_code == 200
    token = answer.json()["access_token"]
    sf: Any = Salesforce(
        instance_url=salesforce_emulator.url,
        session_id=token,
        session=emulator_session(salesforce_emulator.url),
    )
    assert sf.query("SELECT COUNT() FROM User")["totalSize"] == 2
    bad = requests.post(
        f"{salesforce_emulator.url}/services/oauth2/token", data={**form, "refresh_token": "nope"}, timeout=10
    )
    assert bad.json() == {"error": "invalid_grant", "error_description": "expired access/refresh token"}


# ---- describe ------------------------------------------------------------------------------------


def test_describe_reports_types_lengths_picklists_and_external_ids(sf):
    names = {o["name"]: o for o in sf.describe()["sobjects"]}
    for name, prefix in [
        ("Account", "001"),
        ("Contact", "003"),
        ("Opportunity", "006"),
        ("OpportunityLineItem", "00k"),
        ("Product2", "01t"),
        ("Pricebook2", "01s"),
        ("PricebookEntry", "01u"),
        ("Order", "801"),
        ("OrderItem", "802"),
    ]:
        assert names[name]["keyPrefix"] == prefix
    assert "Credit_Check_Request__e" in names

    fields = {f["name"]: f for f in sf.Account.describe()["fields"]}
    assert fields["ExternalID__c"]["externalId"] is True
    assert fields["ExternalID__c"]["unique"] is True
    assert fields["ExternalID__c"]["type"] == "string"
    assert fields["ExternalID__c"]["length"] == 40
    assert fields["Name"]["nillable"] is False
    status = fields["Sage_Sync_Status__c"]
    assert status["type"] == "picklist"
    assert status["restrictedPicklist"] is True
    assert [v["value"] for v in status["picklistValues"]] == ["Pending", "Synced", "Error"]
    assert fields["CreatedDate"]["createable"] is False

    opportunity = sf.Opportunity.describe()
    by_name = {f["name"]: f for f in opportunity["fields"]}
    assert by_name["AccountId"]["referenceTo"] == ["Account"]
    assert by_name["AccountId"]["relationshipName"] == "Account"
    assert by_name["Sage_Order_Status__c"]["restrictedPicklist"] is True
    assert {
        "childSObject": "OpportunityLineItem",
        "relationshipName": "OpportunityLineItems",
    }.items() <= next(
        r for r in opportunity["childRelationships"] if r["relationshipName"] == "OpportunityLineItems"
    ).items()
    product = {f["name"]: f for f in sf.Product2.describe()["fields"]}
    assert product["Quantity_On_Hand__c"]["type"] == "double"


def test_describe_says_what_a_create_needs_and_what_salesforce_computes_as_a_real_org_does(sf):
    """The keys `sagesf mappings pull` reads: nillable, defaultedOnCreate, calculated, precision."""
    account = {f["name"]: f for f in sf.Account.describe()["fields"]}
    owner, created, tier = account["OwnerId"], account["CreatedDate"], account["Customer_Tier__c"]
    assert (owner["nillable"], owner["defaultedOnCreate"], owner["createable"]) == (False, True, True)
    assert (created["nillable"], created["defaultedOnCreate"], created["createable"]) == (False, True, False)
    assert (tier["nillable"], tier["defaultedOnCreate"], tier["type"]) == (True, False, "picklist")
    assert [v["value"] for v in tier["picklistValues"] if v["active"]] == [
        "Platinum",
        "Gold",
        "Silver",
        "Bronze",
    ]
    assert (account["Credit_Limit__c"]["precision"], account["Credit_Limit__c"]["scale"]) == (16, 2)
    contact = {f["name"]: f for f in sf.Contact.describe()["fields"]}
    assert (contact["Name"]["calculated"], contact["Name"]["createable"]) == (True, False)


# ---- rows -----------------------------------------------------------------------------------------


def test_create_get_update_delete(sf, salesforce_emulator):
    created = sf.Account.create({"Name": f"Row {_tag()}", "BillingCity": "Irvine"})
    record_id = created["id"]
    assert created["success"] is True
    assert len(record_id) == 18
    assert record_id.startswith("001")
    assert ids.normalize(record_id[:15]) == record_id

    record = sf.Account.get(record_id)
    assert record["attributes"]["type"] == "Account"
    assert record["BillingCity"] == "Irvine"
    assert record["IsDeleted"] is False
    assert record["CreatedById"] == salesforce_emulator.user_ids[salesforce_emulator.username]
    assert record["OwnerId"] == record["CreatedById"]
    assert record["CreatedDate"].endswith("+0000")
    assert sf.Account.get(record_id[:15])["Id"] == record_id  # the 15-character form works too

    time.sleep(0.01)
    assert sf.Account.update(record_id, {"BillingCity": "Tustin", "Phone": None}) == 204
    updated = sf.Account.get(record_id)
    assert updated["BillingCity"] == "Tustin"
    assert updated["LastModifiedDate"] > record["LastModifiedDate"]
    assert updated["CreatedDate"] == record["CreatedDate"]

    assert sf.Account.delete(record_id) == 204
    with pytest.raises(SalesforceResourceNotFound) as caught:
        sf.Account.get(record_id)
    assert _error_code(caught.value) == "ENTITY_IS_DELETED"
    query = f"SELECT Id, IsDeleted FROM Account WHERE Id = '{record_id}'"  # noqa: S608 - an id we made
    assert sf.query(query)["totalSize"] == 0
    assert sf.query_all(query, include_deleted=True)["records"][0]["IsDeleted"] is True


def test_derived_fields_and_parent_by_external_id(sf):
    tag = _tag()
    account = sf.Account.create({"Name": f"Parent {tag}", "ExternalID__c": f"P-{tag}"})["id"]
    contact = sf.Contact.create(
        {"FirstName": "Ada", "LastName": "Lovelace", "Account": {"ExternalID__c": f"P-{tag}"}}
    )
    got = sf.Contact.get(contact["id"])
    assert got["AccountId"] == account
    assert got["Name"] == "Ada Lovelace"

    product = sf.Product2.create({"Name": f"Widget {tag}", "ProductCode": f"W-{tag}", "IsActive": True})["id"]
    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    entry = sf.PricebookEntry.create(
        {"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": 12.5, "IsActive": True}
    )["id"]
    opportunity = sf.Opportunity.create(
        {"Name": f"Deal {tag}", "AccountId": account, "StageName": "Prospecting", "CloseDate": "2030-01-31"}
    )["id"]
    line = sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity, "PricebookEntryId": entry, "Quantity": 4, "UnitPrice": 11}
    )
    got_line = sf.OpportunityLineItem.get(line["id"])
    assert got_line["Product2Id"] == product
    assert got_line["ProductCode"] == f"W-{tag}"
    assert got_line["ListPrice"] == 12.5
    assert got_line["UnitPrice"] == 11.0
    assert got_line["TotalPrice"] == 44.0
    assert got_line["Name"] == f"Deal {tag} Widget {tag}"

    sf.Opportunity.update(opportunity, {"StageName": "Closed Won"})
    won = sf.Opportunity.get(opportunity)
    assert (won["IsClosed"], won["IsWon"]) == (True, True)


def test_line_item_takes_a_unit_or_a_total_price(sf):
    tag = _tag()
    product = sf.Product2.create({"Name": f"P {tag}"})["id"]
    standard = sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["records"][0]["Id"]
    entry = sf.PricebookEntry.create({"Pricebook2Id": standard, "Product2Id": product, "UnitPrice": 3})["id"]
    opportunity = sf.Opportunity.create({"Name": tag, "StageName": "Prospecting", "CloseDate": "2030-01-01"})[
        "id"
    ]
    line = sf.OpportunityLineItem.create(
        {"OpportunityId": opportunity, "PricebookEntryId": entry, "Quantity": 2, "TotalPrice": 10}
    )
    assert sf.OpportunityLineItem.get(line["id"])["UnitPrice"] == 5.0
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.OpportunityLineItem.create(
            {"OpportunityId": opportunity, "PricebookEntryId": entry, "Quantity": 2}
        )
    assert _error_code(caught.value) == "FIELD_INTEGRITY_EXCEPTION"


# ---- upsert -------------------------------------------------------------------------------------


def test_upsert_by_external_id_answers_201_200_300_404(sf):
    tag = _tag()
    created = sf.Account.upsert(f"ExternalID__c/U-{tag}", {"Name": "first"}, raw_response=True)
    assert created.status_code == 201
    assert created.json()["created"] is True
    record_id = created.json()["id"]

    updated = sf.Account.upsert(
        f"ExternalID__c/u-{tag}", {"Name": "second"}, raw_response=True
    )  # case-insensitive
    assert updated.status_code == 200
    assert updated.json() == {"id": record_id, "success": True, "errors": [], "created": False}
    assert sf.Account.get_by_custom_id("ExternalID__c", f"U-{tag}")["Name"] == "second"
    old_api: Any = Salesforce(
        instance_url=sf.base_url.split("/services")[0],
        session_id=sf.session_id,
        session=sf.session,
        version="45.0",
    )
    assert old_api.Account.upsert(f"ExternalID__c/U-{tag}", {"Name": "third"}) == 204  # no body before 46.0

    # Contact.ExternalID__c is an external ID but not unique: two matches make the upsert ambiguous
    sf.Contact.create({"LastName": "one", "ExternalID__c": f"C-{tag}"})
    sf.Contact.create({"LastName": "two", "ExternalID__c": f"C-{tag}"})
    with pytest.raises(SalesforceMoreThanOneRecord) as several:
        sf.Contact.upsert(f"ExternalID__c/C-{tag}", {"LastName": "three"})
    assert several.value.status == 300
    assert len(_content(several.value)) == 2
    assert all(url.startswith("/services/data/v62.0/sobjects/Contact/003") for url in _content(several.value))

    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Account.upsert(f"Name/{tag}", {"Phone": "1"})  # Name is not an external ID field
    assert _error_code(missing.value) == "NOT_FOUND"


def test_upsert_value_with_slash_and_spaces(sf):
    from simple_salesforce.format import format_external_id

    value = f"01/AB {_tag()}"
    assert sf.Account.upsert(format_external_id("ExternalID__c", value), {"Name": "slash"}) == 201
    assert sf.Account.get_by_custom_id("ExternalID__c", value)["ExternalID__c"] == value


# ---- validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sobject", "body", "code", "fields"),
    [
        ("Account", {"Phone": "1"}, "REQUIRED_FIELD_MISSING", ["Name"]),
        ("Opportunity", {"Name": "x"}, "REQUIRED_FIELD_MISSING", ["StageName", "CloseDate"]),
        (
            "Account",
            {"Name": "x", "Sage_Sync_Status__c": "Bogus"},
            "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            ["Sage_Sync_Status__c"],
        ),
        ("Account", {"Name": "x" * 256}, "STRING_TOO_LONG", ["Name"]),
        ("Contact", {"LastName": "x", "AccountId": "not-an-id"}, "MALFORMED_ID", ["AccountId"]),
        ("Contact", {"LastName": "x", "AccountId": ids.make_id("006", 1)}, "MALFORMED_ID", ["AccountId"]),
        (
            "Contact",
            {"LastName": "x", "AccountId": ids.make_id("001", 999_999)},
            "INVALID_CROSS_REFERENCE_KEY",
            ["AccountId"],
        ),
        ("Account", {"Name": "x", "Bogus__c": "1"}, "INVALID_FIELD", []),
        ("Account", {"Name": "x", "Id": ids.make_id("001", 5)}, "INVALID_FIELD_FOR_INSERT_UPDATE", ["Id"]),
        (
            "Account",
            {"Name": "x", "CreatedDate": "2020-01-01T00:00:00Z"},
            "INVALID_FIELD_FOR_INSERT_UPDATE",
            ["CreatedDate"],
        ),
        ("Contact", {"LastName": "x", "Email": "not-an-email"}, "INVALID_EMAIL_ADDRESS", ["Email"]),
        (
            "Opportunity",
            {"Name": "x", "StageName": "Prospecting", "CloseDate": "31/01/2030"},
            "JSON_PARSER_ERROR",
            [],
        ),
    ],
)
def test_validation_errors_have_salesforce_codes(sf, sobject, body, code, fields):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        getattr(sf, sobject).create(body)
    assert caught.value.status == 400
    error = _content(caught.value)[0]
    assert set(error) == {"message", "errorCode", "fields"}
    assert error["errorCode"] == code
    assert error["fields"] == fields


def test_duplicate_value_on_unique_external_id(sf):
    value = f"D-{_tag()}"
    first = sf.Account.create({"Name": "one", "ExternalID__c": value})["id"]
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Account.create({"Name": "two", "ExternalID__c": value.lower()})
    assert _error_code(caught.value) == "DUPLICATE_VALUE"
    assert first in _content(caught.value)[0]["message"]


def test_not_found_and_malformed_ids(sf):
    with pytest.raises(SalesforceResourceNotFound) as unknown_object:
        sf.restful("sobjects/NoSuchThing__c/describe")
    assert _error_code(unknown_object.value) == "NOT_FOUND"
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Account.get(ids.make_id("001", 888_888))
    assert _error_code(missing.value) == "NOT_FOUND"
    with pytest.raises(SalesforceMalformedRequest) as malformed:
        sf.Account.update("001garbage", {"Name": "x"})
    assert _error_code(malformed.value) == "MALFORMED_ID"


def test_unknown_record_type_in_collection_is_invalid_type(sf):
    result = sf.restful(
        "composite/sobjects", method="POST", json={"records": [{"attributes": {"type": "Nope"}, "Name": "x"}]}
    )
    assert result[0]["success"] is False
    assert result[0]["errors"][0]["statusCode"] == "INVALID_TYPE"


# ---- Collections --------------------------------------------------------------------------------


def _accounts(tag: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {"attributes": {"type": "Account"}, "Name": f"{tag} {i:04d}", "ExternalID__c": f"{tag}-{i:04d}"}
        for i in range(start, start + count)
    ]


def test_collections_all_or_none_rolls_everything_back(sf):
    tag = _tag()
    records = _accounts(tag, 3)
    records[1]["Name"] = None
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    assert [r["success"] for r in results] == [False, False, False]
    assert results[1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    for index in (0, 2):
        assert results[index]["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
        assert "id" not in results[index]
    assert sf.query(f"SELECT COUNT() FROM Account WHERE Name LIKE '{tag}%'")["totalSize"] == 0  # noqa: S608


def test_collections_partial_success_without_all_or_none(sf):
    tag = _tag()
    records = _accounts(tag, 3)
    records[1]["Sage_Sync_Status__c"] = "Nope"
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert [r["success"] for r in results] == [True, False, True]
    assert results[1]["errors"] == [
        {
            "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "message": "Sage Sync Status: bad value for restricted picklist field: Nope",
            "fields": ["Sage_Sync_Status__c"],
        }
    ]
    assert sf.query(f"SELECT COUNT() FROM Account WHERE Name LIKE '{tag}%'")["totalSize"] == 2  # noqa: S608

    update = [
        {"attributes": {"type": "Account"}, "Id": results[0]["id"], "Phone": "555"},
        {"attributes": {"type": "Account"}, "Id": ids.make_id("001", 777_777), "Phone": "555"},
    ]
    updated = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": update})
    assert updated[0] == {"id": results[0]["id"], "success": True, "errors": []}
    assert updated[1]["errors"][0]["statusCode"] == "NOT_FOUND"
    assert sf.Account.get(results[0]["id"])["Phone"] == "555"

    deleted = sf.restful(f"composite/sobjects?ids={results[0]['id']},{results[2]['id']}", method="DELETE")
    assert [r["success"] for r in deleted] == [True, True]


def test_collections_upsert_reports_created_per_record(sf):
    tag = _tag()
    first = sf.restful(
        "composite/sobjects/Account/ExternalID__c",
        method="PATCH",
        json={"allOrNone": False, "records": _accounts(tag, 2)},
    )
    assert [r["created"] for r in first] == [True, True]
    second = sf.restful(
        "composite/sobjects/Account/ExternalID__c",
        method="PATCH",
        json={"allOrNone": False, "records": _accounts(tag, 3)},
    )
    assert [r["created"] for r in second] == [False, False, True]
    assert [r["id"] for r in second[:2]] == [r["id"] for r in first]

    twice = _accounts(tag, 1, start=10) * 2
    duplicate = sf.restful(
        "composite/sobjects/Account/ExternalID__c", method="PATCH", json={"records": twice}
    )
    assert [r["errors"][0]["statusCode"] for r in duplicate] == ["DUPLICATE_EXTERNAL_ID"] * 2


def test_collections_refuse_more_than_200_records(sf):
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("composite/sobjects", method="POST", json={"records": _accounts(_tag(), 201)})
    assert _error_code(caught.value) == "EXCEEDED_ID_LIMIT"


# ---- query paging ---------------------------------------------------------------------------------


def test_query_pages_with_next_records_url(sf):
    tag = _tag()
    for start in (0, 200, 400):
        sf.restful(
            "composite/sobjects",
            method="POST",
            json={"records": _accounts(tag, 200 if start < 400 else 50, start)},
        )
    query = f"SELECT Id, Name FROM Account WHERE Name LIKE '{tag}%' ORDER BY Name"  # noqa: S608
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = sf.query(query, headers=headers)
    assert first["totalSize"] == 450
    assert first["done"] is False
    assert len(first["records"]) == 200
    assert first["nextRecordsUrl"].startswith("/services/data/v62.0/query/01g")
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=headers)
    assert second["records"][0]["Name"] == f"{tag} 0200"
    everything = sf.query_all(query)
    assert [r["Name"] for r in everything["records"]] == [f"{tag} {i:04d}" for i in range(450)]

    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.query_more("01g5e00000000zz-2000")
    assert _error_code(caught.value) == "INVALID_QUERY_LOCATOR"


# ---- Bulk API 2.0 ---------------------------------------------------------------------------------


def test_bulk_v2_upsert_reports_successful_and_failed_rows(sf):
    tag = _tag()
    rows = [
        {"ExternalID__c": f"{tag}-{i}", "Name": f"Bulk {tag} {i}", "Sage_Sync_Status__c": "Synced"}
        for i in range(250)
    ]
    rows[7]["Name"] = ""  # empty leaves Name unset: required -> fails
    rows[9]["Sage_Sync_Status__c"] = "Bogus"
    result = sf.bulk2.Account.upsert(records=rows, external_id_field="ExternalID__c", wait=0.05)
    assert result[0]["numberRecordsProcessed"] == 250
    assert result[0]["numberRecordsFailed"] == 2
    job_id = result[0]["job_id"]

    successes = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(job_id))))
    assert len(successes) == 248
    assert all(row["sf__Created"] == "true" and row["sf__Id"].startswith("001") for row in successes)
    failures = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_failed_records(job_id))))
    errors = {row["ExternalID__c"]: row["sf__Error"] for row in failures}
    assert errors[f"{tag}-7"].startswith("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name")
    assert errors[f"{tag}-9"].startswith("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST:")

    again = sf.bulk2.Account.upsert(
        records=[{"ExternalID__c": f"{tag}-1", "Name": f"Renamed {tag}"}],
        external_id_field="ExternalID__c",
        wait=0.05,
    )
    renamed = list(csv.DictReader(io.StringIO(sf.bulk2.Account.get_successful_records(again[0]["job_id"]))))
    assert renamed[0]["sf__Created"] == "false"
    assert sf.Account.get_by_custom_id("ExternalID__c", f"{tag}-1")["Name"] == f"Renamed {tag}"


def test_bulk_v2_job_with_unknown_column_fails(sf):
    from simple_salesforce.exceptions import SalesforceOperationError

    with pytest.raises(SalesforceOperationError, match="Field name not found : Bogus__c"):
        sf.bulk2.Account.insert(records=[{"Name": "x", "Bogus__c": "1"}], wait=0.05)


def _jobs(sf: Salesforce, method: str, path: str, **kwargs: Any) -> requests.Response:
    """A raw Bulk API 2.0 query-job request, to see status codes and headers as they come."""
    return sf.session.request(method, f"{sf.base_url}jobs/query{path}", headers=sf.headers, **kwargs)


def _finished(sf: Salesforce, job_id: str) -> dict[str, Any]:
    for _ in range(200):
        info: dict[str, Any] = _jobs(sf, "GET", f"/{job_id}").json()
        if info["state"] in ("JobComplete", "Failed", "Aborted"):
            return info
        time.sleep(0.02)
    raise AssertionError(f"query job {job_id} did not finish")


def test_bulk_v2_query_job_pages_csv_by_locator_and_max_records(sf, salesforce_emulator):
    tag = _tag()
    sf.restful("composite/sobjects", method="POST", json={"records": _accounts(tag, 120)})
    parent = sf.Account.create({"Name": f"{tag} parent", "ExternalID__c": f"{tag}-p"})["id"]
    sf.Contact.create({"LastName": f'{tag} "Quoted", two\nlines', "AccountId": parent})
    sf.Contact.create({"LastName": f"{tag} orphan"})

    # unmodified simple-salesforce reads every set, following Sforce-Locator
    pages = list(
        sf.bulk2.Account.query(f"SELECT Id, Name FROM Account WHERE Name LIKE '{tag} 0%'", max_records=50)  # noqa: S608 - a hex tag
    )
    rows = [row for page in pages for row in csv.DictReader(io.StringIO(page))]
    assert [len(list(csv.DictReader(io.StringIO(p)))) for p in pages] == [50, 50, 20]
    assert sorted(r["Name"] for r in rows) == [f"{tag} {i:04d}" for i in range(120)]

    before = salesforce_emulator.admin("GET", "/admin/api-usage")["used"]
    soql = f"SELECT LastName, Account.Name, IsDeleted, CreatedDate FROM Contact WHERE LastName LIKE '{tag}%'"  # noqa: S608
    created = _jobs(sf, "POST", "", json={"operation": "query", "query": soql})
    assert created.status_code == 200
    assert created.json()["state"] == "UploadComplete"
    assert created.json()["jobType"] == "V2Query"
    job_id = created.json()["id"]
    assert _finished(sf, job_id)["numberRecordsProcessed"] == 2
    first = _jobs(sf, "GET", f"/{job_id}/results", params={"maxRecords": 1})
    assert first.headers["Content-Type"].startswith("text/csv")
    assert first.headers["Sforce-NumberOfRecords"] == "1"
    locator = first.headers["Sforce-Locator"]
    assert locator not in ("", "null")
    second = _jobs(sf, "GET", f"/{job_id}/results", params={"maxRecords": 1, "locator": locator})
    assert second.headers["Sforce-Locator"] == "null"
    text = first.text + second.text.split("\n", 1)[1]
    assert text.splitlines()[0] == '"LastName","Account.Name","IsDeleted","CreatedDate"'
    found = {row["LastName"]: row for row in csv.DictReader(io.StringIO(text))}
    quoted = found[f'{tag} "Quoted", two\nlines']
    assert quoted["Account.Name"] == f"{tag} parent"
    assert quoted["IsDeleted"] == "false"
    assert quoted["CreatedDate"].endswith("Z")
    assert found[f"{tag} orphan"]["Account.Name"] == ""  # null: an empty cell
    # the same set again, as long as the job exists
    assert (
        _jobs(sf, "GET", f"/{job_id}/results", params={"maxRecords": 1, "locator": locator}).text
        == second.text
    )
    # every call counts against the daily API limit: create, poll(s), two result sets, the repeat
    assert salesforce_emulator.admin("GET", "/admin/api-usage")["used"] >= before + 5


def test_bulk_v2_query_job_refusals_and_life_cycle(sf, salesforce_emulator):
    tag = _tag()
    refused = _jobs(
        sf,
        "POST",
        "",
        json={"operation": "query", "query": "SELECT Id, (SELECT Id FROM Contacts) FROM Account"},
    )
    assert refused.status_code == 400
    assert "parent-to-child" in refused.json()[0]["message"]
    unknown = _jobs(sf, "POST", "", json={"operation": "query", "query": "SELECT Bogus__c FROM Account"})
    assert (unknown.status_code, unknown.json()[0]["errorCode"]) == (400, "INVALID_FIELD")
    assert (
        _jobs(sf, "POST", "", json={"operation": "upsert", "query": "SELECT Id FROM Account"}).status_code
        == 400
    )

    gone = sf.Account.create({"Name": f"{tag} gone"})["id"]
    sf.Account.delete(gone)
    hidden = sf.Account.create({"Name": f"{tag} hidden"})["id"]
    salesforce_emulator.admin(
        "POST", "/admin/faults/hide-records", {"ids": [hidden], "username": salesforce_emulator.username}
    )
    soql = f"SELECT Id, IsDeleted FROM Account WHERE Name LIKE '{tag}%'"  # noqa: S608 - a hex tag
    job_id = _jobs(sf, "POST", "", json={"operation": "queryAll", "query": soql}).json()["id"]
    assert _finished(sf, job_id)["state"] == "JobComplete"
    rows = list(csv.DictReader(io.StringIO(_jobs(sf, "GET", f"/{job_id}/results").text)))
    assert [(r["Id"], r["IsDeleted"]) for r in rows] == [(gone, "true")]  # deleted included, hidden left out
    salesforce_emulator.admin("DELETE", "/admin/faults")

    other_version = sf.session.request(
        "GET", f"{sf.base_url.replace('v62.0', 'v61.0')}jobs/query/{job_id}/results", headers=sf.headers
    )
    assert other_version.status_code == 409
    assert _jobs(sf, "PATCH", f"/{job_id}", json={"state": "Aborted"}).status_code == 409  # finished
    assert job_id in {j["id"] for j in _jobs(sf, "GET", "").json()["records"]}
    assert _jobs(sf, "DELETE", f"/{job_id}").status_code == 204
    assert _jobs(sf, "GET", f"/{job_id}").status_code == 404
    assert _jobs(sf, "GET", f"/{job_id}/results").status_code == 404


# ---- limits and faults ----------------------------------------------------------------------------


def test_every_rest_response_reports_api_usage(sf, salesforce_emulator):
    before = salesforce_emulator.admin("GET", "/admin/api-usage")["used"]
    result = sf.restful("limits", method="GET")  # uses _call_salesforce, which parses Sforce-Limit-Info
    assert result["DailyApiRequests"]["Max"] == 100_000
    sf.query("SELECT COUNT() FROM Account")
    usage = sf.api_usage["api-usage"]
    assert usage.used == before + 2
    assert usage.total == 100_000
    assert salesforce_emulator.admin("GET", "/admin/api-usage")["used"] == before + 2


def test_requests_beyond_the_daily_limit_get_403(sf, salesforce_emulator):
    used = salesforce_emulator.admin("GET", "/admin/api-usage")["used"]
    salesforce_emulator.admin("PUT", "/admin/api-usage", {"max": used + 2})
    try:
        sf.query("SELECT COUNT() FROM Account")
        sf.query("SELECT COUNT() FROM Account")
        with pytest.raises(SalesforceRefusedRequest) as caught:
            sf.query("SELECT COUNT() FROM Account")
        assert caught.value.status == 403
        assert _content(caught.value) == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
    finally:
        salesforce_emulator.admin("PUT", "/admin/api-usage", {"max": 100_000})
    sf.query("SELECT COUNT() FROM Account")


def test_rate_limit_storm_refuses_then_recovers(sf, salesforce_emulator):
    salesforce_emulator.admin("POST", "/admin/faults/storm", {"seconds": 0.6})
    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.query("SELECT COUNT() FROM Account")
    assert _error_code(caught.value) == "REQUEST_LIMIT_EXCEEDED"
    time.sleep(0.7)
    assert sf.query("SELECT COUNT() FROM Account")["done"] is True


@pytest.mark.parametrize(("status", "code"), [(500, "UNKNOWN_EXCEPTION"), (503, "SERVER_UNAVAILABLE")])
def test_next_requests_fail_with_5xx(sf, salesforce_emulator, status, code):
    salesforce_emulator.admin("POST", "/admin/faults/errors", {"count": 2, "status": status})
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError) as caught:
            sf.query("SELECT COUNT() FROM Account")
        assert caught.value.status == status
        assert _error_code(caught.value) == code
    assert sf.query("SELECT COUNT() FROM Account")["done"] is True


def test_added_latency(sf, salesforce_emulator):
    salesforce_emulator.admin("POST", "/admin/faults/latency", {"ms": 300})
    try:
        started = time.monotonic()
        sf.query("SELECT COUNT() FROM Account")
        assert time.monotonic() - started >= 0.3
    finally:
        salesforce_emulator.admin("DELETE", "/admin/faults")


def test_a_query_refusal_answers_403_or_400_for_that_object_until_cleared(sf, salesforce_emulator):
    salesforce_emulator.admin(
        "POST", "/admin/faults/query-refusal", {"object": "Opportunity", "errorCode": "INSUFFICIENT_ACCESS"}
    )
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.query("SELECT Id FROM Opportunity LIMIT 1")
    assert refused.value.status == 403
    assert _error_code(refused.value) == "INSUFFICIENT_ACCESS"
    assert sf.query("SELECT COUNT() FROM Account")["done"] is True  # other objects answer
    salesforce_emulator.admin(
        "POST",
        "/admin/faults/query-refusal",
        {"object": "Account", "errorCode": "INVALID_FIELD", "field": "Credit_Limit__c"},
    )
    with pytest.raises(SalesforceMalformedRequest) as deleted_field:
        sf.query_all("SELECT Id, Credit_Limit__c FROM Account", include_deleted=True)
    assert deleted_field.value.status == 400
    assert _error_code(deleted_field.value) == "INVALID_FIELD"
    assert "Credit_Limit__c" in _content(deleted_field.value)[0]["message"]
    faults = salesforce_emulator.admin("GET", "/admin/faults")
    assert faults["query_refusals"] == {"Opportunity": "INSUFFICIENT_ACCESS", "Account": "INVALID_FIELD"}
    salesforce_emulator.admin("DELETE", "/admin/faults")
    assert sf.query("SELECT Id FROM Opportunity LIMIT 1")["done"] is True


def test_hidden_records_are_left_out_of_that_users_queries_only(sf, salesforce_emulator):
    t = _tag()
    shown = sf.Account.create({"Name": f"shown {t}"})["id"]
    hidden = sf.Account.create({"Name": f"hidden {t}"})["id"]
    salesforce_emulator.admin(
        "POST", "/admin/faults/hide-records", {"ids": [hidden], "username": salesforce_emulator.username}
    )
    query = f"SELECT Id FROM Account WHERE Name LIKE '% {t}'"  # noqa: S608 - a hex tag
    assert [r["Id"] for r in sf.query(query)["records"]] == [shown]
    assert [r["Id"] for r in sf.query_all(query, include_deleted=True)["records"]] == [shown]
    other = salesforce_emulator.connect_other()
    assert {r["Id"] for r in other.query(query)["records"]} == {shown, hidden}
    salesforce_emulator.admin("DELETE", "/admin/faults")
    assert {r["Id"] for r in sf.query(query)["records"]} == {shown, hidden}


def test_a_fault_request_that_makes_no_sense_is_refused(salesforce_emulator):
    for path, body in [
        ("/admin/faults/query-refusal", {"object": "Opportunity", "errorCode": "NOPE"}),
        ("/admin/faults/query-refusal", {"object": "NoSuchThing", "errorCode": "INSUFFICIENT_ACCESS"}),
        ("/admin/faults/hide-records", {"ids": "001"}),
        ("/admin/faults/hide-records", {"ids": ["001"], "username": "nobody@x"}),
    ]:
        with pytest.raises(requests.HTTPError) as refused:
            salesforce_emulator.admin("POST", path, body)
        assert refused.value.response.status_code == 400


def test_expired_tokens_get_401_and_credential_clients_log_in_again(sf, salesforce_emulator):
    token_only: Any = Salesforce(
        instance_url=salesforce_emulator.url,
        session_id=sf.session_id,
        session=emulator_session(salesforce_emulator.url),
    )
    old_token = sf.session_id
    assert salesforce_emulator.admin("POST", "/admin/tokens/expire")["expired"] >= 1
    with pytest.raises(SalesforceExpiredSession) as caught:
        token_only.query("SELECT COUNT() FROM Account")
    assert caught.value.status == 401
    assert _content(caught.value) == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert sf.query("SELECT COUNT() FROM Account")["done"] is True  # simple-salesforce refreshed by itself
    assert sf.session_id != old_token
    created = sf.Account.create({"Name": f"after refresh {_tag()}"})  # SFType calls refresh too
    assert created["success"] is True


def test_session_timeout_expires_tokens(tmp_path):
    emulator = start_emulator(tmp_path, session_timeout_seconds=0.5)
    try:
        sf: Any = emulator.connect()
        token_only: Any = Salesforce(
            instance_url=emulator.url, session_id=sf.session_id, session=emulator_session(emulator.url)
        )
        assert token_only.query("SELECT COUNT() FROM User")["totalSize"] == 2
        time.sleep(0.6)
        with pytest.raises(SalesforceExpiredSession):
            token_only.query("SELECT COUNT() FROM User")
    finally:
        emulator.stop()


# ---- platform events --------------------------------------------------------------------------------


def test_publish_platform_event(sf):
    result = sf.Credit_Check_Request__e.create(
        {"Correlation_Id__c": _tag(), "Account_Id__c": ids.make_id("001", 1), "Amount__c": 1250.5}
    )
    assert result["success"] is True
    assert result["errors"][0]["statusCode"] == "OPERATION_ENQUEUED"
    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.Credit_Check_Request__e.create({"Correlation_Id__c": "x"})
    assert _content(caught.value)[0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert _content(caught.value)[0]["fields"] == ["Account_Id__c", "Amount__c"]


# ---- persistence --------------------------------------------------------------------------------


def test_state_survives_a_restart(tmp_path):
    emulator = start_emulator(tmp_path)
    try:
        sf: Any = emulator.connect()
        account = sf.Account.create({"Name": "Durable", "ExternalID__c": "DUR-1"})["id"]
        sf.Account.delete(sf.Account.create({"Name": "Gone"})["id"])
        used = emulator.admin("GET", "/admin/api-usage")["used"]
        emulator.restart()
        assert sf.Account.get(account)["Name"] == "Durable"  # the same token still works
        assert sf.Account.get_by_custom_id("ExternalID__c", "dur-1")["Id"] == account
        deleted = sf.query_all("SELECT Name FROM Account WHERE IsDeleted = true", include_deleted=True)
        assert [r["Name"] for r in deleted["records"]] == ["Gone"]
        assert emulator.admin("GET", "/admin/api-usage")["used"] >= used + 3
        new_id = sf.Account.create({"Name": "After restart"})["id"]
        assert new_id > account  # ids keep counting, never reused
        with pytest.raises(SalesforceMalformedRequest):
            sf.Account.create({"Name": "dup", "ExternalID__c": "DUR-1"})
    finally:
        emulator.stop()


# ---- change events handed to the streaming half --------------------------------------------------------


class RecordingEventLog:
    """Stands in for sandbox.salesforce.events.EventLog: remembers what it was given."""

    def __init__(self) -> None:
        self.changes: list[Any] = []
        self.published: list[tuple[str, dict[str, Any]]] = []

    def record_change(self, change: Any) -> int:
        self.changes.append(change)
        return len(self.changes)

    def publish(self, channel: str, payload: dict[str, Any]) -> int:
        self.published.append((channel, payload))
        return len(self.published)


@pytest.fixture
def in_process_emulator(tmp_path) -> Iterator[tuple[RunningEmulator, RecordingEventLog]]:
    """The emulator app in this process (a thread), with a recording event log instead of streaming."""
    log = RecordingEventLog()
    port = free_port()
    _, public = key_pair()
    config = EmulatorConfig.load(
        None,
        data_dir=tmp_path,
        port=port,
        apps=[
            {"client_id": "app", "client_secret": "secret-value", "jwt_certificate": public, "run_as": "u@x"}
        ],
        users=[{"username": "u@x", "password": "pw-value"}],
    )
    app = create_app(config, event_log=log)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    handle = RunningEmulator(
        process=None,  # type: ignore[arg-type]
        url=f"http://127.0.0.1:{port}",
        config_path=tmp_path / "none",
        client_id="app",
        client_secret="secret-value",
        username="u@x",
        password="pw-value",
        security_token="",
        private_key_pem="",
        other_username="",
        other_password="",
    )
    try:
        yield handle, log
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


def test_committed_changes_reach_the_event_log(in_process_emulator):
    emulator, log = in_process_emulator
    sf: Any = emulator.connect(client="sagesf-sink")
    user_id = emulator.admin("GET", "/admin/info")["users"]["u@x"]

    account = sf.Account.create({"Name": "Acme", "ExternalID__c": "A-1"})["id"]
    created = log.changes[-1]
    assert (created.entity, created.change_type, created.record_ids) == ("Account", "CREATE", [account])
    assert created.fields["Name"] == "Acme"
    assert created.fields["ExternalID__c"] == "A-1"
    assert "Phone" not in created.fields  # CREATE carries non-null fields only
    assert created.commit_user == user_id
    assert created.origin_client == "sagesf-sink"
    assert created.sequence_number == 1

    sf.Account.update(account, {"Phone": "555", "Name": "Acme"})  # Name unchanged
    updated = log.changes[-1]
    assert updated.change_type == "UPDATE"
    assert updated.changed_fields == ["Phone", "LastModifiedDate"]
    assert set(updated.fields) == {"Phone", "LastModifiedDate"}
    sf.Account.update(account, {"Phone": None})
    assert log.changes[-1].fields["Phone"] is None

    before = len(log.changes)
    results = sf.restful(
        "composite/sobjects/Account/ExternalID__c",
        method="PATCH",
        json={
            "allOrNone": False,
            "records": [
                {"attributes": {"type": "Account"}, "ExternalID__c": "A-1", "Name": "Acme 2"},
                {"attributes": {"type": "Account"}, "ExternalID__c": "A-2", "Name": "Beta"},
                {"attributes": {"type": "Account"}, "ExternalID__c": "A-3"},  # fails: no Name
            ],
        },
    )
    assert [r["success"] for r in results] == [True, True, False]
    batch = log.changes[before:]
    assert [c.change_type for c in batch] == ["UPDATE", "CREATE"]
    assert len({c.transaction_key for c in batch}) == 1
    assert [c.sequence_number for c in batch] == [1, 2]
    assert batch[0].transaction_key != created.transaction_key

    before = len(log.changes)
    sf.restful(
        "composite/sobjects",
        method="POST",
        json={
            "allOrNone": True,
            "records": [
                {"attributes": {"type": "Account"}, "Name": "x"},
                {"attributes": {"type": "Account"}},
            ],
        },
    )
    assert len(log.changes) == before  # rolled back: nothing committed, nothing emitted

    contact = sf.Contact.create({"LastName": "Child", "AccountId": account})["id"]
    sf.Account.delete(account)
    deletes = log.changes[-2:]
    assert [(c.entity, c.change_type, c.fields) for c in deletes] == [
        ("Account", "DELETE", {}),
        ("Contact", "DELETE", {}),
    ]
    assert deletes[1].record_ids == [contact]  # the cascade is part of the same transaction

    restored = emulator.admin("POST", "/admin/undelete", {"ids": [account]})
    assert restored[0]["success"] is True
    assert log.changes[-1].change_type == "UNDELETE"
    assert log.changes[-1].fields["Name"] == "Acme 2"

    sf.Credit_Check_Request__e.create({"Correlation_Id__c": "c-1", "Account_Id__c": account, "Amount__c": 10})
    channel, payload = log.published[-1]
    assert channel == "/event/Credit_Check_Request__e"
    assert payload["Correlation_Id__c"] == "c-1"
    assert payload["CreatedById"] == user_id
