"""`rollout demo`: the whole runbook on a local sandbox, as a new user first meets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def rollout(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_the_demo_ships_v1_and_v2_and_stops_a_bad_v3(tmp_path: Path) -> None:
    demo = rollout("demo", "--dir", str(tmp_path), timeout=400)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr
    assert "rolled back" in demo.stdout and "try next:" in demo.stdout

    staging = json.loads(
        rollout("history", "--env", "staging", "--json", "--config", str(tmp_path)).stdout
    )
    outcomes = [(r["tag"].rsplit("-", 1)[1], r["status"]) for r in reversed(staging)]
    assert outcomes == [
        ("a1b2c3d", "succeeded"),
        ("b2c3d4e", "succeeded"),
        ("c3d4e5f", "rolled_back"),
    ]
    # v3 passed verification, then its errors were caught in the monitoring window
    assert staging[0]["failed_step"] == "monitor/window"
    assert staging[0]["previous_tag"].endswith("b2c3d4e")
    incidents = json.loads(rollout("incidents", "--json", "--config", str(tmp_path)).stdout)
    assert [(i["env"], i["level"], i["status"]) for i in incidents] == [("staging", 3, "mitigated")]
    assert "error_rate" in incidents[0]["symptoms"]

    # Production never got v3: staging does not run it, so pre-flight refused it.
    production = json.loads(
        rollout("history", "--env", "production", "--json", "--config", str(tmp_path)).stdout
    )
    outcomes = [(r["kind"], r["tag"].rsplit("-", 1)[1], r["status"]) for r in reversed(production)]
    assert outcomes == [
        ("deploy", "a1b2c3d", "succeeded"),
        ("deploy", "b2c3d4e", "succeeded"),
        ("rollback", "a1b2c3d", "succeeded"),  # v2 damaged data: database rollback to v1
        ("deploy", "c3d4e5f", "failed"),
    ]
    assert production[0]["failed_step"] == "preflight/staging"

    # The database rollback brought back the data v2's pre-deploy backup held, and kept the rest.
    said = " ".join(demo.stdout.split())
    assert said.index("v2 damaged the data: vehicles now: Volvo ??? (0)") < said.index(
        "vehicles now: Volvo 240 (1990), Saab 900 (1991), Scania R500 (2014) "
    )
    backups = json.loads(
        rollout("db", "list", "production", "--json", "--config", str(tmp_path)).stdout
    )
    assert sorted((b["kind"], b["verified_level"] >= 2) for b in backups) == [
        ("pre-deploy", True),
        ("pre-deploy", True),
        ("safety", True),
    ]
    assert list((tmp_path / "data").glob("production.db.prerestore-*"))

    status = json.loads(rollout("status", "production", "--json", "--config", str(tmp_path)).stdout)
    assert {h["current"] for h in status["hosts"]} == {
        production[1]["tag"]
    }  # on v1 everywhere, after the database rollback
    assert all(h["running"] is False for h in status["hosts"])  # the demo stopped its apps

    audit = rollout("audit", "verify", "--config", str(tmp_path))
    assert audit.returncode == 0 and "intact" in audit.stdout
