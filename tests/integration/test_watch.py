"""``rollout watch``: a live view of an environment, on the example app with real faults.

Two local hosts run United Cars: web-1 a clean release, web-2 one that answers every
/api/vehicles request with HTTP 500 (its health stays up). The view must show, per host, what
runs, that it is up, its CPU and its error rate (0 % and 100 %), and a stopped app as down.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import httpx
import pytest

from rollout.config import Runbook, load_runbook
from rollout.engine.targets import close_targets, open_targets
from rollout.model import utcnow
from rollout.monitor.view import Snapshot, Standing, Watch, snapshot
from rollout.runtimes import make_runtime
from rollout.sandbox.build import Release, build_artifacts, free_port
from rollout.store import Store, open_store
from tests.fixtures.example_app import runtime_yaml
from tests.fixtures.prometheus import running_prometheus

DAY = date.today().strftime("%Y.%m.%d")
GOOD, BROKEN = f"v{DAY}-a1b2c3d", f"v{DAY}-b2c3d4e"

RUNBOOK = """\
app: united-cars
store: .rollout/rollout.db
release: {{artifact: 'dist/united-cars-{{tag}}.tar.gz', keep: 5}}
{runtime}environments:
  production:
    batch: 1
    hosts:
{hosts}
verify:
  endpoints:
    - {{path: /api/health, conditions: ['[STATUS] == 200']}}
  version: {{path: /api/version, field: version}}
monitor:
  interval: 500ms
  paths: [/api/health, /api/vehicles]
  metrics:
    response_time_p95: {{source: probe, max: 2s}}
    error_rate: {{source: probe, max: 1%}}
    memory: {{source: host, max: 100%}}
{prometheus}
"""
HOST = (
    "      - {{name: {name}, kind: local, address: 127.0.0.1, root: hosts/{name},"
    " url: 'http://127.0.0.1:{{port}}', vars: {{port: '{port}'}}}}"
)
PROMETHEUS = """\
    hosts_up: {{source: prometheus, query: 'count(up == 1)', min: 2}}
  sources: {{prometheus: '{url}'}}
"""


@dataclass
class Site:
    folder: Path
    ports: dict[str, int]

    def configure(self, *names: str, prometheus: str | None = None) -> None:
        hosts = "\n".join(HOST.format(name=n, port=self.ports[n]) for n in names)
        extra = "" if prometheus is None else PROMETHEUS.format(url=prometheus)
        text = RUNBOOK.format(runtime=runtime_yaml(), hosts=hosts, prometheus=extra)
        (self.folder / "rollout.yml").write_text(text)

    def stop(self, name: str) -> None:
        pidfile = self.folder / "hosts" / name / "srv/united-cars/run/app.pid"
        subprocess.run(["kill", pidfile.read_text().strip()], check=True)


def rollout(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args, "--config", str(folder / "rollout.yml")],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """web-1 runs GOOD, web-2 runs BROKEN (each deployed with a runbook naming only it)."""
    folder = tmp_path_factory.mktemp("watch")
    build_artifacts(
        folder,
        [
            Release("good", GOOD, None),
            Release("broken", BROKEN, {"error_rate": 1.0, "routes": ["/api/vehicles"]}),
        ],
    )
    site = Site(folder, {"web-1": free_port(), "web-2": free_port()})
    try:
        for name, tag in (("web-1", GOOD), ("web-2", BROKEN)):
            site.configure(name)
            done = rollout(folder, "deploy", "production", tag, "--no-monitor")
            assert done.returncode == 0, done.stdout + done.stderr
        site.configure("web-1", "web-2")
        yield site
    finally:
        for pidfile in folder.glob("hosts/*/srv/united-cars/run/app.pid"):
            subprocess.run(["kill", pidfile.read_text().strip()], capture_output=True)


def rows(output: str) -> dict[str, list[str]]:
    """The table's rows by their first cell, cells split on runs of two spaces or more."""
    found = {}
    for line in output.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if cells and cells[0] in ("web-1", "web-2", "all"):
            found[cells[0]] = cells
    return found


def test_watch_once_shows_each_host_its_release_health_cpu_and_error_rate(site: Site) -> None:
    done = rollout(site.folder, "watch", "production", "--once", "--interval", "500ms")

    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    web1, web2 = table["web-1"], table["web-2"]
    # host, release, health, cpu, memory, load, p95, errors
    assert web1[:3] == ["web-1", GOOD, "up"] and web2[:3] == ["web-2", BROKEN, "up"]
    for row in (web1, web2):
        assert re.fullmatch(r"\d+(\.\d)?%", row[3]), row  # CPU %
        assert re.fullmatch(r"\d+(\.\d)?%", row[4]), row  # memory %
        assert re.fullmatch(r"\d+\.\d\d", row[5]), row  # load
        assert re.fullmatch(r"\d+ ms", row[6]), row  # p95
    assert web1[7] == "0.0%" and web2[7] == "100%"
    # the environment: every /api/vehicles of web-2, none of web-1 (health has its own column)
    assert table["all"][:2] == ["all", "2 hosts"]
    assert table["all"][-1] == "50.0%"
    assert "no open incidents" in done.stdout


def test_snapshot_reduces_per_host_and_for_the_environment(
    site: Site, tmp_path_factory: pytest.TempPathFactory
) -> None:
    targets = [f"127.0.0.1:{port}" for port in site.ports.values()]
    with running_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as prometheus:
        site.configure("web-1", "web-2", prometheus=prometheus.url)
        try:
            runbook = load_runbook(site.folder / "rollout.yml")
            with open_store(runbook.store_url) as store:
                incident = store.open_incident(
                    env="production",
                    deployment_id=None,
                    level=2,
                    title="level 2 (major) incident in production",
                    symptoms="error_rate 0.5 > 0.01",
                    impact_start=None,
                    detected_at=utcnow(),
                    action=None,
                )
                try:
                    snaps = asyncio.run(_two_snapshots(runbook, store))
                finally:
                    store.update_incident(incident, status="resolved", resolved_at=utcnow())
        finally:
            site.configure("web-1", "web-2")

    first, second = snaps
    assert (first.lookback, second.lookback) == (1, 2)
    web1, web2 = second.hosts
    assert (web1.name, web1.release, web1.health) == ("web-1", GOOD, True)
    assert (web2.name, web2.release, web2.health) == ("web-2", BROKEN, True)
    for host in (web1, web2):
        assert host.cpu_percent.value is not None and 0 <= host.cpu_percent.value <= 100
        assert host.memory_percent.value is not None and host.memory_percent.max == 100
        assert host.load1.value is not None and host.p95_seconds.value is not None
        assert host.p95_seconds.max == 2.0 and host.notes == ()
    assert web1.error_rate.value == 0.0 and web1.error_rate.standing is Standing.OK
    assert web2.error_rate.value == 1.0 and web2.error_rate.standing is Standing.PAST
    assert second.environment.error_rate.value == 0.5
    up = second.environment.metrics["hosts_up"]
    assert (up.value, up.min, up.standing) == (2.0, 2.0, Standing.OK)
    [shown] = [i for i in second.incidents if i.id == incident]
    assert (shown.level, shown.title, shown.acknowledged) == (2, "major", False)


async def _two_snapshots(runbook: Runbook, store: Store) -> list[Snapshot]:
    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    targets = open_targets(runbook, "production")
    try:
        async with httpx.AsyncClient() as http:
            watch = Watch(runbook, "production", targets, runtime, http, store=store)
            return [await snapshot(watch), await snapshot(watch)]
    finally:
        await close_targets(targets)


def test_without_a_terminal_it_prints_a_plain_table_each_interval_until_its_time_is_up(
    site: Site,
) -> None:
    done = rollout(site.folder, "watch", "production", "--interval", "500ms", "--for", "2s")

    assert done.returncode == 0, done.stdout + done.stderr
    tables = done.stdout.count("united-cars / production")
    assert 2 <= tables <= 4, done.stdout  # the first takes longer: it reads CPU twice
    assert "\x1b[" not in done.stdout  # no cursor movement: a plain table each time
    assert "over the last 2 intervals" in done.stdout


def test_a_stopped_app_shows_as_down(site: Site) -> None:  # last: it stops web-1
    site.stop("web-1")

    done = rollout(site.folder, "watch", "production", "--once", "--interval", "500ms")

    assert done.returncode == 0, done.stdout + done.stderr
    table = rows(done.stdout)
    assert table["web-1"][:3] == ["web-1", GOOD, "down"]
    assert table["web-1"][7] == "100%"  # no answer at all counts as an error
    assert table["web-2"][:3] == ["web-2", BROKEN, "up"]
