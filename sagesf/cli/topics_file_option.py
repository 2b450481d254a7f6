"""The `--file` option of `sagesf topics` and `sagesf schemas`, and reading the file it names."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sagesf.cli.output import new_console
from sagesf.config import Settings
from sagesf.topics_file import TopicsFile, TopicsFileError, load_topics, schemas_dir_for

__all__ = ["FileOption", "read_topics_file"]

FileOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="Topics file (default: settings topics_file, topics.yaml)."),
]


def read_topics_file(settings: Settings, file: Path | None) -> TopicsFile:
    """`file`, else the settings' topics file, validated; an invalid one prints every problem
    and exits 2."""
    path = file or settings.topics_file
    try:
        return load_topics(path, schemas_dir_for(path, settings.schemas_dir))
    except TopicsFileError as exc:
        console = new_console()
        console.print(f"[red]{path} is invalid:[/red]")
        for problem in exc.problems:
            console.print(f"  {problem}", markup=False)
        raise typer.Exit(2) from None
