"""The monitor's sources against real things: the example app, Prometheus scraping it, hosts.

Every failure must come back as an error sample (value None, a reason), never as a zero and
never as an exception: a window that cannot see must not look healthy.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rollout.config import HostConfig, SshSettings
from rollout.hosts.base import Host
from rollout.hosts.local import LocalHost
from rollout.hosts.ssh import SshHost
from rollout.monitor.sources import HostStatsSource, ProbeSource, PrometheusSource, Sample
from tests.fixtures.example_app import EXAMPLE_DIR, free_port, start_example_app, stop
from tests.fixtures.prometheus import Prometheus, running_prometheus
from tests.fixtures.sshd import TEST_USER, Fleet
from tests.fixtures.sshd import stop as stop_sshd

PATHS = ["/api/version", "/"]


def by(samples: list[Sample], metric: str, **labels: str) -> list[Sample]:
    return [
        s
        for s in samples
        if s.metric == metric and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def one(samples: list[Sample], metric: str, **labels: str) -> Sample:
    found = by(samples, metric, **labels)
    assert len(found) == 1, (metric, labels, samples)
    return found[0]


def probe(base: str, paths: list[str] = PATHS) -> list[Sample]:
    async def scenario() -> list[Sample]:
        async with httpx.AsyncClient() as client:
            return await ProbeSource(client, [("web-1", base)], paths, timeout=5).collect()

    return asyncio.run(scenario())


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    proc, base = start_example_app(tmp_path)
    yield proc, base
    stop(proc)


# --- the probe --------------------------------------------------------------------------------


def test_probe_of_a_healthy_app_measures_latency_no_errors_and_health_up(
    app: tuple[subprocess.Popen[bytes], str],
) -> None:
    samples = probe(app[1])
    for path in [*PATHS, "/api/health"]:
        latency = one(samples, "latency_seconds", path=path)
        assert latency.ok and 0 < latency.value < 5 and latency.labels["status"] == "200"  # type: ignore[operator]
        assert latency.host == "web-1" and latency.source == "probe"
        assert latency.at.tzinfo is not None
        assert one(samples, "http_error", path=path).value == 0.0
    assert one(samples, "health").value == 1.0
    # A fresh connection per host: its phases are measured and fit inside the total.
    phases = by(samples, "latency_phase_seconds")
    assert {"connect", "first_byte"} <= {s.labels["phase"] for s in phases}
    assert all(s.value is not None and 0 <= s.value < 5 for s in phases)


def test_probe_counts_server_errors_as_http_errors(tmp_path: Path) -> None:
    proc, base = start_example_app(tmp_path, faults={"error_rate": 1.0})
    try:
        samples = probe(base)
    finally:
        stop(proc)
    for path in PATHS:
        assert one(samples, "http_error", path=path).value == 1.0
        assert one(samples, "latency_seconds", path=path).labels["status"] == "500"
    assert one(samples, "health").value == 1.0  # the health route is exempt from the fault


def start_unhealthy_app(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """The example app with its health fault on: start_example_app waits for a healthy
    /api/health, so this one waits for /api/version instead."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITED_CARS_")}
    env |= {
        "PYTHONPATH": str(EXAMPLE_DIR),
        "UNITED_CARS_DATABASE_URL": f"sqlite:///{folder / 'app.db'}",
        "UNITED_CARS_FAULTS": '{"health_down": true}',
    }
    argv = [sys.executable, "-m", "uvicorn", "united_cars.main:app", "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning"]  # fmt: skip
    with (folder / "server.log").open("wb") as log:
        proc = subprocess.Popen(argv, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/api/version", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            time.sleep(0.1)
    stop(proc)
    pytest.fail((folder / "server.log").read_text())


def test_probe_reports_health_down_as_a_measured_zero(tmp_path: Path) -> None:
    proc, base = start_unhealthy_app(tmp_path)
    try:
        samples = probe(base)
    finally:
        stop(proc)
    health = one(samples, "health")
    assert health.value == 0.0 and health.error is None and health.labels["status"] == "503"
    assert one(samples, "http_error", path="/api/health").value == 1.0
    assert one(samples, "http_error", path="/api/version").value == 0.0


def test_probe_of_a_stopped_app_gives_error_latency_and_http_errors(
    app: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, base = app
    stop(proc)
    samples = probe(base)
    for path in [*PATHS, "/api/health"]:
        latency = one(samples, "latency_seconds", path=path)
        assert latency.value is None and "ConnectError" in str(latency.error), latency
        assert base in str(latency.error)
        assert one(samples, "http_error", path=path).value == 1.0
    assert one(samples, "health").value == 0.0  # nobody answers: down, not unknown
    assert not by(samples, "latency_phase_seconds")


def test_probe_requests_every_path_on_every_host_at_once(tmp_path: Path) -> None:
    """Two hosts that each take 1 s per request: one interval costs about 1 s, not 6."""
    apps = []
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            apps.append(start_example_app(tmp_path / name, faults={"latency_ms": 1000}))

        async def scenario() -> tuple[list[Sample], float]:
            async with httpx.AsyncClient() as client:
                source = ProbeSource(
                    client, [("web-1", apps[0][1]), ("web-2", apps[1][1])], PATHS, timeout=5
                )
                started = time.perf_counter()
                samples = await source.collect()
                return samples, time.perf_counter() - started

        samples, took = asyncio.run(scenario())
    finally:
        for proc, _ in apps:
            stop(proc)
    assert took < 2.5, took
    assert {(s.host, s.labels["path"]) for s in by(samples, "http_error")} == {
        (h, p) for h in ("web-1", "web-2") for p in [*PATHS, "/api/health"]
    }
    slow = [s for s in by(samples, "latency_seconds") if s.labels["path"] in PATHS]
    assert len(slow) == 4 and all(s.value is not None and s.value >= 1.0 for s in slow), slow


# --- Prometheus -------------------------------------------------------------------------------


@dataclass
class Scraped:
    prometheus: Prometheus
    healthy: str  # host:port of an app that never fails
    faulty: str  # host:port of an app failing half its requests


def _address(base: str) -> str:
    return base.removeprefix("http://")


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    healthy = start_example_app(tmp_path_factory.mktemp("healthy"))
    faulty = start_example_app(tmp_path_factory.mktemp("faulty"), faults={"error_rate": 0.5})
    try:
        targets = [_address(healthy[1]), _address(faulty[1])]
        with running_prometheus(tmp_path_factory.mktemp("prometheus"), targets) as prometheus:
            _wait_for_up(prometheus, targets)
            asyncio.run(_drive_traffic([healthy[1], faulty[1]], seconds=4.0))
            time.sleep(2.5)  # two more scrapes see the last of it
            yield Scraped(prometheus, *targets)
    finally:
        stop(healthy[0])
        stop(faulty[0])


def _wait_for_up(prometheus: Prometheus, targets: list[str]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        answer = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": "up == 1"})
        if len(answer.json()["data"]["result"]) == len(targets):
            return
        time.sleep(0.2)
    pytest.fail(f"not every target is up:\n{prometheus.log()}")


async def _drive_traffic(bases: list[str], seconds: float) -> None:
    """Steady traffic while Prometheus scrapes, so rate() sees it rise across samples."""
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.gather(*(client.get(f"{b}/api/version") for b in bases for _ in range(5)))
            await asyncio.sleep(0.05)


def query(url: str, queries: dict[str, str], timeout: float = 5.0) -> list[Sample]:
    async def scenario() -> list[Sample]:
        async with httpx.AsyncClient() as client:
            return await PrometheusSource(client, url, queries, timeout=timeout).collect()

    return asyncio.run(scenario())


ERROR_RATE = (
    '(sum by (instance) (rate(http_requests_total{route="/api/version",status=~"5.."}[30s]))'
    ' or sum by (instance) (rate(http_requests_total{route="/api/version"}[30s])) * 0)'
    ' / sum by (instance) (rate(http_requests_total{route="/api/version"}[30s]))'
)


def test_an_error_rate_query_reflects_the_injected_errors_per_instance(scraped: Scraped) -> None:
    samples = query(scraped.prometheus.url, {"error_rate": ERROR_RATE})
    rates = {s.labels["instance"]: s for s in samples}
    assert set(rates) == {scraped.healthy, scraped.faulty}, samples
    assert rates[scraped.healthy].value == 0.0
    faulty = rates[scraped.faulty].value
    assert faulty is not None and 0.3 < faulty < 0.7, rates[scraped.faulty]  # injected: 0.5
    assert all(s.source == "prometheus" and s.metric == "error_rate" for s in samples)
    assert all(abs(time.time() - s.at.timestamp()) < 30 for s in samples)


def test_a_scalar_query_gives_one_sample(scraped: Scraped) -> None:
    [sample] = query(scraped.prometheus.url, {"answer": "scalar(count(up == 1)) * 21"})
    assert sample.value == 42.0 and sample.error is None and dict(sample.labels) == {}


def test_a_bad_query_is_an_error_sample_and_spoils_no_other_metric(scraped: Scraped) -> None:
    samples = query(
        scraped.prometheus.url,
        {"broken": "sum(rate(http_requests_total[1m]", "targets": "count(up == 1)"},
    )
    broken = one(samples, "broken")
    assert broken.value is None and broken.error is not None
    assert broken.error.startswith("broken: ") and "bad_data" in broken.error, broken.error
    assert one(samples, "targets").value == 2.0


def test_an_empty_result_is_no_data_never_healthy(scraped: Scraped) -> None:
    [sample] = query(scraped.prometheus.url, {"errors": 'http_requests_total{route="/nowhere"}'})
    assert sample.value is None and sample.error == "errors: no data"


def test_nan_from_a_ratio_over_no_traffic_is_an_error_sample(scraped: Scraped) -> None:
    no_traffic = 'sum(rate(http_requests_total{route="/metrics"}[30s])) * 0 / 0'
    [sample] = query(scraped.prometheus.url, {"ratio": no_traffic})
    assert sample.value is None and "NaN" in str(sample.error)


def test_something_that_is_not_prometheus_is_an_error_sample(scraped: Scraped) -> None:
    [sample] = query(f"http://{scraped.healthy}", {"error_rate": ERROR_RATE})
    assert sample.value is None and "HTTP 404" in str(sample.error)


def test_prometheus_going_away_gives_error_samples(
    prometheus: Callable[..., Prometheus],
) -> None:
    server = prometheus(["self"])
    queries = {"up": "up", "scrapes": "count(up)"}

    async def scenario() -> tuple[list[Sample], list[Sample]]:
        async with httpx.AsyncClient() as client:
            source = PrometheusSource(client, server.url, queries, timeout=2)
            before = await source.collect()
            server.stop()
            return before, await source.collect()

    before, after = asyncio.run(scenario())
    assert one(before, "up").value == 1.0 and one(before, "scrapes").value == 1.0
    assert {s.metric for s in after} == {"up", "scrapes"}
    for sample in after:
        assert sample.value is None, sample
        assert sample.error is not None and "Prometheus unreachable" in sample.error


# --- host stats -------------------------------------------------------------------------------


def test_host_stats_of_a_local_host_are_in_sane_ranges(tmp_path: Path) -> None:
    source = HostStatsSource([LocalHost("web-1", tmp_path)])

    async def timed() -> tuple[list[Sample], float]:
        started = time.perf_counter()
        samples = await source.collect()
        return samples, time.perf_counter() - started

    first, first_took = asyncio.run(timed())
    # Two busy loops keep both cores near 100 % until the next interval's reading.
    burners = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2)]
    try:
        time.sleep(1.0)
        loaded, loaded_took = asyncio.run(timed())
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    for samples in (first, loaded):
        assert {s.metric for s in samples} == {"cpu_percent", "memory_percent", "load1"}
        assert all(s.host == "web-1" and s.source == "host" and s.ok for s in samples), samples
        assert 0 <= one(samples, "cpu_percent").value <= 100  # type: ignore[operator]
        assert 0 < one(samples, "memory_percent").value < 100  # type: ignore[operator]
        assert one(samples, "load1").value >= 0  # type: ignore[operator]
    # The first interval reads /proc/stat twice, 0.5 s apart; later ones compare with the
    # reading the previous interval kept, so they cost one quick command and see the burners.
    assert first_took >= 0.5 and loaded_took < 0.5, (first_took, loaded_took)
    assert one(loaded, "cpu_percent").value > 80  # type: ignore[operator]


def ssh_host(fleet: Fleet, name: str) -> tuple[SshHost, subprocess.Popen[bytes] | None]:
    server = fleet.add(name, "127.0.0.2")
    config = HostConfig.model_validate(
        {
            "name": name,
            "address": server.address,
            "port": server.port,
            "user": TEST_USER,
            "root": str(server.root),
            "key_file": str(fleet.client_key),
        }
    )
    settings = SshSettings.model_validate(
        {"known_hosts": str(fleet.known_hosts), "agent": False, "connect_timeout": "2s"}
    )
    return SshHost(config, settings, fleet.base), server.process


def test_hosts_that_cannot_be_read_give_error_samples_the_others_still_count(
    fleet: Fleet, tmp_path: Path
) -> None:
    reachable, _ = ssh_host(fleet, "web-1")
    gone, gone_server = ssh_host(fleet, "web-2")
    stop_sshd(gone_server)  # sshd is down: the connection is refused
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("a host's root that is a file: no command can start there")
    hosts: list[Host] = [reachable, gone, LocalHost("web-3", not_a_folder / "root")]
    source = HostStatsSource(hosts, timeout=5)

    async def scenario() -> list[Sample]:
        try:
            return await source.collect()
        finally:
            for host in hosts:
                await host.close()

    samples = asyncio.run(scenario())
    assert all(s.ok for s in samples if s.host == "web-1"), samples
    assert len([s for s in samples if s.host == "web-1"]) == 3
    for name in ("web-2", "web-3"):
        failed = [s for s in samples if s.host == name]
        assert {s.metric for s in failed} == {"cpu_percent", "memory_percent", "load1"}
        assert all(s.value is None and s.error for s in failed), failed
