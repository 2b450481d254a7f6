"""`python -m sandbox.metadata_pull`: mappings/metadata/*.yaml pulled from a fresh sandbox.

The committed metadata files are what `sagesf mappings pull` reads from the sandbox's systems:
the emulator's org (standard_objects.yaml with the sfdx project in salesforce/) and a new sandbox
Sage company (sandbox/sage100/database.py, its DEFAULT_UDF_COLUMNS included). This starts both in
a temporary directory, pulls into mappings/metadata (or `--dir`) and stops them;
tests/integration/test_mappings_pull.py fails when the committed files differ from such a pull.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from typer.testing import CliRunner

from processors.cli import app
from sandbox.paths import REPO_ROOT
from sandbox.sage100.database import DEFAULT_UDF_COLUMNS, create_database
from sandbox.salesforce.harness import start_emulator

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.metadata_pull", description=__doc__)
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / "mappings" / "metadata")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="sagesf-pull-") as tmp:
        db = create_database(Path(tmp) / "sage100.db")
        emulator = start_emulator(Path(tmp) / "org")
        try:
            env = {
                **emulator.login_env(),
                "SAGESF_SAGE100__CONNECTION_STRING": db.connection_string,
                # the sandbox's Sage components know their UDFs' types; SQLite's catalog cannot
                # tell a decimal UDF (kept as TEXT) from text
                "SAGESF_SAGE100__UDF_COLUMNS": json.dumps(DEFAULT_UDF_COLUMNS),
                "SAGESF_PROCESSORS__MAPPINGS_DIR": str(REPO_ROOT / "mappings"),
            }
            result = CliRunner().invoke(app, ["pull", "--dir", str(args.dir)], env=env)
        finally:
            emulator.stop()
    print(result.output, end="")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
