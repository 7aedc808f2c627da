"""The load check (V4) against real servers on loopback: the United Cars example app under
uvicorn (healthy, failing, slow) and small ``http.server`` threads for the edge cases."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rollout.checks import load
from rollout.errors import BadInput
from rollout.model import CheckStatus
from tests.fixtures.example_app import free_port, start_example_app, stop

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = ROOT / "examples" / "united-cars"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = start_example_app(tmp_path_factory.mktemp("app"))
    yield base
    stop(proc)


@pytest.fixture(scope="module")
def failing_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # /api/health is exempt from faults; /api/vehicles gets them.
    proc, base = start_example_app(tmp_path_factory.mktemp("failing"), faults={"error_rate": 1.0})
    yield base
    stop(proc)


@pytest.fixture(scope="module")
def slow_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = start_example_app(tmp_path_factory.mktemp("slow"), faults={"latency_ms": 80})
    yield base
    stop(proc)


Handler = Callable[[BaseHTTPRequestHandler], None]


@pytest.fixture
def serve() -> Iterator[Callable[[Handler], str]]:
    """Start a threaded http.server whose GET runs ``handler``; shut down at teardown."""
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(handler: Handler) -> str:
        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                handler(self)

            do_HEAD = do_GET
            do_POST = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def reply(status: int, body: bytes = b"ok", headers: dict[str, str] | None = None) -> Handler:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
            h.send_header(name, value)
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    return handle


def run(url: str, **kwargs: object) -> load.LoadReport:
    options: dict[str, object] = {"requests": 50, "concurrency": 5, "thresholds": []}
    options.update(kwargs)
    return asyncio.run(load.run(url, **options))  # type: ignore[arg-type]


def by_id(report: load.LoadReport) -> dict[str, tuple[CheckStatus, str, str]]:
    return {c.id: (c.status, c.value, c.evidence) for c in report.checks()}


# --- the example app -------------------------------------------------------------------------


def test_fast_server_passes_with_exact_counts(app: str) -> None:
    report = run(
        f"{app}/api/health", requests=200, concurrency=10, thresholds=["p(95)<2000", "rate<0.01"]
    )
    assert report.requests == 200 and report.ok == 200
    assert report.statuses == {200: 200}
    assert report.errors == {} and report.error_rate == 0.0
    assert report.latency is not None and report.latency.count == 200
    assert report.latency_ok is not None and report.latency_ok.count == 200
    assert 0 < report.latency.min <= report.latency.p50 <= report.latency.p95 <= report.latency.max
    assert report.rps > 0 and report.client == "asyncio"
    assert sum(n for _, n in report.histogram) == 200
    checks = by_id(report)
    assert set(checks) == {"load p(95)<2000", "load rate<0.01"}
    assert all(status is CheckStatus.PASS for status, _, _ in checks.values())
    assert "200 requests" in checks["load rate<0.01"][2]
    assert "200x200" in checks["load rate<0.01"][2]
    data = report.to_json()
    json.dumps(data)
    assert data["statuses"] == {"200": 200}
    assert report.lines()[0] == f"Load: GET {app}/api/health"


def test_failing_server_fails_rate_with_error_distribution(failing_app: str) -> None:
    report = run(f"{failing_app}/api/vehicles", requests=40, thresholds=["rate<0.01"])
    assert report.statuses == {500: 40}
    assert report.unexpected_status == 40 and report.error_rate == 1.0
    status, value, evidence = by_id(report)["load rate<0.01"]
    assert status is CheckStatus.FAIL
    assert value.startswith("rate=1.0000 (40/40)")
    assert "40 unexpected status" in evidence and "500x40" in evidence
    assert report.latency_ok is None and report.latency is not None  # responses, all failures


def test_slow_server_fails_p95(slow_app: str) -> None:
    report = run(f"{slow_app}/api/vehicles", requests=30, concurrency=10, thresholds=["p(95)<50"])
    assert report.ok == 30
    assert report.latency is not None and report.latency.p95 >= 80
    status, value, _ = by_id(report)["load p(95)<50"]
    assert status is CheckStatus.FAIL and value.startswith("p(95)=")


def test_httpx_path_counts_the_same(app: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # https (and proxied) URLs go through httpx; force it here to check both clients agree.
    monkeypatch.setattr(load, "_lean_path_applies", lambda parts: False)
    report = run(f"{app}/api/health", requests=60, concurrency=6, thresholds=["rate<0.01"])
    assert report.client == "httpx"
    assert report.statuses == {200: 60} and report.ok == 60
    assert by_id(report)["load rate<0.01"][0] is CheckStatus.PASS


# --- edge cases on http.server -------------------------------------------------------------


def test_below_20_samples_warns(serve: Callable[[Handler], str]) -> None:
    url = serve(reply(200))
    report = run(url, requests=10, thresholds=["p(95)<2000", "rate<0.01"])
    assert report.ok == 10
    for status, _, evidence in by_id(report).values():
        assert status is CheckStatus.WARN
        assert "insufficient samples" in evidence


def test_below_20_samples_a_breach_still_fails(serve: Callable[[Handler], str]) -> None:
    url = serve(reply(500))
    report = run(url, requests=5, thresholds=["rate<0.01"])
    status, _, evidence = by_id(report)["load rate<0.01"]
    assert status is CheckStatus.FAIL and "insufficient samples" in evidence


def test_no_thresholds_means_no_errors_allowed(serve: Callable[[Handler], str]) -> None:
    good, bad = serve(reply(200)), serve(reply(503))
    assert [(c.id, c.status) for c in run(good).checks()] == [("load rate==0", CheckStatus.PASS)]
    assert [(c.id, c.status) for c in run(bad).checks()] == [("load rate==0", CheckStatus.FAIL)]


def test_expected_status_and_redirects_not_followed(serve: Callable[[Handler], str]) -> None:
    url = serve(reply(302, b"", {"Location": "/elsewhere"}))
    assert run(url).statuses == {302: 50} and run(url).error_rate == 0.0
    strict = run(url, expected_status=range(200, 300))
    assert strict.error_rate == 1.0 and strict.unexpected_status == 50


def test_body_framings_are_read_whole(serve: Callable[[Handler], str]) -> None:
    big = b"x" * 200_000

    def chunked(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for part in (b"hello ", b"chunked ", big):
            h.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        h.wfile.write(b"0\r\nX-Trailer: 1\r\n\r\n")

    def until_close(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(big)
        h.close_connection = True

    for handler in (chunked, until_close, reply(200, big), reply(204, b"")):
        report = run(serve(handler), requests=40, concurrency=4, thresholds=["rate==0"])
        assert report.ok == 40 and report.errors == {}, report.errors
    head = run(serve(reply(200, big)), requests=30, method="HEAD", thresholds=["rate==0"])
    assert head.ok == 30 and head.method == "HEAD"


def test_timeout_is_a_transport_error(serve: Callable[[Handler], str]) -> None:
    def hang(h: BaseHTTPRequestHandler) -> None:
        time.sleep(0.5)
        reply(200)(h)

    report = run(serve(hang), requests=4, concurrency=4, timeout=0.1, thresholds=["rate<0.01"])
    assert report.errors == {"TimeoutError": 4} and report.transport_errors == 4


def test_unreachable_url_every_request_errors() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/health"  # nothing listens there
    report = run(url, requests=40, thresholds=["rate<0.01", "p(95)<2000"])
    assert report.transport_errors == 40 and report.statuses == {}
    assert report.errors == {"ConnectionRefusedError": 40}
    checks = by_id(report)
    status, value, evidence = checks["load rate<0.01"]
    assert status is CheckStatus.FAIL and "ConnectionRefusedError" in evidence
    assert value.startswith("rate=1.0000")
    # No response at all is not a fast response: the latency threshold fails closed.
    assert checks["load p(95)<2000"][:2] == (CheckStatus.FAIL, "no responses")


def test_bad_input_before_any_request() -> None:
    with pytest.raises(BadInput, match=r"'p\(95\)<<2000'"):
        run("http://127.0.0.1:1/", thresholds=["p(95)<<2000"])
    with pytest.raises(BadInput):
        run("ftp://127.0.0.1/")
    with pytest.raises(BadInput):
        run("http://127.0.0.1:1/", requests=0)


# --- the CLI ---------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", "grade", "load", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_cli_json_passes(app: str) -> None:
    result = cli(f"{app}/api/health", "-n", "50", "-c", "5", "--threshold", "p(95)<2000", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["requests"] == 50 and data["statuses"] == {"200": 50}
    assert [c["status"] for c in data["checks"]] == ["pass"]


def test_cli_exits_1_on_failing_server(failing_app: str) -> None:
    result = cli(f"{failing_app}/api/vehicles", "-n", "50", "-c", "5", "--threshold", "rate<0.01")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAIL rate<0.01" in result.stdout


def test_cli_bad_threshold_exits_2(app: str) -> None:
    result = cli(f"{app}/api/health", "--threshold", "p95<2000")
    assert result.returncode == 2
    assert "p95<2000" in result.stdout + result.stderr
