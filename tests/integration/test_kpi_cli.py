"""`rollout kpi --json` after real deploys and a rollback in the sandbox, on SQLite and PostgreSQL.

Two releases are deployed with their commit and merge times (recorded by `deploy --commit
--committed-at --merged-at`), then the second is rolled back with `rollout rollback`:
2 production deployments, 1 of them failed (rolled back): change failure rate and rollback
rate 50 %. Lead times are measured to each deployment's real finish, so they are checked
against bounds: commit 3 h (first) and 2 h (second) before the run, merges 1 h before.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.sandbox import TAGS, Sandbox, make_sandbox


def _deploy_and_roll_back(box: Sandbox) -> dict[str, Any]:
    now = datetime.now(UTC)
    for tag, sha, hours in ((TAGS[0], "aaaaaaa", 3), (TAGS[1], "bbbbbbb", 2)):
        done = box.rollout(
            "deploy", "production", tag, "--no-monitor", "--commit", sha,
            "--committed-at", (now - timedelta(hours=hours)).isoformat(),
            "--merged-at", (now - timedelta(hours=1)).isoformat(),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
    back = box.rollout("rollback", "production", "--reason", "kpi test")
    assert back.returncode == 0, back.stdout + back.stderr
    shown = box.rollout("kpi", "--json", "--since", "1d")
    assert shown.returncode == 0, shown.stderr
    found: dict[str, Any] = json.loads(shown.stdout)
    return found


def _check(report: dict[str, Any]) -> None:
    figures = report["figures"]
    delivery = report["facts"]["delivery"]
    assert report["env"] == "production"
    assert (delivery["deployments"], delivery["failed"], delivery["rolled_back"]) == (2, 1, 1)
    assert figures["change_failure_rate"]["value"] == pytest.approx(50)
    assert figures["change_failure_rate"]["met"] is False
    assert figures["rollback_rate"]["value"] == pytest.approx(50)
    # 2 in the day asked for: the records start today, and the day is counted whole
    assert figures["deployment_frequency"]["value"] == pytest.approx(14)
    assert "(records start " in figures["deployment_frequency"]["note"]
    assert figures["deployment_frequency"]["tiers"] == {"2023": "elite", "2024": "elite"}
    assert delivery["changes"] == 2
    # commit to production: 3 h and 2 h plus the run's minutes; median between them
    assert 150 <= figures["lead_time_commit"]["value"] <= 170
    assert figures["lead_time_commit"]["met"] is False  # target 2 h
    assert 60 <= figures["lead_time_merge"]["value"] <= 70
    assert figures["lead_time_merge"]["met"] is True
    assert figures["db_query_time"]["value"] is None  # no monitoring window: nothing timed


def test_kpi_after_deploys_and_a_rollback_on_sqlite(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1)
    try:
        _check(_deploy_and_roll_back(box))
        table = box.rollout("kpi")
        assert table.returncode == 0, table.stderr
        assert "change failure rate" in table.stdout
    finally:
        box.stop_apps()


@pytest.mark.postgres
def test_kpi_after_deploys_and_a_rollback_on_postgresql(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    box = make_sandbox(tmp_path, hosts=1, store=fresh_postgres_url)
    try:
        _check(_deploy_and_roll_back(box))
    finally:
        box.stop_apps()


def test_kpi_refuses_a_bad_window(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1)
    done = box.rollout("kpi", "--since", "soon")
    assert done.returncode == 2
    assert "--since" in done.stderr
