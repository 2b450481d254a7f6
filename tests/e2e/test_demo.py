"""`make demo`'s command from a user's point of view: it prints its steps and leaves the sandbox up."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sandbox.paths import REPO_ROOT


@pytest.mark.timeout(240)
def test_demo_prints_its_steps_and_sandbox_down_stops_it(tmp_path):
    env = {**os.environ, "SAGESF_SANDBOX_DIR": str(tmp_path / "sandbox"), "COLUMNS": "200"}
    env.pop("SAGESF_ENV_FILE", None)

    def sagesf(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sagesf", *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO_ROOT,
            timeout=200,
            check=False,
        )

    try:
        demo = sagesf("demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        out = demo.stdout
        for expected in (
            "0. Start the sandbox",
            "topics apply",
            "schemas register",
            "1. As a sales rep in Salesforce",
            "2. Change event detected",
            "3. Customer created in Sage 100",
            "4. Products mapped to Sage items",
            "1001-HON-H252 -> HRDW-1000",
            "5. Sage sales order written",
            "SO_SalesOrderDetail 000001 HRDW-1000 x 6",
            "6. Order number and status back on the opportunity",
            "Sage_Sync_Status__c=Synced",
            "7. Stock updated in Sage and synced back to Product2",
            "8. A Sage-side status change arrives in Salesforce",
            "Sage_Order_Status__c = Open",
            "9. Customer changes flow both ways",
            "-> Account Credit_Limit__c",
            "10. Credit check: Salesforce asks, Sage answers",
            "Approved__c=True",
            "Stop it: .venv/bin/sagesf sandbox down",
        ):
            assert expected in out, out
        assert "FAILED" not in out
        status = sagesf("sandbox", "status")
        assert status.stdout.count("running") == 8, status.stdout
        # a second run is idempotent: nothing to create, same schemas
        again = sagesf("demo")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "nothing to change" in again.stdout
    finally:
        down = sagesf("sandbox", "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert sagesf("sandbox", "kafka", "status").returncode == 1
