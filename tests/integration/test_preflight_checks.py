"""Pre-flight checks, each against a real host, server or database in a passing and a failing state."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from rollout.checks.database import check_database
from rollout.checks.http import check_ready
from rollout.checks.resources import check_cpu, check_memory
from rollout.config import load_runbook
from rollout.engine.plan import plan_deploy
from rollout.hosts.local import LocalHost
from rollout.model import CheckStatus
from tests.fixtures.postgres import cluster
from tests.fixtures.sandbox import TAGS, Sandbox, build_artifact, make_sandbox

V1, V2, V3 = TAGS


@pytest.fixture
def host(tmp_path: Path) -> LocalHost:
    return LocalHost("web-1", tmp_path)


def test_cpu_passes_below_its_limit_and_fails_under_load(host: LocalHost) -> None:
    assert asyncio.run(check_cpu(host, 100)).status is CheckStatus.SKIP  # no limit, no sampling
    # Whatever else this machine runs (the suite's other workers), the reading decides.
    reading = asyncio.run(check_cpu(host, 99.9))
    sampled = re.fullmatch(r"/proc/stat over 0.5 s: (\d+) jiffies, (\d+) idle", reading.evidence)
    assert sampled, reading
    total, idle = int(sampled[1]), int(sampled[2])
    assert 0 <= idle <= total and total > 0
    busy = 100 * (total - idle) / total
    assert reading.value == f"{busy:.0f} % busy"
    assert reading.status is (CheckStatus.PASS if busy < 99.9 else CheckStatus.FAIL)
    # Two busy loops keep both cores of this machine near 100 % while the check samples.
    burners = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    try:
        loaded = asyncio.run(check_cpu(host, 80, interval=1.0))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    assert loaded.status is CheckStatus.FAIL, loaded
    assert loaded.value.endswith("% busy") and loaded.threshold == "< 80 %"


def test_memory_is_read_from_meminfo(host: LocalHost) -> None:
    ok = asyncio.run(check_memory(host, 100))
    assert ok.status is CheckStatus.PASS and "GiB available" in ok.value
    tight = asyncio.run(check_memory(host, 1))  # any running machine uses more than 1 %
    assert tight.status is CheckStatus.FAIL and tight.remedy


def test_database_up_and_stopped() -> None:
    with cluster() as db:
        up = asyncio.run(check_database(db.url))
        assert up.status is CheckStatus.PASS and "PostgreSQL 15" in up.evidence
        db.stop()
        down = asyncio.run(check_database(db.url, timeout=2))
    assert down.status is CheckStatus.FAIL and down.value == "unreachable"
    assert "refused" in down.evidence or "connect" in down.evidence


class _Ready(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.end_headers()
        self.wfile.write(b"Prometheus Server is Ready.\n")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def monitoring() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ready)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_monitoring_ready_not_ready_and_down(monitoring: ThreadingHTTPServer) -> None:
    url = f"http://127.0.0.1:{monitoring.server_address[1]}/-/ready"

    async def probe() -> CheckStatus:
        async with httpx.AsyncClient() as client:
            return (await check_ready(client, url)).status

    assert asyncio.run(probe()) is CheckStatus.PASS
    _Ready.status = 503
    try:
        assert asyncio.run(probe()) is CheckStatus.FAIL
    finally:
        _Ready.status = 200
    monitoring.shutdown()
    monitoring.server_close()
    assert asyncio.run(probe()) is CheckStatus.FAIL


def test_a_deploy_is_refused_when_the_way_back_is_gone(sandbox: Sandbox) -> None:
    build_artifact(sandbox.root / "dist", V3)
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    assert sandbox.rollout("deploy", "production", V2).returncode == 0
    (sandbox.host_dir("web-2") / "releases" / V2 / ".rollout-release").unlink()
    result = sandbox.rollout("deploy", "production", V3, "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["failed_step"] == "preflight/rollback-ready" and report["failed_host"] == "web-2"
    assert [sandbox.current(h) for h in sandbox.hosts] == [V2, V2]


def test_environment_checks_are_planned_only_when_configured(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path)
    plain = plan_deploy(load_runbook(box.config, {"APP_TOKEN": "x"}), "production", V1)
    assert {s.name for s in plain.steps if s.host is None} == {"artifact"}
    text = box.config.read_text().replace(
        "checks: {cpu_max: 100%}",
        "checks: {cpu_max: 100%, monitoring_url: 'http://127.0.0.1:9/-/ready'}",
    )
    staging = "  staging:\n    hosts: [{name: s-1, kind: local, address: 127.0.0.1, root: s}]\n"
    text = text.replace("environments:\n", "environments:\n" + staging, 1)
    box.config.write_text(text)
    planned = plan_deploy(load_runbook(box.config, {"APP_TOKEN": "x"}), "production", V1)
    assert {s.name for s in planned.steps if s.host is None} == {
        "artifact",
        "staging",
        "monitoring",
    }


def test_the_cli_check_table_covers_every_host(sandbox: Sandbox) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rollout",
            "deploy",
            "production",
            V1,
            "--dry-run",
            "--config",
            str(sandbox.config),
        ],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, **sandbox.env},
    )
    for name in ("connect", "disk", "cpu", "memory", "production-health", "rollback-ready"):
        assert f"{name} on web-1" in result.stdout and f"{name} on web-2" in result.stdout


def test_backup_age_fresh_old_and_missing(host: LocalHost, tmp_path: Path) -> None:
    import os
    import time
    from datetime import timedelta

    from rollout.checks.backup import check_backup_age

    folder = tmp_path / "backups"
    folder.mkdir()
    missing = asyncio.run(check_backup_age(host, str(folder), timedelta(hours=26)))
    assert missing.status is CheckStatus.FAIL and missing.value == "none found"
    dump = folder / "united-cars-2026-11-27.dump"
    dump.write_bytes(b"PGDMP")
    fresh = asyncio.run(check_backup_age(host, str(folder), timedelta(hours=26)))
    assert fresh.status is CheckStatus.PASS and dump.name in fresh.evidence
    two_days_ago = time.time() - 48 * 3600
    os.utime(dump, (two_days_ago, two_days_ago))
    old = asyncio.run(check_backup_age(host, str(folder), timedelta(hours=26)))
    assert old.status is CheckStatus.FAIL and old.value == "2.0 d old"


def test_disk_fails_over_its_limit(host: LocalHost, tmp_path: Path) -> None:
    from rollout.checks.resources import check_disk

    assert asyncio.run(check_disk(host, str(tmp_path), 100)).status is CheckStatus.PASS
    full = asyncio.run(
        check_disk(host, str(tmp_path / "not" / "yet"), 0.001)
    )  # nearest existing parent is used
    assert full.status is CheckStatus.FAIL and full.remedy


def test_endpoint_timing_is_split_into_phases(monitoring: ThreadingHTTPServer) -> None:
    from rollout.checks.http import fetch

    url = f"http://127.0.0.1:{monitoring.server_address[1]}/-/ready"

    async def get():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient() as client:
            return await fetch(client, "GET", url, 5.0)

    response = asyncio.run(get())
    assert set(response.phases) == {"connect", "first byte", "transfer"}  # no TLS over http
    assert sum(response.phases.values()) <= response.elapsed_ms + 1
