"""`rollout declare`: an incident a person found, and the rollback that mitigates it."""

from __future__ import annotations

import json
from datetime import datetime

from tests.fixtures.sandbox import TAGS, Sandbox


def incidents(box: Sandbox) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = json.loads(box.rollout("incidents", "--json").stdout)
    return listed


def test_a_declared_incident_is_acknowledged_tied_to_what_runs_and_mitigated_by_a_rollback(
    sandbox: Sandbox,
) -> None:
    for tag in TAGS[:2]:
        assert sandbox.rollout("deploy", "production", tag).returncode == 0
    history = json.loads(sandbox.rollout("history", "--json").stdout)

    declared = sandbox.rollout(
        "declare", "production", "--since", "15m", "--as", "alice", "--title", "totals are zero"
    )

    assert declared.returncode == 0, declared.stderr
    (incident,) = incidents(sandbox)
    assert (incident["level"], incident["status"], incident["symptoms"]) == (
        2,
        "open",
        "totals are zero",
    )
    assert incident["deployment_id"] == history[0]["id"]  # the release running now
    assert incident["acknowledged_by"] == "alice"
    detected = datetime.fromisoformat(str(incident["detected_at"]))
    began = datetime.fromisoformat(str(incident["impact_start"]))
    assert 899 <= (detected - began).total_seconds() <= 901

    rolled = sandbox.rollout("rollback", "production", "--reason", "totals are zero")

    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    (incident,) = incidents(sandbox)
    assert incident["status"] == "mitigated" and incident["mitigated_at"] is not None
    kpi = json.loads(sandbox.rollout("kpi", "--json").stdout)["figures"]
    assert kpi["recovery_time"]["value"] >= 15  # minutes: from the impact's start, not the call
    audit = sandbox.rollout("audit", "verify")
    assert audit.returncode == 0


def test_what_cannot_be_declared_is_refused_before_anything_is_recorded(
    sandbox: Sandbox,
) -> None:
    assert sandbox.rollout("deploy", "production", TAGS[0]).returncode == 0
    for args in (
        ["declare", "production", "--level", "4", "--title", "x"],
        ["declare", "staging", "--title", "x"],
        ["declare", "production", "--title", "x", "--since", "soon"],
        ["declare", "production", "--title", "x", "--deployment", "99"],
        ["declare", "production", "--title", " "],
    ):
        done = sandbox.rollout(*args)
        assert done.returncode == 2, (args, done.stderr)
        assert "error:" in done.stderr
    assert incidents(sandbox) == []
