"""`rollout web`, served by the real CLI in a child process over a store written by real deploys
in the sandbox: every page answers from the records, escapes what they hold, carries its
security headers and never shows a secret; in Chromium, the overview links to the reports and
a running deployment's page follows it live, without a reload, until it ends."""

from __future__ import annotations

import html
import json
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.fixtures.sandbox import TAGS, Sandbox, build_artifact, free_port, make_sandbox

V1, V2, V3 = TAGS
HOSTILE = "<script>alert(1)</script>"
ROUTES = ("/", "/incidents", "/kpi", "/status", "/status.json", "/api/deployments")
DEADLINE = 60.0  # seconds any awaited condition gets; the machine runs other suites too


@dataclass(frozen=True)
class Dashboard:
    box: Sandbox
    url: str
    server: subprocess.Popen[str]

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.url + path, timeout=30)

    def history(self) -> list[dict[str, Any]]:
        result = self.box.rollout("history", "--json", "--limit", "1000")
        assert result.returncode == 0, result.stderr
        records: list[dict[str, Any]] = json.loads(result.stdout)
        return records


def wait_for(condition: Callable[[], Any], what: str, deadline: float = DEADLINE) -> Any:
    """Poll ``condition`` until it returns something true; fail saying ``what`` otherwise."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"waited {deadline:g} s for {what}")


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _ok(box: Sandbox, *args: str) -> None:
    result = box.rollout(*args)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dashboard]:
    """Two deployments, an incident and a rollback whose reason holds hostile text and the
    runbook's secret; then the dashboard, served by `rollout web` as a user starts it."""
    box = make_sandbox(tmp_path_factory.mktemp("web") / "box", hosts=1, health_timeout="60s")
    build_artifact(box.root / "dist", V3, healthy=False)  # the slow deploy of the live test
    secret = box.env["APP_TOKEN"]
    server = None
    try:
        _ok(box, "deploy", "production", V1)
        _ok(box, "deploy", "production", V2)
        _ok(box, "declare", "production", "--title", f"checkout {HOSTILE}", "--level", "2")
        _ok(box, "rollback", "production", "--reason", f"{HOSTILE} token {secret}")
        _ok(box, "declare", "production", "--title", f"search slow {HOSTILE}", "--level", "1")
        port = free_port()
        server = box.popen("web", "--port", str(port))
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: server.poll() is not None or _answers(url + "/"), "the dashboard")
        assert server.poll() is None, server.communicate()
        yield Dashboard(box, url, server)
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        box.stop_apps()


def test_the_overview_shows_what_runs_the_lock_incidents_and_the_latest_deployments(
    dashboard: Dashboard,
) -> None:
    records = dashboard.history()
    rollback = records[0]
    assert (rollback["kind"], rollback["tag"], rollback["status"]) == ("rollback", V1, "succeeded")
    page = dashboard.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    runs = re.search(r"<td[^>]*>production</td><td>(.*?)</td><td[^>]*>(.*?)</td>", text)
    assert runs is not None, text
    assert runs[1] == f'{V1} (<a href="/deployments/{rollback["id"]}">#{rollback["id"]}</a>)'
    assert runs[2] == "free"
    for r in records:
        assert f'<a href="/deployments/{r["id"]}">#{r["id"]}</a>' in text
        assert f'<span class="{r["status"]}">{r["status"]}</span>' in text
    assert text.count(V2) == 1 and "rollback" in text
    # Open, not resolved: both declared incidents (the rollback mitigated the first).
    assert text.count('<a href="/incidents">incident #') == 2


def test_a_deployment_page_is_its_report(dashboard: Dashboard) -> None:
    first = dashboard.history()[-1]
    page = dashboard.get(f"/deployments/{first['id']}")
    assert page.status_code == 200
    written = dashboard.box.rollout(
        "report", str(first["id"]), "--out", str(dashboard.box.root / "one.html"),
        "--markdown", str(dashboard.box.root / "one.md"),
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    report = (dashboard.box.root / "one.html").read_text()
    # The same report `rollout report ID` writes, under the dashboard's navigation; finished,
    # so without the live view and its script.
    title = re.search(r"<h1>(.*?)</h1>", report)
    assert (
        title is not None and title[1] == f"Deployment #{first['id']}: demo-app {V1} to production"
    )
    assert f"<h1>{title[1]}</h1>" in page.text
    assert report.split("<h2>Outcome</h2>")[1] in page.text
    assert '<nav><a href="/">overview</a>' in page.text
    assert 'id="live"' not in page.text and "<script" not in page.text


def test_incidents_kpi_and_status_pages_read_the_records(dashboard: Dashboard) -> None:
    incidents = dashboard.get("/incidents").text
    assert incidents.count("<tr><td") == 2
    assert "level 1" in incidents and "level 2" in incidents
    assert '<span class="open">open</span>' in incidents
    assert '<span class="mitigated">mitigated</span>' in incidents
    v2 = next(r for r in dashboard.history() if r["tag"] == V2)
    assert f'<a href="/deployments/{v2["id"]}">' in incidents  # the first is V2's

    kpi = dashboard.get("/kpi").text
    assert "<h1>KPIs of demo-app / production</h1>" in kpi
    assert "deployment frequency" in kpi and kpi.count("<figure>") == 9

    status = dashboard.get("/status").text
    assert "<h1>demo-app (production)</h1>" in status and "Degraded performance" in status
    data = dashboard.get("/status.json").json()
    assert (data["env"], data["status"]) == ("production", "degraded")
    assert data["incident"]["level"] == 1
    assert [i["status"] for i in data["history"]] == ["open", "mitigated"]


def test_the_api_serves_what_history_json_prints(dashboard: Dashboard) -> None:
    listed = dashboard.get("/api/deployments?limit=1000")
    assert listed.headers["content-type"] == "application/json"
    records = dashboard.history()
    assert listed.json() == records
    assert dashboard.get("/api/deployments").json() == records[:20]
    one = dashboard.get(f"/api/deployments/{records[1]['id']}")
    assert one.json() == records[1]


def test_an_unknown_deployment_is_a_404_saying_how_to_list_them(dashboard: Dashboard) -> None:
    huge = "9" * 40
    for path in ("/deployments/999", "/deployments/nine", f"/deployments/{huge}",
                 "/deployments/999/events"):  # fmt: skip
        page = dashboard.get(path)
        assert page.status_code == 404
        assert "text/html" in page.headers["content-type"]
        name = path.split("/")[2]
        assert f"no deployment with id {name} in the records" in page.text
        assert "`rollout history`" in page.text
    api = dashboard.get("/api/deployments/999")
    assert api.status_code == 404 and "rollout history" in api.json()["hint"]
    assert dashboard.get("/nowhere").status_code == 404


def _every_page(dashboard: Dashboard) -> dict[str, httpx.Response]:
    ids = [r["id"] for r in dashboard.history()]
    paths = [*ROUTES, "/static/live.js", "/deployments/999", "/api/deployments/999"]
    paths += [f"/deployments/{i}" for i in ids] + [f"/api/deployments/{i}" for i in ids]
    paths += [f"/deployments/{i}/events" for i in ids]  # finished: the stream says so and ends
    return {path: dashboard.get(path) for path in paths}


def test_every_answer_carries_the_security_headers(dashboard: Dashboard) -> None:
    for path, answer in _every_page(dashboard).items():
        csp = answer.headers.get("content-security-policy", "")
        policy = dict(d.partition(" ")[::2] for d in csp.split("; "))
        assert policy.get("default-src") == "'none'", (path, csp)
        assert policy.get("script-src") == "'self'", (path, csp)
        assert answer.headers.get("x-content-type-options") == "nosniff", path
        assert answer.headers.get("referrer-policy") == "no-referrer", path


def test_hostile_text_is_escaped_and_the_secret_shown_nowhere(dashboard: Dashboard) -> None:
    secret = dashboard.box.env["APP_TOKEN"]
    pages = _every_page(dashboard)
    for path, answer in pages.items():
        assert secret not in answer.text, path
        if "json" not in answer.headers["content-type"] and "events" not in path:
            assert HOSTILE not in answer.text, path
    escaped = html.escape(HOSTILE)
    rollback = dashboard.history()[0]
    report = pages[f"/deployments/{rollback['id']}"].text
    assert f"{escaped} token [secret:APP_TOKEN]" in report
    assert f"checkout {escaped}" in pages["/incidents"].text
    assert f"search slow {escaped}" in pages["/status"].text
    assert "[secret:APP_TOKEN]" in pages[f"/api/deployments/{rollback['id']}"].json()["reason"]


def test_a_host_beyond_loopback_needs_public_and_a_busy_port_is_one_line(
    dashboard: Dashboard,
) -> None:
    refused = dashboard.box.rollout("web", "--host", "0.0.0.0", timeout=30)
    assert refused.returncode == 2
    assert "--host 0.0.0.0: the dashboard has no login yet" in refused.stderr
    assert "--public" in refused.stderr
    port = dashboard.url.rsplit(":", 1)[1]
    busy = dashboard.box.rollout("web", "--port", port, timeout=30)
    assert busy.returncode == 3
    assert (
        busy.stderr
        == f"error: port {port} on 127.0.0.1 is already in use: choose another with --port\n"
    )


def _watch(tab: Page) -> dict[str, list[str]]:
    seen: dict[str, list[str]] = {"requests": [], "errors": []}
    tab.on("request", lambda r: seen["requests"].append(r.url))
    tab.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: seen["errors"].append(str(e)))
    return seen


def test_in_a_browser_the_overview_links_to_a_deployment_report(
    page: Page, dashboard: Dashboard
) -> None:
    seen = _watch(page)
    page.goto(dashboard.url + "/")
    first = dashboard.history()[-1]
    page.locator(f'a[href="/deployments/{first["id"]}"]').first.click()
    page.wait_for_url(f"{dashboard.url}/deployments/{first['id']}")
    expect(page.locator("h1")).to_have_text(
        f"Deployment #{first['id']}: demo-app {V1} to production"
    )
    expect(page.locator("section", has_text="Outcome").locator("dd").first).to_have_text(
        "succeeded"
    )
    assert page.locator("script").count() == 0
    assert seen["errors"] == []
    assert seen["requests"] and all(u.startswith(dashboard.url + "/") for u in seen["requests"])


def _rows(page: Page) -> dict[str, str]:
    """The live list: step id -> 'phase/name status'."""
    found: dict[str, str] = page.locator("#live-steps tr").evaluate_all(
        "rows => Object.fromEntries(rows.map(r => [r.dataset.step, "
        "r.cells[0].textContent + '/' + r.cells[1].textContent + ' ' + r.dataset.status]))"
    )
    return found


def test_a_running_deployment_is_followed_live_until_it_ends(
    page: Page, dashboard: Dashboard
) -> None:
    """Last in this file: it adds an aborted deployment to the records."""
    box = dashboard.box
    before = {r["id"] for r in dashboard.history()}
    slow = box.popen("deploy", "production", V3, "--message", HOSTILE)
    try:
        running = wait_for(
            lambda: [r for r in dashboard.get("/api/deployments").json() if r["id"] not in before],
            "the slow deploy's record",
        )[0]
        assert (running["tag"], running["status"]) == (V3, "running")
        seen = _watch(page)
        page.goto(f"{dashboard.url}/deployments/{running['id']}")
        expect(page.locator("#live-state")).to_contain_text("running")
        page.evaluate("window.notReloaded = true")
        # The deploy goes on while the page stays: the health wait appears, as running.
        wait_for(lambda: "deploy/health running" in _rows(page).values(), "the health step")
        shown = _rows(page)

        overview = dashboard.get("/").text
        assert "held by" in overview and f"for {V3}: {html.escape(HOSTILE)}" in overview
        assert HOSTILE not in overview
        assert dashboard.get("/status.json").json()["maintenance"]["reason"] == f"deploying {V3}"

        slow.send_signal(signal.SIGINT)  # Ctrl-C: the deploy is put back and ends aborted
        slow.communicate(timeout=DEADLINE)
        assert slow.returncode == 130
        expect(page.locator("#live-state")).to_contain_text(
            "finished: aborted", timeout=DEADLINE * 1000
        )
        assert page.evaluate("window.notReloaded") is True
        after = _rows(page)
        assert set(after) > set(shown)  # steps that came after the page was opened
        assert after[next(k for k, v in shown.items() if v == "deploy/health running")] != (
            "deploy/health running"
        )  # and the health step's row was updated in place when it ended
        records = dashboard.history()
        assert records[0]["status"] == "aborted"
        assert sorted(after, key=int) == [str(s["id"]) for s in _steps(dashboard, records[0]["id"])]
        assert seen["errors"] == []
        assert all(u.startswith(dashboard.url + "/") for u in seen["requests"]), seen["requests"]
        assert f"{dashboard.url}/static/live.js" in seen["requests"]
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.communicate()


def _steps(dashboard: Dashboard, deployment_id: int) -> list[dict[str, Any]]:
    """The deployment's steps, as the (now finished) event stream sends them."""
    stream = dashboard.get(f"/deployments/{deployment_id}/events").text
    found = [
        json.loads(block.split("data: ", 1)[1])
        for block in stream.split("\n\n")
        if block.startswith("event: step")
    ]
    assert stream.rstrip().split("\n\n")[-1].startswith("event: finished")
    return found


def test_the_dashboard_ends_cleanly_on_ctrl_c(dashboard: Dashboard) -> None:
    # A second server on the same records (the first keeps serving the other tests).
    port = free_port()
    server = dashboard.box.popen("web", "--port", str(port))
    try:
        wait_for(lambda: _answers(f"http://127.0.0.1:{port}/kpi"), "the second dashboard")
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=DEADLINE)
        assert server.returncode == 130, err
        assert out.startswith(f"dashboard of demo-app at http://127.0.0.1:{port}/")
        with socket.socket() as s:  # the port is free again
            s.bind(("127.0.0.1", port))
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()


def test_the_static_script_is_the_one_of_the_package(dashboard: Dashboard) -> None:
    served = dashboard.get("/static/live.js")
    assert served.headers["content-type"].split(";")[0] in (
        "text/javascript",
        "application/javascript",
    )
    source = Path(__file__).parents[2] / "src" / "rollout" / "web" / "static" / "live.js"
    assert served.text == source.read_text()
    assert "innerHTML" not in served.text  # records go in as text
