"""`sagesf sandbox ...`: start, stop and inspect the local sandbox."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from sandbox import stack, web_console
from sandbox.kafka import kafka_service
from sandbox.registry import registry_service
from sandbox.sage100.cli import app as sage100_app
from sandbox.salesforce.cli import app as salesforce_app
from sandbox.seed_cli import app as seed_app

app = typer.Typer(no_args_is_help=True, help="The local sandbox: Kafka, registry, emulators.")
kafka_app = typer.Typer(no_args_is_help=True, help="The sandbox's real Apache Kafka broker (KRaft).")
app.add_typer(kafka_app, name="kafka")
app.add_typer(sage100_app, name="sage100")
app.add_typer(salesforce_app, name="salesforce")
app.add_typer(seed_app, name="seed")
console = Console()


@kafka_app.command("start")
def kafka_start() -> None:
    """Start the broker (fetching the jars once) and print its bootstrap address."""
    address = kafka_service().start()
    console.print(f"kafka running at [bold]{address}[/bold]")


@kafka_app.command("stop")
def kafka_stop() -> None:
    """Stop the broker; its data stays in .sandbox/kafka for the next start."""
    ok = kafka_service().stop()
    console.print("kafka stopped" if ok else "[red]kafka did not stop[/red]")
    if not ok:
        raise typer.Exit(1)


@kafka_app.command("status")
def kafka_status() -> None:
    """Print the bootstrap address, or exit 1 when the broker is not running."""
    address = kafka_service().address()
    if address is None:
        console.print("kafka not running")
        raise typer.Exit(1)
    console.print(f"kafka running at {address}")


@app.command("up")
def up() -> None:
    """Start every sandbox service, apply topics.yaml, register the schemas, write .sandbox/sagesf.env."""
    result = stack.up(lambda line: console.print(line, soft_wrap=True))
    console.print(f"use it from a shell: export SAGESF_ENV_FILE={result.env_file}", soft_wrap=True)
    console.print(
        f"the web console: {web_console.console_url()} (demo users and their passwords: "
        f"{web_console.passwords_file()})",
        soft_wrap=True,
    )


@app.command("down")
def down() -> None:
    """Stop every sandbox service, last started first (the pipeline's processes together)."""
    failed = False
    for name, ok in stack.stop_all():
        failed |= not ok
        console.print(f"{'[green]down[/green]' if ok else '[red]stuck[/red]'} {name}")
    if failed:
        raise typer.Exit(1)


@app.command("status")
def status() -> None:
    """One line per service: running or not, and where."""
    table = Table("service", "state", "address")
    for service in stack.services():
        address = service.address()
        table.add_row(service.name, "running" if address else "stopped", address or "-")
    console.print(table)


registry_app = typer.Typer(no_args_is_help=True, help="The sandbox's Confluent-compatible schema registry.")
app.add_typer(registry_app, name="registry")


@registry_app.command("start")
def registry_start() -> None:
    """Start the registry (needs the sandbox Kafka broker) and print its URL."""
    address = registry_service().start()
    console.print(f"registry running at [bold]{address}[/bold]")


@registry_app.command("stop")
def registry_stop() -> None:
    """Stop the registry; its schemas stay in Kafka's _schemas topic for the next start."""
    ok = registry_service().stop()
    console.print("registry stopped" if ok else "[red]registry did not stop[/red]")
    if not ok:
        raise typer.Exit(1)


@registry_app.command("status")
def registry_status() -> None:
    """Print the registry URL, or exit 1 when it is not running."""
    address = registry_service().address()
    if address is None:
        console.print("registry not running")
        raise typer.Exit(1)
    console.print(f"registry running at {address}")
