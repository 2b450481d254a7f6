"""`sagesf schemas`: put the topics' schemas in the schema registry, or check they would fit.

Owns the command line between topics.yaml, schemas/ and a Confluent-compatible registry
(`SchemaRegistryClient` with `load_settings().registry.client_config()`). Subjects follow the
topic-name strategy the serializers use by default: `<topic>-key` and `<topic>-value`.

- `register` registers each topic's key and value schema (the self-contained text from
  `sagesf.schemas.schema_json`) and prints subject, schema id and version. Registering the same
  schema again is a no-op in the registry, so the command is idempotent; an incompatible schema
  is refused by the registry under its own compatibility setting, and the command exits 1.
- `check` compares each local schema with the latest registered version of its subject without
  registering anything, using sagesf.avro_compat's BACKWARD rule (the project's rule, readable
  reasons, stricter than Confluent on decimal and timestamp logical types). Subjects not yet in
  the registry pass as new. Exit 1 if any schema is incompatible.

Limit: `check` compares with the latest version only (BACKWARD, not BACKWARD_TRANSITIVE) and
ignores the registry's per-subject compatibility setting.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import typer
from confluent_kafka.schema_registry import Schema
from confluent_kafka.schema_registry.error import SchemaRegistryError
from rich.markup import escape
from rich.table import Table

from sagesf.avro_compat import backward_incompatibilities
from sagesf.cli.clients import registry_client
from sagesf.cli.output import counted, new_console
from sagesf.cli.topics_file_option import FileOption, read_topics_file
from sagesf.config import Settings, load_settings
from sagesf.schemas import SchemaError, schema_json
from sagesf.topics_file import schemas_dir_for

__all__ = ["cli"]

cli = typer.Typer(no_args_is_help=True, help="Register and check the topics' Avro schemas in the registry.")

SUBJECT_NOT_FOUND = 40401


@dataclass(frozen=True)
class Subject:
    name: str  # <topic>-key / <topic>-value
    schema_name: str  # file stem in schemas/ or an Avro primitive
    text: str  # the self-contained schema


def _subjects(file: Path | None) -> tuple[Settings, list[Subject]]:
    """Every subject the topics file implies, with its schema text; exit 2 on an invalid file."""
    settings: Settings = load_settings()
    topics = read_topics_file(settings, file)
    schemas_dir = schemas_dir_for(file or settings.topics_file, settings.schemas_dir)
    console = new_console()
    try:
        subjects = [
            Subject(subject, schema, schema_json(schema, schemas_dir))
            for spec in topics.topics
            for subject, schema in spec.subjects.items()
        ]
    except SchemaError as exc:
        console.print(f"[red]invalid schema:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    undeclared = [spec.name for spec in topics.topics if not spec.value_schema]
    if undeclared:
        console.print(f"[dim]note: no value schema declared for {', '.join(undeclared)}[/dim]")
    return settings, subjects


def _registry_error(exc: Exception) -> str:
    if isinstance(exc, SchemaRegistryError):
        return f"{exc.error_message} (HTTP {exc.http_status_code}, error {exc.error_code})"
    return f"{type(exc).__name__}: {exc}"


@cli.command("register")
def register_command(file: FileOption = None) -> None:
    """Register every topic's key and value schema; print subject, id and version."""
    settings, subjects = _subjects(file)
    client = registry_client(settings)
    table = Table(title=f"registered in {settings.registry.url}", title_justify="left")
    table.add_column("subject", no_wrap=True)
    table.add_column("schema", no_wrap=True)
    table.add_column("id", justify="right")
    table.add_column("version", justify="right")
    failures = []
    for subject in subjects:
        schema = Schema(subject.text, "AVRO")
        try:
            schema_id = client.register_schema(subject.name, schema)
            version = client.lookup_schema(subject.name, schema).version
        except Exception as exc:  # noqa: BLE001 - report each subject, go on with the next
            failures.append(f"{subject.name}: {_registry_error(exc)}")
            table.add_row(subject.name, subject.schema_name, "[red]failed[/red]", "")
            continue
        table.add_row(subject.name, subject.schema_name, str(schema_id), str(version))
    console = new_console()
    console.print(table)
    for failure in failures:
        console.print(f"[red]failed:[/red] {escape(failure)}")
    console.print(f"{counted(len(subjects) - len(failures), 'subject')} registered, {len(failures)} failed")
    if failures:
        raise typer.Exit(1)


@cli.command("check")
def check_command(file: FileOption = None) -> None:
    """Check each local schema against the registry's latest version of its subject; register nothing."""
    settings, subjects = _subjects(file)
    client = registry_client(settings)
    table = Table(title=f"local schemas vs {settings.registry.url}", title_justify="left")
    table.add_column("subject", no_wrap=True)
    table.add_column("schema", no_wrap=True)
    table.add_column("registered", justify="right")
    table.add_column("result", overflow="fold")
    bad = 0
    for subject in subjects:
        try:
            latest = client.get_latest_version(subject.name)
        except SchemaRegistryError as exc:
            if exc.error_code == SUBJECT_NOT_FOUND:
                table.add_row(subject.name, subject.schema_name, "-", "[green]new subject[/green]")
                continue
            bad += 1
            table.add_row(
                subject.name, subject.schema_name, "?", f"[red]{escape(_registry_error(exc))}[/red]"
            )
            continue
        except Exception as exc:  # noqa: BLE001 - unreachable registry: report and go on
            bad += 1
            table.add_row(
                subject.name, subject.schema_name, "?", f"[red]{escape(_registry_error(exc))}[/red]"
            )
            continue
        registered = latest.schema.schema_str if latest.schema is not None else None
        problems = backward_incompatibilities(subject.text, registered) if registered else []
        if problems:
            bad += 1
            table.add_row(
                subject.name,
                subject.schema_name,
                f"v{latest.version}",
                "[red]incompatible[/red]\n" + escape("\n".join(problems)),
            )
        else:
            same = registered is not None and _same_text(registered, subject.text)
            table.add_row(
                subject.name,
                subject.schema_name,
                f"v{latest.version}",
                "[green]unchanged[/green]" if same else "[green]compatible[/green]",
            )
    console = new_console()
    console.print(table)
    console.print(f"{counted(len(subjects) - bad, 'subject')} ok, {bad} not")
    if bad:
        raise typer.Exit(1)


def _same_text(a: str, b: str) -> bool:
    return bool(json.loads(a) == json.loads(b))
