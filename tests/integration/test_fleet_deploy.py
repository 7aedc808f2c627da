"""Rolling deploys of the example app to real sshd hosts, and a host lost halfway."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.sandbox.build import Release, build_artifacts
from tests.fixtures.netns import NetnsLab
from tests.fixtures.sshd import TEST_USER, Fleet, SshdHost, free_port

V1, V2 = "v2026.03.01-1111111", "v2026.03.02-2222222"

RUNBOOK = """\
app: united-cars
release: {{artifact: 'dist/united-cars-{{tag}}.tar.gz', keep: 3}}
runtime:
  kind: release-dir
  path: srv/united-cars
  launcher:
    command: ['{python}', '-m', 'uvicorn', 'united_cars.main:app', '--host', '{{bind}}', '--port', '{{port}}', '--no-access-log']
    env: {{PYTHONPATH: '{{release_dir}}', UNITED_CARS_DATABASE_URL: 'sqlite:///{{shared_dir}}/united-cars.db'}}
    stop_timeout: 5s
  health_url: 'http://{{bind}}:{{port}}/api/health'
  health_timeout: 30s
ssh: {{known_hosts: '{known_hosts}', key_file: '{key}', agent: false, connect_timeout: 3s,
      command_timeout: 60s, keepalive_interval: 1s, keepalive_count_max: 2}}
checks: {{cpu_max: 100%}}  # the test hosts share this machine with the test run
environments:
  production:
    batch: 2
    hosts:
{hosts}
verify:
  endpoints:
    - {{path: /api/health, conditions: ['[STATUS] == 200', '[BODY].status == ok']}}
  version: {{path: /api/version, field: version}}
"""


def write_runbook(root: Path, hosts: list[SshdHost], known_hosts: Path, key: Path) -> Path:
    entries = "\n".join(
        f"      - {{name: {h.name}, address: {h.address}, port: {h.port}, user: {TEST_USER}, root: '{h.root}',"
        f" url: 'http://{h.address}:{{port}}', vars: {{bind: {h.address}, port: '{free_port()}'}}}}"
        for h in hosts
    )
    path = root / "rollout.yml"
    path.write_text(
        RUNBOOK.format(python=sys.executable, known_hosts=known_hosts, key=key, hosts=entries)
    )
    build_artifacts(root, [Release(t, t, None) for t in (V1, V2)])
    return path


def rollout(config: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def current(host: SshdHost) -> str | None:
    path = host.root / "srv" / "united-cars" / ".current-production-version"
    return path.read_text().strip() if path.exists() else None


def stop_apps(hosts: list[SshdHost]) -> None:
    for host in hosts:
        pidfile = host.root / "srv" / "united-cars" / "run" / "app.pid"
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


@pytest.fixture
def lab(client_key: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsLab]:
    base = Path(
        subprocess.run(
            ["mktemp", "-d", "/tmp/rollout-netns-XXXX"], capture_output=True, text=True
        ).stdout.strip()
    )
    os.chmod(base, 0o755)
    lab = NetnsLab(base, client_key)
    yield lab
    lab.close()
    subprocess.run(["rm", "-rf", str(base)])


def test_a_rolling_deploy_to_four_hosts_goes_two_by_two_and_is_recorded_per_host(
    fleet: Fleet,
) -> None:
    hosts = [fleet.add(f"web-{i}", f"127.0.0.{i + 1}") for i in range(1, 5)]
    config = write_runbook(fleet.base, hosts, fleet.known_hosts, fleet.client_key)
    try:
        first = rollout(config, "deploy", "production", V1)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr
        second = rollout(config, "deploy", "production", V2)
        assert second.returncode == 0, second.stdout[-3000:] + second.stderr
        assert [current(h) for h in hosts] == [V2] * 4

        db = sqlite3.connect(fleet.base / ".rollout" / "rollout.db")
        steps = db.execute(
            "select name, host, started_at, finished_at, status from steps "
            "where deployment_id = 2 and phase = 'deploy' order by id"
        ).fetchall()
        assert {(n, h) for n, h, *_ in steps} == {
            (n, h.name) for n in ("install", "activate", "health") for h in hosts
        }
        assert all(s == "succeeded" for *_, s in steps)
        started = {(n, h): a for n, h, a, _, _ in steps}
        finished = {(n, h): b for n, h, _, b, _ in steps}
        # Batch 2 starts switching only after batch 1 is healthy.
        assert max(finished[("health", h)] for h in ("web-1", "web-2")) <= min(
            started[("activate", h)] for h in ("web-3", "web-4")
        )
        status = json.loads(rollout(config, "status", "production", "--json").stdout)
        assert [(h["host"], h["current"], h["healthy"]) for h in status["hosts"]] == [
            (h.name, V2, True) for h in hosts
        ]
    finally:
        stop_apps(hosts)


def test_an_unreachable_host_stops_the_deploy_before_anything_changes(fleet: Fleet) -> None:
    hosts = [fleet.add(f"web-{i}", f"127.0.0.{i + 1}") for i in range(1, 4)]
    config = write_runbook(fleet.base, hosts, fleet.known_hosts, fleet.client_key)
    from tests.fixtures.sshd import stop

    stop(hosts[2].process)  # web-3 is down before the deploy starts
    result = rollout(config, "deploy", "production", V1)
    assert result.returncode == 3
    assert "web-3" in result.stdout and "unreachable" in result.stdout
    assert [current(h) for h in hosts] == [None, None, None]
    assert not any((h.root / "srv" / "united-cars" / "releases").exists() for h in hosts)


def test_a_host_cut_mid_rollout_leaves_no_host_on_the_new_release(lab: NetnsLab) -> None:
    hosts = [lab.add(f"web-{i}", 10 + i) for i in range(1, 5)]
    config = write_runbook(lab.base, hosts, lab.known_hosts, lab.client_key)
    try:
        first = rollout(config, "deploy", "production", V1)
        assert first.returncode == 0, first.stdout[-3000:] + first.stderr
        deploy = subprocess.Popen(
            [sys.executable, "-m", "rollout", "deploy", "production", V2, "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Cut web-3 (batch 2) while batch 1 is switching: its hosts already report V2.
        deadline = time.monotonic() + 60
        while current(hosts[0]) != V2 and time.monotonic() < deadline:
            time.sleep(0.05)
        lab.cut(hosts[2])
        out, err = deploy.communicate(timeout=180)

        assert deploy.returncode == 3, out[-3000:] + err
        assert V2 not in [current(h) for h in hosts], [current(h) for h in hosts]
        assert [current(h) for h in (hosts[0], hosts[1], hosts[3])] == [V1, V1, V1]
        assert json.loads(rollout(config, "lock", "status", "production", "--json").stdout) is None
        latest = json.loads(rollout(config, "history", "--json").stdout)[0]
        assert latest["tag"] == V2 and latest["failed_host"] == "web-3"
        assert latest["status"] in ("rolled_back", "failed")
        assert "connection lost" in latest["reason"] or "timed out" in latest["reason"]
    finally:
        stop_apps(hosts)
