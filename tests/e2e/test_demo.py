"""`rollout demo`: the whole runbook on a local sandbox, as a new user first meets it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import Page


def rollout(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120"},
    )


def test_the_demo_ships_v1_and_v2_and_stops_a_bad_v3(tmp_path: Path, page: Page) -> None:
    demo = rollout("demo", "--dir", str(tmp_path), timeout=400)
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr
    assert "rolled back" in demo.stdout and "try next:" in demo.stdout
    assert " web --config " in " ".join(demo.stdout.split())  # the dashboard is suggested

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
    assert [(i["env"], i["level"], i["status"]) for i in incidents] == [
        ("staging", 3, "mitigated"),  # caught by the monitoring window, rolled back at once
        ("production", 2, "mitigated"),  # declared by support, mitigated by the rollback
    ]
    assert "error_rate" in incidents[0]["symptoms"]
    assert (tmp_path / ".rollout" / "postmortems" / f"incident-{incidents[0]['id']}.md").exists()

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

    kpis_are_all_measured(tmp_path, page)


# Every KPI the runbook names has a value after the demo: the commits came from the sandbox's
# git repository, the incidents from the window and from support, the samples from the windows.
MEASURED = [
    "deployment_frequency",
    "lead_time_commit",
    "lead_time_merge",
    "change_failure_rate",
    "rollback_rate",
    "recovery_time",
    "availability",
    "error_budget_left",
    "error_rate",
    "response_time_p95",
    "db_query_time",
]


def kpis_are_all_measured(folder: Path, page: Page) -> None:
    kpi = json.loads(rollout("kpi", "--json", "--config", str(folder)).stdout)["figures"]
    missing = [key for key in MEASURED if kpi.get(key, {}).get("value") is None]
    assert missing == [], {k: kpi.get(k) for k in missing}
    assert all(kpi[key]["target"] for key in MEASURED)
    assert kpi["lead_time_commit"]["tiers"]["2024"] is not None
    text = rollout("kpi", "--config", str(folder)).stdout
    assert "DORA 2023" in text and "database query time" in text

    out = folder / "kpi.html"
    made = rollout(
        "report",
        "--kpi",
        "--out",
        str(out),
        "--png",
        str(folder / "kpi.png"),
        "--config",
        str(folder),
    )
    assert made.returncode == 0, made.stderr
    page.goto(out.as_uri())
    charts = page.locator("svg")
    assert charts.count() >= 8
    for i in range(charts.count()):
        box = charts.nth(i).bounding_box()
        assert box is not None and box["width"] > 200 and box["height"] > 100
    assert page.locator("tr", has_text="lead time").first.is_visible()
    assert (folder / "kpi.png").stat().st_size > 10_000
