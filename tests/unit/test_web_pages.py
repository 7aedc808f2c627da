"""The dashboard in process: its pages and event stream over a real SQLite store written
through the Store API, with hand-picked records (hostile text included)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from rollout.config import Runbook, load_runbook
from rollout.model import Kind, Outcome, StepStatus, utcnow
from rollout.store import Store, open_store
from rollout.web import bind, create_app
from rollout.web.live import message
from rollout.web.serve import is_loopback
from tests.fixtures.sandbox import make_sandbox

HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def runbook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Runbook:
    box = make_sandbox(tmp_path / "box", hosts=1, tags=[])
    for name, value in box.env.items():
        monkeypatch.setenv(name, value)
    return load_runbook(box.config)


@pytest.fixture
def store(runbook: Runbook) -> Iterator[Store]:
    with open_store(runbook.store_url, redactor=runbook.redactor) as opened:
        yield opened


@pytest.fixture
def client(runbook: Runbook) -> Iterator[httpx.Client]:
    with _served(runbook) as http:
        yield http


@contextlib.contextmanager
def _served(runbook: Runbook) -> Iterator[httpx.Client]:
    """The app served by uvicorn in a thread of this process, on a loopback port."""
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    config = uvicorn.Config(create_app(runbook, poll=0.05), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http:
            end = time.monotonic() + 30
            while not server.started and time.monotonic() < end:
                time.sleep(0.02)
            assert server.started, "uvicorn did not start"
            yield http
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _deployment(store: Store, tag: str, actor: str = "ana") -> int:
    return store.create_deployment(
        app="demo-app", env="production", kind=Kind.DEPLOY, tag=tag, actor=actor
    )


def test_the_overview_escapes_what_the_records_hold(store: Store, client: httpx.Client) -> None:
    done = _deployment(store, "v1", actor=HOSTILE)
    store.finish_deployment(done, status=Outcome.SUCCEEDED)
    store.acquire_lock("production", holder="bo", machine="m", pid=7, tag="v2", message=HOSTILE)
    page = client.get("/").text
    assert HOSTILE not in page
    assert page.count("&lt;img src=x onerror=alert(1)&gt;") == 2  # the actor and the lock note
    assert f'v1 (<a href="/deployments/{done}">#{done}</a>)' in page
    assert "held by bo (pid 7) since " in page and " for v2: &lt;img" in page


def test_the_status_page_says_maintenance_then_the_worst_open_incident(
    store: Store, client: httpx.Client
) -> None:
    assert client.get("/status.json").json()["status"] == "operational"
    running = _deployment(store, "v2")
    assert client.get("/status.json").json()["maintenance"]["reason"] == "deploying v2"
    now = utcnow()
    for level in (1, 3):
        store.open_incident(
            env="production", deployment_id=running, level=level, title=f"level {level}",
            symptoms=f"symptoms {level}", impact_start=None, detected_at=now, action=None,
        )  # fmt: skip
    data = client.get("/status.json").json()
    assert (data["status"], data["incident"]["level"]) == ("outage", 3)
    assert "Service outage" in client.get("/status").text


def test_the_event_stream_follows_a_running_deployment_until_it_ends(
    store: Store, client: httpx.Client
) -> None:
    running = _deployment(store, "v3")
    first = store.start_step(running, phase="deploy", name="install", host="web-1")
    events: list[tuple[str, dict[str, object]]] = []

    def later() -> None:  # while the stream is open: the step ends, a step starts, the run ends
        store.finish_step(first, status=StepStatus.SUCCEEDED, output="ok")
        second = store.start_step(running, phase="deploy", name="health", host="web-1")
        store.finish_step(second, status=StepStatus.FAILED, output="not healthy")
        store.finish_deployment(running, status=Outcome.ABORTED, finished_at=utcnow())

    with client.stream("GET", f"/deployments/{running}/events") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        kind = ""
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((kind, json.loads(line.removeprefix("data: "))))
                if len(events) == 1:
                    threading.Thread(target=later).start()
    steps = [(e["name"], e["status"]) for k, e in events if k == "step"]
    # Each change once, in order (health may be read running first, or already failed).
    assert steps[:2] == [("install", "running"), ("install", "succeeded")]
    assert steps[-1] == ("health", "failed") and len(steps) in (3, 4)
    assert events[-1][0] == "finished" and events[-1][1]["status"] == "aborted"


def test_a_running_deployment_page_loads_the_live_script_and_a_finished_one_does_not(
    store: Store, client: httpx.Client
) -> None:
    running = _deployment(store, "v4")
    page = client.get(f"/deployments/{running}").text
    assert '<script src="/static/live.js" defer></script>' in page
    assert f'data-events="/deployments/{running}/events"' in page
    # The page's own policy lets the script call back home, and nothing else.
    assert "script-src 'self'; connect-src 'self'" in page
    store.finish_deployment(running, status=Outcome.SUCCEEDED, finished_at=utcnow())
    page = client.get(f"/deployments/{running}").text
    assert "<script" not in page and 'id="live"' not in page


def test_an_event_is_one_data_line_whatever_the_text_holds() -> None:
    text = message("step", {"name": "a\nb\r\nevent: finished\n\ndata: x"})
    assert text.count("\n") == 3 and text.endswith("\n\n")
    assert json.loads(text.split("data: ", 1)[1])["name"] == "a\nb\r\nevent: finished\n\ndata: x"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("10.0.0.11", False), ("dashboard.example", False)],
)  # fmt: skip
def test_only_loopback_hosts_are_served_without_public(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_the_api_limits_and_filters_like_history(store: Store, client: httpx.Client) -> None:
    ids = [_deployment(store, f"v{i}") for i in range(3)]
    listed = client.get("/api/deployments", params={"limit": 2}).json()
    assert [d["id"] for d in listed] == ids[::-1][:2]
    assert client.get("/api/deployments", params={"env": "staging"}).json() == []


def test_records_that_cannot_be_read_are_a_503_page_with_the_headers(
    runbook: Runbook, store: Store, client: httpx.Client
) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE follow_ups")  # incidents' neighbours keep their keys
        conn.exec_driver_sql("DROP TABLE incidents")
    answer = client.get("/incidents")
    assert answer.status_code == 503
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert "<h1>error 503</h1>" in answer.text
    assert client.get("/api/deployments").status_code == 200  # the rest still reads


def test_a_kpi_target_the_kpi_commands_refuse_is_a_400_page_saying_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = make_sandbox(tmp_path / "box", hosts=1, tags=[])
    box.config.write_text(
        box.config.read_text() + "kpi: {targets: {deployment_frequency: sometimes}}\n"
    )
    monkeypatch.setenv("APP_TOKEN", box.env["APP_TOKEN"])
    with _served(load_runbook(box.config)) as http:
        answer = http.get("/kpi")
    assert answer.status_code == 400
    assert "rollout.yml: kpi.targets.deployment_frequency &#x27;sometimes&#x27;" in answer.text


def test_a_request_naming_another_host_is_refused(client: httpx.Client) -> None:
    """DNS rebinding: a page on another site that points its name at 127.0.0.1 sends that name
    in Host; a loopback dashboard answers only to its own names."""
    port = client.base_url.port
    assert client.get("/api/deployments").status_code == 200
    assert client.get("/", headers={"Host": f"localhost:{port}"}).status_code == 200
    refused = client.get("/api/deployments", headers={"Host": f"attacker.example:{port}"})
    assert refused.status_code == 400 and "unknown Host header" in refused.text
    assert refused.headers["Content-Security-Policy"].startswith("default-src 'none'")


def test_a_bad_query_is_a_400_in_the_dashboard_s_own_error_shape(client: httpx.Client) -> None:
    bad = client.get("/api/deployments", params={"limit": "many"})
    assert bad.status_code == 400
    assert "limit" in bad.json()["error"] and bad.json()["hint"]
