"""`sagesf sandbox salesforce ...`: run the Salesforce emulator, seed demo data, play scenarios.

Commands: `start`, `stop`, `status` (URL, users, API usage; never secrets: they stay in
`.sandbox/salesforce/config.yaml`), `seed` (idempotent demo org), and `scenario close-won`,
`scenario edit-account`, `scenario credit-check`. Scenarios log in as the sales user
(sales@sagesf.sandbox) with no `Sforce-Call-Options` client, like a person in the Salesforce UI,
so the integration sees them as changes to sync, not as its own echoes.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sandbox.paths import state_dir
from sandbox.salesforce import salesforce_process, salesforce_service, sandbox_credentials

app = typer.Typer(
    no_args_is_help=True, help="The sandbox's Salesforce emulator (OAuth, REST, Bulk, streaming)."
)
scenario_app = typer.Typer(no_args_is_help=True, help="Do what a sales rep would do, through the REST API.")
app.add_typer(scenario_app, name="scenario")
console = Console()


@contextmanager
def _reported() -> Iterator[None]:
    """Salesforce's answer or a missing record as one red line and exit 1, not a traceback."""
    from simple_salesforce.exceptions import SalesforceError

    try:
        yield
    except SalesforceError as err:
        console.print(f"[red]Salesforce answered {err.status}: {err.content!r}[/red]")
        raise typer.Exit(1) from None
    except (LookupError, RuntimeError) as err:
        console.print(f"[red]{err}[/red]")
        raise typer.Exit(1) from None


def _client(as_sales_user: bool = True) -> Any:
    from sandbox.salesforce.client import connect
    from sandbox.salesforce.config import SALES_USERNAME

    credentials = sandbox_credentials(username=SALES_USERNAME if as_sales_user else None)
    return connect(
        credentials.url,
        username=credentials.username,
        password=credentials.password,
        client_id=credentials.client_id,
        client_secret=credentials.client_secret,
    )


@app.command("start")
def start() -> None:
    """Start the emulator (state in .sandbox/salesforce) and print its URL."""
    address = salesforce_service().start()
    console.print(f"salesforce emulator running at [bold]{address}[/bold]")
    where = state_dir() / "salesforce"
    console.print(f"credentials: {where / 'config.yaml'} (JWT key: {where / 'jwt-private.pem'})")


@app.command("stop")
def stop() -> None:
    """Stop the emulator; its records, tokens and events stay for the next start."""
    ok = salesforce_service().stop()
    console.print("salesforce emulator stopped" if ok else "[red]salesforce emulator did not stop[/red]")
    if not ok:
        raise typer.Exit(1)


@app.command("status")
def status() -> None:
    """URL, users and API usage, or exit 1 when the emulator is not running."""
    address = salesforce_process().address()
    if address is None:
        console.print("salesforce emulator not running")
        raise typer.Exit(1)
    with urllib.request.urlopen(f"{address}/admin/info", timeout=5) as response:  # noqa: S310 - our own URL
        info = json.loads(response.read())
    with urllib.request.urlopen(f"{address}/admin/api-usage", timeout=5) as response:  # noqa: S310
        usage = json.loads(response.read())
    table = Table("what", "value")
    table.add_row("url", address)
    table.add_row("org id", info["org_id"])
    table.add_row("client ids", ", ".join(info["client_ids"]))
    table.add_row("users", ", ".join(info["users"]))
    table.add_row("api usage (24 h)", f"{usage['used']}/{usage['max']}")
    console.print(table)


@app.command("seed")
def seed() -> None:
    """Load the demo org: accounts, contacts, products with prices, open opportunities with lines."""
    from sandbox.salesforce.scenarios import seed as seed_org

    with _reported():
        summary = seed_org(_client())
    console.print(
        f"seeded {summary.accounts} accounts, {summary.contacts} contacts, {summary.products} products; "
        f"{summary.opportunities_created} new opportunities with {summary.line_items_created} line items"
    )
    for name, record_id in summary.opportunity_ids.items():
        console.print(f"  {record_id}  {name}")


@scenario_app.command("close-won")
def close_won(
    opportunity: Annotated[
        str | None, typer.Argument(help="Id or Name; default: the oldest open opportunity")
    ] = None,
) -> None:
    """Move an opportunity to Closed Won (the start of the order pipeline)."""
    from sandbox.salesforce.scenarios import close_won as close

    with _reported():
        result = close(_client(), opportunity)
    console.print(f"{result['Id']}  {result['Name']}: {result['from']} -> [bold]{result['to']}[/bold]")


@scenario_app.command("edit-account")
def edit_account(
    external_id: Annotated[str, typer.Argument(help="the account's ExternalID__c, e.g. 01-ABF")],
    set_: Annotated[
        list[str] | None, typer.Option("--set", help="Field=Value, repeatable; default: new phone and street")
    ] = None,
) -> None:
    """Edit an account (customer sync Salesforce -> Sage)."""
    from sandbox.salesforce.scenarios import edit_account as edit

    changes: dict[str, Any] = {}
    for item in set_ or []:
        name, sep, value = item.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected Field=Value, got {item!r}")
        changes[name.strip()] = value if value != "" else None
    with _reported():
        result = edit(_client(), external_id, changes or None)
    console.print(json.dumps(result, indent=2))


@scenario_app.command("credit-check")
def credit_check(
    external_id: Annotated[str, typer.Argument(help="the account's ExternalID__c")],
    amount: Annotated[float, typer.Argument(help="order amount to check")],
) -> None:
    """Publish a Credit_Check_Request__e (request/reply with Sage)."""
    from sandbox.salesforce.scenarios import request_credit_check

    correlation_id = str(uuid.uuid4())
    with _reported():
        request_credit_check(_client(), external_id, amount, correlation_id)
    console.print(f"credit check requested: correlation id {correlation_id}")
