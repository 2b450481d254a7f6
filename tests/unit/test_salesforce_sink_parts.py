"""The Salesforce sink's decisions that need no server: budget, coalescing, commands, errors, SOQL, CSV.

The integration tests (tests/integration/test_salesforce_sink.py) show the same behaviour end to
end against the emulator; these pin down the edges (ties, case, probes, escapes) quickly.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import SecretStr, ValidationError

from connectors.salesforce.auth import AccessToken, jwt_audience
from connectors.salesforce.budget import ApiBudget, parse_limit_info
from connectors.salesforce.client import _resource
from connectors.salesforce.commands import (
    InvalidCommand,
    Operation,
    Write,
    coalesce,
    parse_command,
    rejected_record,
)
from connectors.salesforce.config import SalesforceSettings
from connectors.salesforce.errors import (
    BudgetSpent,
    RateLimited,
    SalesforceRecordError,
    SalesforceUnavailable,
    record_failure,
    request_failure,
)
from connectors.salesforce.soql import id_list, identifier, literal, quote, quote_like
from connectors.salesforce.writer import SalesforceWriter, _bulk_errors
from sagesf.config import ConfigError, load_settings
from sandbox.salesforce.config import key_pair

# --- the API budget governor -----------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_stops_calls_at_its_share_and_probes_once_per_recheck_interval():
    clock = Clock()
    budget = ApiBudget(0.5, recheck_seconds=60, clock=clock)
    budget.check()  # no reading yet: the first call is the first reading
    budget.observe(4_999, 10_000)
    budget.check()  # 4,999 < 5,000: one more call fits
    budget.observe(5_000, 10_000)
    with pytest.raises(BudgetSpent) as spent:
        budget.check()
    assert spent.value.retry_after == pytest.approx(60)
    clock.now += 59
    with pytest.raises(BudgetSpent):
        budget.check()
    clock.now += 1
    budget.check()  # the probe: the next real call, whose answer is the next reading
    with pytest.raises(BudgetSpent):  # no second probe before that answer or another interval
        budget.check()
    budget.observe(120, 10_000)  # the rolling window freed room
    budget.check()


def test_limit_info_is_read_with_or_without_per_app_usage():
    assert parse_limit_info("api-usage=18/5000") == (18, 5000)
    assert parse_limit_info("api-usage=25/5000; per-app-api-usage=17/250(appName=sagesf)") == (25, 5000)
    assert parse_limit_info("per-app-api-usage=17/250(appName=x)") is None
    assert parse_limit_info(None) is None


# --- commands ---------------------------------------------------------------------------------------


def cmd(**overrides: Any) -> dict[str, Any]:
    value: dict[str, Any] = {
        "envelope": {"correlation_id": "corr-1"},
        "command_id": "c1",
        "operation": "UPSERT",
        "sobject": "Product2",
        "record_id": None,
        "external_id_field": "Sage_Item_Code__c",
        "external_id": "WIDGET-1",
        "fields": {"Quantity_On_Hand__c": 5.0},
        "source_event_time": None,
    }
    value.update(overrides)
    return value


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"operation": "DELETE"}, "operation"),
        ({"operation": "UNKNOWN"}, "operation"),
        ({"sobject": "Product2; DROP"}, "sobject"),
        ({"operation": "UPDATE", "record_id": None}, "record_id"),
        ({"operation": "UPDATE", "record_id": "not-an-id"}, "record_id"),
        ({"external_id_field": None}, "external_id_field"),
        ({"external_id_field": "Sage Item"}, "external_id_field"),
        ({"external_id": " "}, "external_id"),
        ({"fields": {"Id": "001"}}, "Id"),
        ({"fields": {"sage_item_code__c": "X"}}, "sage_item_code__c"),
        ({"fields": {"Bad Name": 1}}, "fields"),
        ({"fields": {"Name__c__x__y": 1}}, "fields"),  # not a Salesforce API name
        ({"sobject": "Product2_"}, "sobject"),
        ({"external_id_field": "Sage__Item__Code__c"}, "external_id_field"),
        ({"fields": {"Quantity_On_Hand__c": float("nan")}}, "Quantity_On_Hand__c"),
        ({"command_id": ""}, "command_id"),
    ],
)
def test_malformed_commands_are_refused_naming_the_field(overrides: dict[str, Any], field: str):
    with pytest.raises(InvalidCommand) as refused:
        parse_command(cmd(**overrides))
    assert refused.value.field == field


def test_a_malformed_command_still_gets_a_rejected_result():
    error = InvalidCommand("an UPDATE needs record_id", field="record_id")
    record = rejected_record(cmd(operation="UPDATE"), error)
    assert record["outcome"] == "REJECTED"
    assert record["api"] == "NONE"
    assert record["operation"] == "UPDATE"
    assert record["correlation_id"] == "corr-1"
    assert record["error"] == {
        "status_code": None,
        "message": "an UPDATE needs record_id",
        "fields": ["record_id"],
    }
    assert rejected_record(cmd(operation="MERGE"), error)["operation"] == "UNKNOWN"


def _at(seconds: int) -> datetime:
    return datetime(2025, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)


def test_coalescing_keeps_the_latest_value_per_field_by_source_time_then_arrival():
    commands = [
        parse_command(
            cmd(
                command_id="a",
                fields={"Quantity_On_Hand__c": 3.0, "Description": "x"},
                source_event_time=_at(3),
            )
        ),
        parse_command(cmd(command_id="b", fields={"Quantity_On_Hand__c": 1.0}, source_event_time=_at(1))),
        parse_command(
            cmd(command_id="c", external_id="widget-1", fields={"description": "y"}, source_event_time=_at(2))
        ),
        parse_command(cmd(command_id="d", external_id="OTHER", fields={"Quantity_On_Hand__c": 9.0})),
        parse_command(cmd(command_id="e", fields={"IsActive": True}, source_event_time=_at(3))),  # tie with a
    ]
    writes = coalesce(list(enumerate(commands)))
    assert [w.members for w in writes] == [[0, 1, 2, 4], [3]]
    first = writes[0]
    assert first.operation is Operation.UPSERT
    assert first.key_field == "Sage_Item_Code__c"
    # a (t=3) beats b (t=1) for the quantity; a's Description (t=3) beats c's (t=2), whatever the spelling
    assert first.fields == {"Quantity_On_Hand__c": 3.0, "Description": "x", "IsActive": True}
    assert writes[1].fields == {"Quantity_On_Hand__c": 9.0}


def test_updates_by_15_and_18_character_ids_of_one_record_coalesce():
    short = parse_command(cmd(operation="UPDATE", record_id="01t5e0000000001", fields={"Name": "a"}))
    long_ = parse_command(cmd(operation="UPDATE", record_id="01t5e0000000001AAA", fields={"Name": "b"}))
    [write] = coalesce([(0, short), (1, long_)])
    assert write.key_field == "Id"
    assert write.key_value == "01t5e0000000001AAA"
    assert write.fields == {"Name": "b"}


def test_inserts_are_never_merged_except_a_redelivered_one():
    """INSERT publishes a platform event: two replies are two messages, the same one twice is one."""

    def reply(command_id: str, correlation: str) -> Any:
        return parse_command(
            cmd(
                command_id=command_id,
                operation="INSERT",
                sobject="Credit_Check_Reply__e",
                external_id_field=None,
                external_id=None,
                fields={"Correlation_Id__c": correlation, "Approved__c": True},
            )
        )

    writes = coalesce([(0, reply("r1", "a")), (1, reply("r2", "b")), (2, reply("r1", "a"))])
    assert [(w.key_field, w.key_value, w.members) for w in writes] == [("", "r1", [0, 2]), ("", "r2", [1])]
    assert writes[1].fields == {"Correlation_Id__c": "b", "Approved__c": True}


# --- Salesforce's failures --------------------------------------------------------------------------


def test_request_failures_map_onto_the_taxonomy():
    limit = [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
    assert isinstance(request_failure(403, limit, rate_limit_pause=30), RateLimited)
    assert request_failure(403, limit, rate_limit_pause=30).retry_after == 30  # type: ignore[attr-defined]
    for status in (500, 503, 401, 408, 429):
        assert isinstance(request_failure(status, [], rate_limit_pause=1), SalesforceUnavailable)
    denied = [{"message": "no access", "errorCode": "INSUFFICIENT_ACCESS"}]
    assert isinstance(request_failure(403, denied, rate_limit_pause=1), SalesforceUnavailable)
    gone = request_failure(
        404,
        [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}],
        rate_limit_pause=1,
    )
    assert isinstance(gone, SalesforceRecordError)
    assert gone.status_code == "NOT_FOUND"


def test_record_failures_are_permanent_except_the_transient_codes():
    refused = record_failure(
        [{"statusCode": "STRING_TOO_LONG", "message": "Name: data value too large", "fields": ["Name"]}],
        rate_limit_pause=1,
    )
    assert isinstance(refused, SalesforceRecordError)
    assert (refused.status_code, refused.fields, refused.field) == ("STRING_TOO_LONG", ["Name"], "Name")
    assert str(refused).startswith("STRING_TOO_LONG: Name: data value too large")
    locked = record_failure([{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}], rate_limit_pause=1)
    assert isinstance(locked, SalesforceUnavailable)
    limited = record_failure([{"statusCode": "REQUEST_LIMIT_EXCEEDED", "message": "x"}], rate_limit_pause=5)
    assert isinstance(limited, RateLimited)


def test_bulk_error_strings_split_into_code_message_and_fields():
    text = "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name -- INVALID_FIELD:bad: :A,B --"
    assert _bulk_errors(text) == [
        {
            "statusCode": "REQUIRED_FIELD_MISSING",
            "message": "Required fields are missing: [Name]",
            "fields": ["Name"],
        },
        {"statusCode": "INVALID_FIELD", "message": "bad:", "fields": ["A", "B"]},
    ]


# --- the Bulk CSV -----------------------------------------------------------------------------------


def test_bulk_csv_leaves_unset_fields_alone_and_clears_null_ones():
    writes = [
        Write(
            Operation.UPSERT,
            "Product2",
            "Sage_Item_Code__c",
            "A",
            {"Quantity_On_Hand__c": 1e-05, "IsActive": True},
        ),
        Write(
            Operation.UPSERT, "Product2", "Sage_Item_Code__c", "B,1", {"description": None, "isactive": False}
        ),
        Write(Operation.UPSERT, "Product2", "Sage_Item_Code__c", "C", {"Description": ""}),
    ]
    text = SalesforceWriter._csv(None, writes, [0, 1, 2])  # type: ignore[arg-type]
    assert text.splitlines() == [
        "Sage_Item_Code__c,description,IsActive,Quantity_On_Hand__c",
        "A,,true,0.00001",
        '"B,1",#N/A,false,',
        "C,#N/A,,",
    ]


# --- SOQL -------------------------------------------------------------------------------------------


def test_quote_escapes_everything_that_ends_or_bends_a_literal():
    assert quote("O'Brien") == r"'O\'Brien'"
    assert quote("' OR Name != '") == r"'\' OR Name != \''"
    assert quote('a\\b"c\nd\te') == r"'a\\b\"c\nd\te'"
    assert quote_like("50%_off", "contains") == r"'%50\%\_off%'"
    assert quote_like("x'", "prefix") == r"'x\'%'"


def test_literals_and_names():
    assert literal(None) == "null"
    assert literal(False) == "false"
    assert literal(3) == "3"
    assert literal(1e-05) == "0.00001"
    assert literal(Decimal("12.50")) == "12.50"
    assert literal(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
    assert literal(datetime(2025, 1, 2, 3, 4, 5)) == "2025-01-02T03:04:05Z"
    assert literal(datetime(2025, 1, 2).date()) == "2025-01-02"
    assert id_list(["a'b", "c"]) == r"('a\'b', 'c')"
    with pytest.raises(ValueError, match="at least one"):
        id_list([])
    assert identifier("Account.ExternalID__c") == "Account.ExternalID__c"
    with pytest.raises(ValueError, match="API name"):
        identifier("Name FROM User--")


# --- configuration and auth -------------------------------------------------------------------------


def test_missing_credentials_name_the_variables_to_set(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("SAGESF_SALESFORCE__AUTH_FLOW", "jwt")
    monkeypatch.setenv("SAGESF_SALESFORCE__CLIENT_ID", "app")
    with pytest.raises(ConfigError) as failed:
        load_settings(SalesforceSettings)
    message = str(failed.value)
    assert "SAGESF_SALESFORCE__USERNAME" in message
    assert "SAGESF_SALESFORCE__PRIVATE_KEY" in message
    monkeypatch.setenv("SAGESF_SALESFORCE__AUTH_FLOW", "password")
    monkeypatch.setenv("SAGESF_SALESFORCE__PASSWORD", "hunter2hunter2")
    with pytest.raises(ConfigError) as failed:
        load_settings(SalesforceSettings)
    assert "SAGESF_SALESFORCE__CLIENT_SECRET" in str(failed.value)
    assert "hunter2hunter2" not in str(failed.value)


def test_bad_values_are_refused_at_start():
    base: dict[str, Any] = {"auth_flow": "client_credentials", "client_id": "a", "client_secret": "s"}
    bad_values: list[dict[str, Any]] = [
        {"login_url": "login.salesforce.com"},
        {"login_url": "https://x.my.salesforce.com/path"},
        {"call_options_client": "a,b"},
        {"api_version": "v62"},
        {"api_budget_share": 1.5},
    ]
    for bad in bad_values:
        with pytest.raises(ValidationError):
            SalesforceSettings(**base, **bad)
    assert SalesforceSettings(**base, api_version="v62.0").api_version == "62.0"


def test_the_jwt_assertion_is_signed_for_the_right_audience():
    private, public = key_pair()
    settings = SalesforceSettings(
        auth_flow="jwt",
        client_id="app",
        username="u@x",
        private_key_pem=SecretStr(private),
        login_url="https://acme.my.salesforce.com",
    )
    assert jwt_audience(settings) == "https://login.salesforce.com"
    sandbox = settings.model_copy(update={"login_url": "https://acme--uat.sandbox.my.salesforce.com"})
    assert jwt_audience(sandbox) == "https://test.salesforce.com"
    local = settings.model_copy(update={"login_url": "http://127.0.0.1:8443"})
    assert jwt_audience(local) == "http://127.0.0.1:8443"
    from connectors.salesforce.auth import _grant

    form = _grant(settings)
    claims = jwt.decode(
        form["assertion"], public, algorithms=["RS256"], audience="https://login.salesforce.com"
    )
    assert (claims["iss"], claims["sub"]) == ("app", "u@x")


def test_tokens_never_show_in_a_repr_and_api_urls_are_grouped_for_metrics():
    token = AccessToken("00D!secret-token-value", "https://acme.my.salesforce.com")
    assert "secret-token-value" not in repr(token)
    assert token.oauth_response()["access_token"] == "00D!secret-token-value"
    assert _resource("https://i/services/data/v62.0/composite/sobjects") == "composite"
    assert _resource("https://i/services/data/v62.0/jobs/ingest/750x/batches") == "jobs"
    assert _resource("https://i/services/oauth2/token") is None


# --- dependency rules -------------------------------------------------------------------------------


def test_connectors_salesforce_imports_no_sage_processor_or_sandbox_module():
    package = Path(__file__).resolve().parents[2] / "connectors" / "salesforce"
    forbidden = ("sandbox", "processors", "connectors.sage100")
    for path in sorted(package.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            for name in names:
                assert not name.startswith(forbidden), f"{path.name} imports {name}"


def _run_with_login_url(url: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`sagesf run salesforce-source` with this login URL: it must stop at the settings."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("SAGESF_")}
    return subprocess.run(
        [sys.executable, "-m", "sagesf", "run", "salesforce-source"],
        env={
            **keep,
            "SAGESF_SALESFORCE__LOGIN_URL": url,
            "SAGESF_SALESFORCE__AUTH_FLOW": "password",
            "SAGESF_SALESFORCE__CLIENT_ID": "app",
            "SAGESF_SALESFORCE__CLIENT_SECRET": "s3cret-value",
            "SAGESF_SALESFORCE__USERNAME": "u@x",
            "SAGESF_SALESFORCE__PASSWORD": "pw-value",
            "SAGESF_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_plain_http_login_url_is_refused_at_start_unless_loopback():
    done = _run_with_login_url("http://login.salesforce.com")
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "SAGESF_SALESFORCE__LOGIN_URL" in line
    assert "https" in line
    base: dict[str, Any] = {"auth_flow": "client_credentials", "client_id": "a", "client_secret": "s"}
    for loopback in ("http://127.0.0.1:8443", "http://localhost:8443", "http://[::1]:8443"):
        assert SalesforceSettings(**base, login_url=loopback).login_url == loopback
    named = SalesforceSettings(**base, login_url="http://salesforce:8443", plain_http_host="salesforce")
    assert named.login_url == "http://salesforce:8443"  # the compose sandbox names its emulator
    with pytest.raises(ValidationError, match="https"):
        SalesforceSettings(**base, login_url="http://evil:8443", plain_http_host="salesforce")
