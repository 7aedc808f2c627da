"""Post-mortem drafts from the records: a hand-made incident whose every time is known, and a
real level 3 incident (the example app answering 500s after the switch, rolled back at once)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rollout.config import load_runbook
from rollout.errors import BadInput
from rollout.model import Kind, Outcome, StepStatus
from rollout.notify.postmortem import default_path, draft
from rollout.sandbox.build import Release, build_artifacts, free_port
from rollout.store import Store, open_store
from tests.fixtures.example_app import runtime_yaml
from tests.fixtures.sandbox import Sandbox, make_sandbox

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def at(clock: str) -> datetime:
    """``"03:20"``: 3 minutes 20 seconds after 09:00."""
    minutes, seconds = map(int, clock.split(":"))
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def shown(clock: str) -> str:
    return at(clock).strftime("%Y-%m-%d %H:%M:%S UTC")


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    made = make_sandbox(tmp_path, hosts=2)
    made.config.write_text(
        made.config.read_text()
        + "incidents:\n  level3: {when: ['health down'], respond_within: 5m, actions: [rollback]}\n"
    )
    return made


@pytest.fixture
def store(box: Sandbox) -> Iterator[Store]:
    with open_store(load_runbook(box.config, box.env).store_url) as opened:
        yield opened


def step(store: Store, made: int, phase: str, name: str, host: str | None, start: str,
         end: str, output: str = "", status: StepStatus = StepStatus.SUCCEEDED) -> None:  # fmt: skip
    ran = store.start_step(made, phase=phase, name=name, host=host, started_at=at(start))
    store.finish_step(ran, status=status, finished_at=at(end), output=output)


def level3_incident(store: Store) -> int:
    """v2 switched at 09:01 and 09:01:30; web-1's health went down at 09:03; detected 20 s
    later; both hosts put back by 09:04:30; escalated at 09:08:20, acknowledged at 09:08:40."""
    made = store.create_deployment(
        app="demo-app", env="production", kind=Kind.DEPLOY, tag="v2", previous_tag="v1",
        actor="alice", started_at=T0,
    )  # fmt: skip
    step(store, made, "deploy", "activate", "web-1", "00:30", "01:00")
    step(store, made, "deploy", "activate", "web-2", "01:00", "01:30")
    step(store, made, "monitor", "window", None, "02:00", "04:00",
         "monitoring: level 3 (critical): health down", StepStatus.FAILED)  # fmt: skip
    step(store, made, "rollback", "restore", "web-1", "04:00", "04:15", "current -> v1; healthy")
    step(store, made, "rollback", "restore", "web-2", "04:00", "04:30", "current -> v1; healthy")
    store.finish_deployment(made, status=Outcome.ROLLED_BACK, finished_at=at("04:30"))
    incident = store.open_incident(
        env="production", deployment_id=made, level=3,
        title="level 3 (critical) incident in production", symptoms="health down (web-1)",
        impact_start=at("03:00"), detected_at=at("03:20"), action="rollback",
    )  # fmt: skip
    store.add_samples("production", made, [*reads("web-1", failed=8), *reads("web-2", failed=0)])
    store.append_audit(
        actor="rollout", action="incident.escalated", subject=f"incident:{incident}",
        details={"to": "platform-lead"}, at=at("08:20"),
    )  # fmt: skip
    store.update_incident(incident, mitigated_at=at("04:30"), status="mitigated")
    store.update_incident(incident, acknowledged_at=at("08:40"), acknowledged_by="bob")
    store.update_incident(incident, resolved_at=at("60:00"), status="resolved")
    return incident


def reads(host: str, failed: int) -> list[dict[str, Any]]:
    """10 health reads 6 s apart from 09:03, the first ``failed`` answered 503 slowly."""
    rows: list[dict[str, Any]] = []
    for i in range(10):
        bad = i < failed
        labels = {"path": "/api/health", "status": "503" if bad else "200"}
        when = at("03:00") + timedelta(seconds=6 * i)
        rows += [
            {"metric": "latency_seconds", "host": host, "source": "probe", "at": when,
             "value": 0.5 if bad else 0.01, "labels": labels},
            {"metric": "http_error", "host": host, "source": "probe", "at": when,
             "value": float(bad), "labels": labels},
            {"metric": "health", "host": host, "source": "probe", "at": when,
             "value": float(not bad), "labels": labels},
        ]  # fmt: skip
    return rows


def test_the_draft_is_filled_from_the_records_and_leaves_the_rest_to_people(
    box: Sandbox, store: Store
) -> None:
    incident = level3_incident(store)
    runbook = load_runbook(box.config, box.env)

    text = draft(store, incident, now=at("90:00"), runbook=runbook)

    assert text.startswith(f"# Post-mortem: incident #{incident}, level 3 (critical) in production")
    timeline = text.split("## Timeline (UTC)")[1].split("## Root cause")[0]
    clocks = "00:00 01:00 01:30 02:00 03:00 03:20 04:00 04:00 04:00 04:15 04:30 04:30 04:30"
    clocks += " 08:20 08:40 60:00"
    assert [line.split(" | ")[0] for line in timeline.strip().splitlines()[2:]] == [
        f"| {shown(clock)}" for clock in clocks.split()
    ]
    for event in (
        "deployment #1 of v2 started by alice",
        "web-2 switched to v2",
        "impact started (first bad reading)",
        "detected, level 3 (critical): health down (web-1)",
        "monitoring window failed: monitoring: level 3 (critical): health down",
        "rollback: restore on web-1 succeeded: current -> v1; healthy",
        "deployment #1 ended: rolled_back |\n| 2026-11-30 09:04:30 UTC | mitigated |",
        "unacknowledged: escalated to platform-lead",
        "acknowledged by bob",
        "resolved",
    ):
        assert event in timeline
    assert f"| started | {shown('03:00')} |" in text
    assert f"| ended | {shown('04:30')} |" in text and "| duration | 1 min 30 s |" in text
    assert "| hosts | web-1, web-2 |" in text
    assert "| hosts with failing readings | web-1 |" in text
    assert "| error rate | 40.0 % (8 failed) |" in text  # 8 of the 20 reads before 09:04:30
    assert "| p95 latency | 0.500 s |" in text
    assert "| time to detect | 20 s |" in text
    assert "| time to acknowledge | 5 min 20 s (respond within 5 min), late |" in text
    assert "## Root cause\n\n*(to be written)*" in text
    assert "| action | owner | type | due |" in text
    assert "prevent / detect / mitigate / process" in text


def test_the_cli_writes_beside_the_records_and_never_over_a_draft(
    box: Sandbox, store: Store
) -> None:
    incident = level3_incident(store)
    path = default_path(load_runbook(box.config, box.env), incident)

    first = box.rollout("postmortem", str(incident))

    assert first.returncode == 0, first.stderr
    assert path == box.root / ".rollout" / "postmortems" / f"incident-{incident}.md"
    assert f"post-mortem draft of incident {incident}" in first.stdout
    assert f"| {shown('03:00')} | impact started" in path.read_text()
    path.write_text("edited by people")
    again = box.rollout("postmortem", str(incident))
    assert again.returncode == 2 and "exists" in again.stderr
    assert path.read_text() == "edited by people"
    printed = box.rollout("postmortem", str(incident), "--out", "-")
    assert printed.returncode == 0 and printed.stdout.startswith("# Post-mortem: incident #")
    assert box.rollout("postmortem", str(incident), "--replace").returncode == 0
    assert path.read_text().startswith("# Post-mortem")


def test_a_level_1_incident_is_refused_unless_forced(box: Sandbox, store: Store) -> None:
    minor = store.open_incident(
        env="production", deployment_id=None, level=1, title="level 1 (minor) incident",
        symptoms="response_time_p95 1.2 s > 1 s", impact_start=None, detected_at=at("00:00"),
        action="notify",
    )  # fmt: skip

    with pytest.raises(BadInput, match=r"level 1 .*post-mortems are for level 2 and 3"):
        draft(store, minor, now=at("05:00"))
    refused = box.rollout("postmortem", str(minor))
    forced = box.rollout("postmortem", str(minor), "--force", "--out", "-")

    assert refused.returncode == 2 and "--force" in refused.stderr
    assert forced.returncode == 0, forced.stderr
    assert "| started | not recorded (detected 2026-11-30 09:00:00 UTC) |" in forced.stdout
    assert "| deployment | none on record (seen by `rollout monitor`) |" in forced.stdout
    assert box.rollout("postmortem", "99").returncode == 2  # no such incident


# --- a real incident --------------------------------------------------------------------------

DAY = date.today().strftime("%Y.%m.%d")
GOOD, BROKEN = f"v{DAY}-a1b2c3d", f"v{DAY}-b2c3d4e"
RUNBOOK = """\
app: united-cars
release: {{artifact: 'dist/united-cars-{{tag}}.tar.gz', keep: 5}}
{runtime}environments:
  production:
    hosts:
      - {{name: web-1, kind: local, address: 127.0.0.1, root: hosts/web-1, url: 'http://127.0.0.1:{{port}}', vars: {{port: '{port}'}}}}
verify:
  endpoints:
    - {{path: /api/health, conditions: ['[STATUS] == 200']}}
monitor:
  window: 6s
  interval: 500ms
  paths: [/api/health, /api/vehicles]
  metrics:
    error_rate: {{source: probe, max: 1%}}
incidents:
  level3: {{when: ['error_rate > 10x'], respond_within: 5m, actions: [rollback, postmortem]}}
"""


def cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args, "--config", str(folder / "rollout.yml")],
        capture_output=True, text=True, timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )  # fmt: skip


def test_a_real_level_3_rollback_writes_its_draft_with_the_recorded_times(tmp_path: Path) -> None:
    build_artifacts(
        tmp_path,
        [
            Release("good", GOOD, None),
            Release("broken", BROKEN, {"error_rate": 1.0, "routes": ["/api/vehicles"]}),
        ],
    )
    (tmp_path / "rollout.yml").write_text(RUNBOOK.format(runtime=runtime_yaml(), port=free_port()))
    try:
        assert cli(tmp_path, "deploy", "production", GOOD, "--no-monitor").returncode == 0
        assert cli(tmp_path, "deploy", "production", BROKEN).returncode == 1
    finally:
        for pidfile in tmp_path.glob("hosts/*/srv/united-cars/run/app.pid"):
            subprocess.run(["kill", pidfile.read_text().strip()], capture_output=True)
    (incident,) = json.loads(cli(tmp_path, "incidents", "--json").stdout)

    # The level's `postmortem` action wrote the draft once the rollback mitigated the incident.
    text = (tmp_path / ".rollout" / "postmortems" / f"incident-{incident['id']}.md").read_text()
    assert cli(tmp_path, "postmortem", str(incident["id"])).returncode == 2  # kept, not redone
    again = cli(tmp_path, "postmortem", str(incident["id"]), "--out", "-")
    assert again.returncode == 0 and "## Timeline" in again.stdout
    for key in ("impact_start", "detected_at", "mitigated_at"):
        stamp = datetime.fromisoformat(incident[key]).strftime("%Y-%m-%d %H:%M:%S UTC")
        assert stamp in text, key
    assert f"deployment #2 of {BROKEN} started" in text
    assert "rollback: restore on web-1 succeeded" in text
    assert "monitoring window failed" in text
    error_rate = text.split("| error rate | ")[1].split(" %")[0]
    assert float(error_rate) > 10  # /api/vehicles answered 500 every time
