"""Follow-ups on a real store: planned by a real deploy's finalize step, done when due.

The deploys run in the sandbox (local hosts, the real CLI). The due-time runs use records made
through the Store API, with the clock given: release v1 answers in about 100 ms; v2 either as
fast or three times slower; both are probed for the hour after their switch.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rollout.config import Runbook, load_runbook
from rollout.followups import announce, run_due, schedule
from rollout.model import Kind, Outcome, StepStatus
from rollout.store import Store, open_store
from tests.fixtures.sandbox import TAGS, build_artifact, make_sandbox

HOUR, DAY, WEEK, MINUTE = (
    timedelta(hours=1), timedelta(days=1), timedelta(weeks=1), timedelta(minutes=1),
)  # fmt: skip
T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)

FOLLOWUPS = """\
people:
  roles: {deployer: platform, business: product-owner}
  on_call: [{name: primary, notify: 'json://localhost/'}]
followups:
  1h: [metrics-review, support-channels, error-tracking, team-update]
  24h: [performance-analysis, usage-patterns, cost-check, docs-update]
  1w: [success-metrics, user-satisfaction, runbook-update, {retrospective: engineering-manager}]
"""
EXPECTED = [
    ("metrics-review", HOUR, "rollout"),
    ("support-channels", HOUR, "primary"),
    ("error-tracking", HOUR, "rollout"),
    ("team-update", HOUR, "platform"),
    ("performance-analysis", DAY, "rollout"),
    ("usage-patterns", DAY, "product-owner"),
    ("cost-check", DAY, "platform"),
    ("docs-update", DAY, "platform"),
    ("success-metrics", WEEK, "rollout"),
    ("user-satisfaction", WEEK, "product-owner"),
    ("runbook-update", WEEK, "platform"),
    ("retrospective", WEEK, "engineering-manager"),
]


# --- planned by a real deploy -------------------------------------------------------------------


def test_a_successful_deploy_plans_the_runbooks_follow_ups_and_a_failed_one_none(
    tmp_path: Path,
) -> None:
    box = make_sandbox(tmp_path, hosts=1, health_timeout="2s")
    box.config.write_text(box.config.read_text() + FOLLOWUPS)
    build_artifact(tmp_path / "dist", TAGS[2], healthy=False)
    try:
        done = box.rollout("deploy", "production", TAGS[0], "--no-monitor")
        assert done.returncode == 0, done.stdout + done.stderr
        broken = box.rollout("deploy", "production", TAGS[2], "--no-monitor")
        assert broken.returncode == 1, broken.stdout + broken.stderr
    finally:
        box.stop_apps()

    runbook = load_runbook(box.config, box.env)
    with open_store(runbook.store_url) as store:
        deployed, failed = sorted(store.deployments(env="production"), key=lambda d: d.id)
        (step,) = [s for s in store.steps(deployed.id) if s.name == "followups"]
        records = store.follow_ups(deployment_id=deployed.id)
        assert store.follow_ups(deployment_id=failed.id) == []
    assert (deployed.status, failed.status) == (Outcome.SUCCEEDED, Outcome.ROLLED_BACK)
    assert (step.phase, step.status) == ("finalize", StepStatus.SUCCEEDED)
    assert step.output.startswith("12 follow-ups planned (4 at +1h, 4 at +1d, 4 at +1w)")
    # due from the deployment's end: its finalize step, just before the record says it finished
    finished = records[0].due_at - HOUR
    assert step.started_at <= finished <= (deployed.finished_at or finished)
    assert [(r.activity, r.due_at - finished, r.owner) for r in records] == EXPECTED
    assert {r.status for r in records} == {"pending"}

    listed = json.loads(box.rollout("followups", "production", "--json").stdout)
    assert [(f["activity"], f["kind"], f["owner"]) for f in listed[:4]] == [
        ("metrics-review", "automatic", "rollout"),
        ("support-channels", "manual", "primary"),
        ("error-tracking", "automatic", "rollout"),
        ("team-update", "manual", "platform"),
    ]
    assert json.loads(box.rollout("followups", "--due", "--json").stdout) == []  # none due yet


def test_the_cli_runs_the_automatic_ones_early_and_people_close_the_rest(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1)
    box.config.write_text(box.config.read_text() + FOLLOWUPS)
    try:
        assert box.rollout("deploy", "production", TAGS[0], "--no-monitor").returncode == 0
    finally:
        box.stop_apps()

    ran = box.rollout("followups", "run", "production", "--all", "--json")

    # unwatched (--no-monitor): nothing to compare; one deployment in the records' first week
    # meets weekly, and nothing else has failed: nothing needs a look
    assert ran.returncode == 0, ran.stdout + ran.stderr
    found = {d["activity"]: d["verdict"] for d in json.loads(ran.stdout)}
    assert found == {
        "metrics-review": "inconclusive",
        "error-tracking": "inconclusive",
        "performance-analysis": "inconclusive",
        "success-metrics": "ok",
    }
    listed = json.loads(box.rollout("followups", "--json").stdout)
    assert {f["kind"] for f in listed} == {"manual"}  # the automatic ones are done
    retro = next(f for f in listed if f["activity"] == "retrospective")

    closed = box.rollout("followups", "done", str(retro["id"]), "--note", "held; 2 actions")

    assert closed.returncode == 0, closed.stderr
    assert "retrospective" in closed.stdout and "done" in closed.stdout
    every = json.loads(box.rollout("followups", "--done", "--json").stdout)
    retro = next(f for f in every if f["activity"] == "retrospective")
    assert retro["status"] == "done" and retro["result"]["note"] == "held; 2 actions"
    snapshot = next(f for f in every if f["activity"] == "success-metrics")
    assert snapshot["result"]["report"]["figures"]["deployment_frequency"]["value"] == 1.0
    assert box.rollout("followups", "done", "999", "--note", "x").returncode == 2
    assert box.rollout("followups", "staging").returncode == 2  # no such environment


# --- done when due, on hand-made records --------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = (
        f"sqlite:///{tmp_path}/rollout.db"
        if request.param == "sqlite"
        else request.getfixturevalue("fresh_postgres_url")
    )
    with open_store(url) as opened:
        yield opened


@pytest.fixture
def runbook(tmp_path: Path) -> Runbook:
    box = make_sandbox(tmp_path / "box", hosts=1)
    box.config.write_text(box.config.read_text() + FOLLOWUPS)
    return load_runbook(box.config, box.env)


def deployment(store: Store, tag: str, started: datetime) -> tuple[int, datetime]:
    """A deployment switched 1 minute after it started and finished 10 minutes after."""
    made = store.create_deployment(
        app="demo-app", env="production", kind=Kind.DEPLOY, tag=tag, actor="alice",
        started_at=started,
    )  # fmt: skip
    step = store.start_step(made, phase="deploy", name="activate", host="web-1", started_at=started)
    store.finish_step(step, status=StepStatus.SUCCEEDED, finished_at=started + MINUTE)
    store.finish_deployment(made, status=Outcome.SUCCEEDED, finished_at=started + 10 * MINUTE)
    return made, started + 10 * MINUTE


def probe(store: Store, made: int, since: datetime, median: float, seed: int) -> None:
    """One request to /api/vehicles every 30 s for an hour, latencies within 20 % of median."""
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    for i in range(120):
        at = since + timedelta(seconds=30 * i)
        labels = {"path": "/api/vehicles", "status": "200"}
        rows += [
            {"metric": "latency_seconds", "host": "web-1", "source": "probe", "at": at,
             "value": median * rng.uniform(0.8, 1.2), "ok": True, "labels": labels},
            {"metric": "http_error", "host": "web-1", "source": "probe", "at": at,
             "value": 0.0, "ok": True, "labels": labels},
        ]  # fmt: skip
    store.add_samples("production", made, rows)


@pytest.mark.parametrize(("after", "verdict"), [(0.300, "regressed"), (0.100, "ok")])
def test_followups_run_does_only_the_automatic_ones_due_and_records_the_verdict(
    store: Store, runbook: Runbook, after: float, verdict: str
) -> None:
    v1, _ = deployment(store, "v1", T0)
    probe(store, v1, T0 + MINUTE, 0.100, seed=1)
    v2, finished = deployment(store, "v2", T0 + 2 * HOUR)
    probe(store, v2, T0 + 2 * HOUR + MINUTE, after, seed=2)
    schedule(runbook, store, v2, finished)
    an_hour_on = finished + HOUR + MINUTE

    done = run_due(runbook, store, now=an_hour_on)

    assert [d.record.activity for d in done] == ["metrics-review", "error-tracking"]
    review, errors = (d.finding for d in done)
    assert review is not None and errors is not None
    assert review.verdict == verdict
    assert review.details["before"]["requests"] == review.details["after"]["requests"] == 120
    assert review.details["after"]["p95_s"] == pytest.approx(1.15 * after, rel=0.06)
    assert errors.verdict == "ok" and errors.summary.startswith("error rate 0.00 % of 120")
    records = {r.activity: r for r in store.follow_ups(deployment_id=v2)}
    for name in ("metrics-review", "error-tracking"):
        assert (records[name].status, records[name].done_at) == ("done", an_hour_on)
    kept = json.loads(records["metrics-review"].result or "{}")
    assert (kept["action"], kept["verdict"]) == ("performance", verdict)
    assert kept["latency"]["classification"] == ("high" if verdict == "regressed" else "pass")
    still = {n for n, r in records.items() if r.status == "pending"}
    assert still == {name for name, _, _ in EXPECTED} - {"metrics-review", "error-tracking"}
    assert run_due(runbook, store, now=an_hour_on) == []  # done once


def test_a_week_on_the_rest_is_done_and_the_kpi_report_kept(store: Store, runbook: Runbook) -> None:
    v1, finished = deployment(store, "v1", T0)
    probe(store, v1, T0 + MINUTE, 0.100, seed=1)
    schedule(runbook, store, v1, finished)
    assert len(run_due(runbook, store, now=finished + HOUR)) == 2  # due exactly now: done

    done = run_due(runbook, store, now=finished + WEEK + DAY)

    assert [d.record.activity for d in done] == ["performance-analysis", "success-metrics"]
    analysis, snapshot = (d.finding for d in done)
    assert analysis is not None and analysis.verdict == "inconclusive"  # no earlier release
    assert snapshot is not None and snapshot.verdict == "missed"  # 1 deployment in 4 weeks
    (record,) = store.follow_ups(deployment_id=v1, status="done", due_by=finished + WEEK)[-1:]
    report = json.loads(record.result or "{}")["report"]
    # as of when it was due, not when it ran: four weeks up to a week after the deployment
    assert report["until"] == (finished + WEEK).isoformat(timespec="seconds")
    assert report["facts"]["delivery"]["deployments"] == 1
    assert report["figures"]["availability"]["value"] == 100.0


@pytest.fixture
def deployments_channel() -> Iterator[tuple[int, list[dict[str, str]]]]:
    """A local HTTP receiver for apprise's json:// posts: its port and what it was sent."""
    posts: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], posts
    server.shutdown()
    server.server_close()


def test_deployments_is_told_what_the_follow_ups_found(
    tmp_path: Path, deployments_channel: tuple[int, list[dict[str, str]]]
) -> None:
    port, posts = deployments_channel
    box = make_sandbox(tmp_path, hosts=1)
    box.config.write_text(
        box.config.read_text()
        + FOLLOWUPS
        + f"notify: {{deployments: ['json://127.0.0.1:{port}/']}}\n"
    )
    runbook = load_runbook(box.config, box.env)
    with open_store(runbook.store_url) as store:
        v1, _ = deployment(store, "v1", T0)
        probe(store, v1, T0 + MINUTE, 0.100, seed=1)
        v2, finished = deployment(store, "v2", T0 + 2 * HOUR)
        probe(store, v2, T0 + 2 * HOUR + MINUTE, 0.300, seed=2)
        schedule(runbook, store, v2, finished)
        done = run_due(runbook, store, now=finished + HOUR)

    failures = asyncio.run(announce(runbook, done))

    assert failures == []
    (post,) = posts
    assert post["title"] == "demo-app: 2 follow-ups done"
    assert post["type"] == "warning"  # a regression needs a look
    assert "metrics-review (production v2): regressed: p95 0.11" in post["message"]
    assert "error-tracking (production v2): ok: error rate 0.00 %" in post["message"]
