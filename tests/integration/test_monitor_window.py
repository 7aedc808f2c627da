"""The monitoring window after a release, on the example app with real fault injection.

Two local hosts run United Cars releases built with faults that verification does not see
(they hit /api/vehicles, which the probe reads and verification does not): a clean release
passes the window; 100 % errors there is level 3 and rolled back at once, with the incident's
whole timeline on record; added latency is level 1 and only recorded.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import pytest

from rollout.sandbox.build import Release, build_artifacts, free_port
from tests.fixtures.example_app import runtime_yaml
from tests.fixtures.receiver import Receiver

DAY = date.today().strftime("%Y.%m.%d")
GOOD, BROKEN, SLOW = f"v{DAY}-a1b2c3d", f"v{DAY}-b2c3d4e", f"v{DAY}-c3d4e5f"
SHIFTED = f"v{DAY}-d4e5f6a"

RUNBOOK = """\
app: united-cars
store: .rollout/rollout.db
release: {{artifact: 'dist/united-cars-{{tag}}.tar.gz', keep: 5}}
{runtime}environments:
  production:
    batch: 1
    hosts:
      - {{name: web-1, kind: local, address: 127.0.0.1, root: hosts/web-1, url: 'http://127.0.0.1:{{port}}', vars: {{port: '{p1}'}}}}
      - {{name: web-2, kind: local, address: 127.0.0.1, root: hosts/web-2, url: 'http://127.0.0.1:{{port}}', vars: {{port: '{p2}'}}}}
verify:
  endpoints:
    - {{path: /api/health, conditions: ['[STATUS] == 200']}}
  version: {{path: /api/version, field: version}}
monitor:
  window: 6s{baseline}
  interval: 500ms
  paths: [/api/health, /api/vehicles]
  metrics:
    response_time_p95: {{source: probe, max: {p95_max}}}
    error_rate: {{source: probe, max: 1%}}
  failure_limit: {failure_limit}
incidents:
  level1: {{when: ['response_time_p95 > 1x'], respond_within: 15m, actions: [notify, watch]}}
  level3: {{when: ['health down', 'error_rate > 10x'], respond_within: 5m, actions: [rollback, postmortem]}}
"""


@pytest.fixture
def site(tmp_path: Path) -> object:
    build_artifacts(
        tmp_path,
        [
            Release("good", GOOD, None),
            Release("broken", BROKEN, {"error_rate": 1.0, "routes": ["/api/vehicles"]}),
            Release("slow", SLOW, {"latency_ms": 250, "routes": ["/api/vehicles"]}),
            Release("shifted", SHIFTED, {"latency_ms": 150, "routes": ["/api/vehicles"]}),
        ],
    )
    ports = (free_port(), free_port())
    yield tmp_path, ports
    for pidfile in tmp_path.glob("hosts/*/srv/united-cars/run/app.pid"):
        subprocess.run(["kill", pidfile.read_text().strip()], capture_output=True)


def configure(
    folder: Path,
    ports: tuple[int, int],
    failure_limit: int = 3,
    baseline: str = "",
    p95_max: str = "100ms",
) -> None:
    (folder / "rollout.yml").write_text(
        RUNBOOK.format(
            runtime=runtime_yaml(),
            p1=ports[0],
            p2=ports[1],
            failure_limit=failure_limit,
            p95_max=p95_max,
            baseline=f"\n  baseline: {baseline}" if baseline else "",
        )
    )


def rollout(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args, "--config", str(folder / "rollout.yml")],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


def versions(ports: tuple[int, int]) -> set[str]:
    return {httpx.get(f"http://127.0.0.1:{p}/api/version").json()["version"] for p in ports}


def recorded(folder: Path, query: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(folder / ".rollout" / "rollout.db") as conn:
        return conn.execute(query).fetchall()


def test_a_clean_release_passes_the_window_and_its_samples_are_kept(site: object) -> None:
    folder, ports = site  # type: ignore[misc]
    # A limit a healthy release meets even on a busy test machine (100 ms was met only mostly).
    configure(folder, ports, p95_max="1s")

    done = rollout(folder, "deploy", "production", GOOD)

    assert done.returncode == 0, done.stdout + done.stderr
    assert "window" in done.stdout and "passed:" in done.stdout
    assert recorded(folder, "SELECT count(*) FROM incidents") == [(0,)]
    (count,) = recorded(folder, "SELECT count(*) FROM samples WHERE metric = 'latency_seconds'")[0]
    assert count >= 8 * 2 * 2  # at least 8 intervals x 2 hosts x 2 paths


def test_errors_after_the_switch_are_level_3_and_rolled_back_with_the_whole_timeline(
    site: object,
) -> None:
    folder, ports = site  # type: ignore[misc]
    configure(folder, ports)
    assert rollout(folder, "deploy", "production", GOOD, "--no-monitor").returncode == 0

    done = rollout(folder, "deploy", "production", BROKEN)

    said = " ".join(done.stdout.split())
    assert done.returncode == 1, said + done.stderr
    assert "level 3 (critical): error_rate" in said and "(error_rate > 10x)" in said
    assert versions(ports) == {GOOD}  # every host back on the release before
    history = json.loads(rollout(folder, "history", "--json").stdout)
    assert (history[0]["tag"], history[0]["status"], history[0]["failed_step"]) == (
        BROKEN, "rolled_back", "monitor/window",
    )  # fmt: skip
    incidents = json.loads(rollout(folder, "incidents", "--json").stdout)
    assert len(incidents) == 1
    incident = incidents[0]
    assert incident["level"] == 3 and incident["status"] == "mitigated"
    assert "error_rate" in incident["symptoms"] and "> 0.1" in incident["symptoms"]
    # the timeline: impact, detection, mitigation now; acknowledgement and resolution by people
    assert rollout(folder, "ack", str(incident["id"]), "--as", "alice").returncode == 0
    assert rollout(folder, "resolve", str(incident["id"])).returncode == 0
    (incident,) = json.loads(rollout(folder, "incidents", "--json").stdout)
    stamps = [
        incident[k]
        for k in ("impact_start", "detected_at", "mitigated_at", "acknowledged_at", "resolved_at")
    ]
    assert (
        all(stamps) and stamps[:3] == sorted(stamps[:3]) and incident["acknowledged_by"] == "alice"
    )
    # the measurements that triggered it are on record with the deployment
    (errors,) = recorded(
        folder,
        f"SELECT count(*) FROM samples WHERE metric = 'http_error' AND value = 1.0"
        f" AND deployment_id = {history[0]['id']}",
    )[0]
    assert errors > 0


def test_added_latency_is_level_1_recorded_while_the_window_goes_on(site: object) -> None:
    folder, ports = site  # type: ignore[misc]
    configure(folder, ports, failure_limit=1000)  # the level decides here, not the failure limit
    assert rollout(folder, "deploy", "production", GOOD, "--no-monitor").returncode == 0

    done = rollout(folder, "deploy", "production", SLOW)

    said = " ".join(done.stdout.split())
    assert done.returncode == 0, said
    assert versions(ports) == {SLOW}
    (incident,) = json.loads(rollout(folder, "incidents", "--json").stdout)
    assert incident["level"] == 1 and incident["status"] == "open"
    assert "response_time_p95" in incident["symptoms"] and incident["mitigated_at"] is None


def test_the_baseline_comparison_flags_a_latency_shift_the_thresholds_miss(site: object) -> None:
    folder, ports = site  # type: ignore[misc]
    configure(folder, ports, baseline="5m", p95_max="2s")
    assert rollout(folder, "deploy", "production", GOOD).returncode == 0  # its window: the baseline

    done = rollout(folder, "deploy", "production", SHIFTED)  # +150 ms: far under the 2 s max

    said = " ".join(done.stdout.split())
    assert done.returncode == 1, said + done.stderr
    assert "baseline comparison fail" in said and "latency_seconds" in said, said[-1500:]
    assert versions(ports) == {GOOD}


def test_prometheus_going_away_mid_window_is_an_inconclusive_pause_not_a_pass(
    site: object, prometheus: object
) -> None:
    import time

    folder, ports = site  # type: ignore[misc]
    configure(folder, ports)
    assert rollout(folder, "deploy", "production", GOOD, "--no-monitor").returncode == 0
    server = prometheus([f"127.0.0.1:{p}" for p in ports])  # type: ignore[operator]
    text = (
        (folder / "rollout.yml")
        .read_text()
        .replace(
            "  failure_limit:",
            "    targets_up: {source: prometheus, query: 'min(up)', min: 1}\n"
            f"  sources: {{prometheus: '{server.url}'}}\n  consecutive_error_limit: 2\n  failure_limit:",
        )
    )
    (folder / "rollout.yml").write_text(text)

    watching = subprocess.Popen(
        [sys.executable, "-m", "rollout", "monitor", "production", "--for", "60s",
         "--config", str(folder / "rollout.yml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )  # fmt: skip
    time.sleep(4)  # a few good intervals first
    server.stop()
    out, err = watching.communicate(timeout=60)

    said = " ".join(out.split())
    assert watching.returncode == 3, said + err  # not 0: a window that cannot see never passes
    assert "targets_up 1 (running)" in said  # it did read Prometheus before it went away
    assert (
        "inconclusive" in said
        and "targets_up" in said
        and "consecutive errors 3 > consecutive_error_limit 2" in said
    )
    (errors,) = recorded(
        folder,
        "SELECT count(*) FROM samples WHERE source = 'prometheus' AND value IS NULL",
    )[0]
    assert errors >= 3  # each failed read is on record as an error, never as a zero


def test_an_unacknowledged_incident_escalates_along_the_path(site: object) -> None:
    folder, ports = site  # type: ignore[misc]
    configure(folder, ports, failure_limit=1000)
    text = (folder / "rollout.yml").read_text()
    text = text.replace("respond_within: 15m", "respond_within: 1s")
    (folder / "rollout.yml").write_text(text + "people: {escalation: [on-call, platform-lead]}\n")
    assert rollout(folder, "deploy", "production", SLOW, "--no-monitor").returncode == 0

    watched = rollout(folder, "monitor", "production", "--for", "5s")

    said = " ".join(watched.stdout.split())
    assert watched.returncode == 0, said + watched.stderr  # level 1: recorded, not a rollback
    assert said.index("escalated to on-call") < said.index("escalated to platform-lead")
    (incident,) = json.loads(rollout(folder, "incidents", "--json").stdout)
    assert incident["level"] == 1 and incident["action"] == "escalated to platform-lead"
    assert recorded(folder, "SELECT count(*) FROM audit WHERE action = 'incident.escalated'") == [
        (2,)
    ]


def test_incidents_rollout_monitor_finds_are_told_and_shown_on_the_status_page(
    site: object, receiver: Receiver
) -> None:
    folder, ports = site  # type: ignore[misc]
    configure(folder, ports, failure_limit=1000)
    with (folder / "rollout.yml").open("a") as f:
        f.write(
            "notify:\n"
            f"  incidents: ['json://127.0.0.1:{receiver.port}/incidents']\n"
            "  status_page: {dir: public/status, components: [web]}\n"
        )
    assert rollout(folder, "deploy", "production", SLOW, "--no-monitor").returncode == 0
    told_by_deploy = len(receiver.posts)

    watched = rollout(folder, "monitor", "production", "--for", "4s")

    assert watched.returncode == 0, watched.stdout + watched.stderr  # level 1: recorded
    (incident,) = json.loads(rollout(folder, "incidents", "--json").stdout)
    titles = receiver.titles("/incidents")[told_by_deploy:]
    assert f"united-cars production: incident #{incident['id']} level 1" in titles
    page = json.loads((folder / "public/status/status.json").read_text())
    assert page["status"] == "degraded"
    assert page["incident"]["id"] == incident["id"] and page["incident"]["level"] == 1


def test_an_slo_burn_rate_past_the_page_rule_is_a_symptom(site: object) -> None:
    folder, ports = site  # type: ignore[misc]
    configure(folder, ports, failure_limit=1000)
    text = (folder / "rollout.yml").read_text()
    text = text.replace(
        "  paths: [/api/health, /api/vehicles]",
        "  paths: [/api/vehicles, '/api/vehicles?a', '/api/vehicles?b', '/api/vehicles?c', '/api/vehicles?d']",
    )
    text = text[: text.index("incidents:")] + (
        "incidents:\n"
        "  level2: {when: ['slo burn'], respond_within: 10m, actions: [page, rollback]}\n"
        "kpi: {targets: {availability: 99.9%}}\n"
    )
    (folder / "rollout.yml").write_text(text)
    assert rollout(folder, "deploy", "production", GOOD, "--no-monitor").returncode == 0

    done = rollout(folder, "deploy", "production", BROKEN)

    said = " ".join(done.stdout.split())
    assert done.returncode == 1, said + done.stderr
    assert "level 2 (major): slo burn" in said and "14.4" in said
    assert versions(ports) == {GOOD}


def test_ctrl_c_while_watching_stops_the_watching_not_the_release(site: object) -> None:
    import signal
    import time

    folder, ports = site  # type: ignore[misc]
    configure(folder, ports)
    deploying = subprocess.Popen(
        [sys.executable, "-m", "rollout", "deploy", "production", GOOD, "--monitor", "60s",
         "--config", str(folder / "rollout.yml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1", "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    assert deploying.stdout is not None
    seen = []
    for line in deploying.stdout:  # wait until the window is running
        seen.append(line)
        if "response_time_p95" in line:
            break
    time.sleep(1)
    deploying.send_signal(signal.SIGINT)
    out, err = deploying.communicate(timeout=60)

    said = " ".join(("".join(seen) + out).split())
    assert deploying.returncode == 0, said + err
    assert "this deployment is unwatched" in said
    assert versions(ports) == {GOOD}  # nothing was rolled back
    history = json.loads(rollout(folder, "history", "--json").stdout)
    assert history[0]["status"] == "succeeded"
    assert recorded(folder, "SELECT count(*) FROM audit WHERE action = 'deployment.unwatched'") == [
        (1,)
    ]
