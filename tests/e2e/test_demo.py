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


def test_the_demo_ships_v1_and_v2_and_rolls_a_bad_v3_back(tmp_path: Path) -> None:
    demo = rollout("demo", "--dir", str(tmp_path))
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr
    assert "rolled back" in demo.stdout and "try next:" in demo.stdout

    production = json.loads(
        rollout("history", "--env", "production", "--json", "--config", str(tmp_path)).stdout
    )
    outcomes = [(r["tag"].rsplit("-", 1)[1], r["status"]) for r in reversed(production)]
    assert outcomes == [
        ("a1b2c3d", "succeeded"),
        ("b2c3d4e", "succeeded"),
        ("c3d4e5f", "rolled_back"),
    ]
    v3 = production[0]
    assert v3["failed_step"].startswith("verify/") and v3["previous_tag"].endswith("b2c3d4e")

    status = json.loads(rollout("status", "production", "--json", "--config", str(tmp_path)).stdout)
    assert {h["current"] for h in status["hosts"]} == {
        production[1]["tag"]
    }  # back on v2 everywhere
    assert all(h["running"] is False for h in status["hosts"])  # the demo stopped its apps

    audit = rollout("audit", "verify", "--config", str(tmp_path))
    assert audit.returncode == 0 and "intact" in audit.stdout
