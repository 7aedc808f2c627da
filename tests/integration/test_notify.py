"""Notifications and the status page, through the real CLI, to a real local HTTP receiver that
apprise posts to with its ``json://`` scheme."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path

import pytest

from rollout.engine.events import Note, PhaseFinished, RunFinished, RunStarted
from rollout.model import Outcome, Phase, StepStatus
from rollout.notify import Channel, Message, Notifier, NotifySink, StatusBoard, describe_url
from rollout.redact import Redactor
from tests.fixtures.receiver import Receiver
from tests.fixtures.sandbox import TAGS, Sandbox, build_artifact, free_port, make_sandbox

V1, V2, V3 = TAGS
SECRET = "hunter2-n0t1fy-s3cret"


def notified_sandbox(root: Path, port: int, *, paging_port: int | None = None) -> Sandbox:
    """The sandbox with #deployments, #incidents (a URL with a secret), paging and a status page."""
    box = make_sandbox(root, hosts=2)
    build_artifact(root / "dist", V3, version="v0-wrong")  # healthy, but fails verification
    page = paging_port or port
    with box.config.open("a") as f:
        f.write(
            "notify:\n"
            f"  deployments: ['json://127.0.0.1:{port}/deployments']\n"
            f"  incidents: ['json://ops:${{NOTIFY_SECRET}}@127.0.0.1:{port}/incidents']\n"
            "  status_page: {dir: public/status, components: [web, api]}\n"
            "people:\n"
            f"  on_call: [{{name: primary, notify: 'json://127.0.0.1:{page}/paging'}}]\n"
        )
    box.env["NOTIFY_SECRET"] = SECRET
    return box


def status(box: Sandbox) -> dict[str, object]:
    data: dict[str, object] = json.loads((box.root / "public/status/status.json").read_text())
    return data


def index_of(titles: list[str], part: str, start: int = 0) -> int:
    for number, title in enumerate(titles[start:], start):
        if part in title:
            return number
    raise AssertionError(f"no title with {part!r} after {start} in {titles}")


def test_a_rolled_back_deploy_tells_people_in_order_and_updates_the_status_page(
    tmp_path: Path, receiver: Receiver
) -> None:
    box = notified_sandbox(tmp_path, receiver.port)
    try:
        assert box.rollout("deploy", "production", V2).returncode == 0
        assert status(box)["status"] == "operational"
        receiver.posts.clear()
        result = box.rollout("deploy", "production", V3)
        assert result.returncode == 1, result.stdout + result.stderr
        assert [box.current(h) for h in box.hosts] == [V2, V2]
    finally:
        box.stop_apps()

    titles = receiver.titles("/deployments")
    started = index_of(titles, f"deploying {V3} to production")
    failed = index_of(titles, "verify failed", started)
    putting_back = index_of(titles, "putting back web-1, web-2", failed)
    back = index_of(titles, "back on the previous release", putting_back)
    index_of(titles, "rolled_back", back)
    # The failure and the rollback go to #incidents too, with the secret as basic auth.
    incidents = receiver.titles("/incidents")
    assert index_of(incidents, "verify failed") < index_of(incidents, "rolled_back")
    assert all(
        p.authorization.startswith("Basic ") for p in receiver.posts if p.path == "/incidents"
    )
    assert not any(p.path == "/paging" for p in receiver.posts)  # put back fine: nobody paged

    page = status(box)
    assert page["status"] == "operational" and page["maintenance"] is None
    assert [c["name"] for c in page["components"]] == ["web", "api"]  # type: ignore[attr-defined]
    seen = [u["status"] for u in reversed(page["updates"])]  # type: ignore[call-overload]
    assert seen[-4:] == ["operational", "maintenance", "degraded", "operational"]
    html = (box.root / "public/status/index.html").read_text()
    assert "<li>web" in html and "<li>api" in html and "All systems operational" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "<link" not in html


@pytest.mark.parametrize("answer", ["500", "not listening"])
def test_a_failing_receiver_fails_neither_deploy_nor_rollback_and_its_secret_stays_hidden(
    tmp_path: Path, receiver: Receiver, answer: str
) -> None:
    port = receiver.port if answer == "500" else free_port()
    receiver.status = 500
    box = notified_sandbox(tmp_path, port)
    try:
        first = box.rollout("deploy", "production", V1)
        assert first.returncode == 0, first.stdout + first.stderr
        second = box.rollout("deploy", "production", V3)
        assert second.returncode == 1  # verification failed, rolled back: not a crash
        assert [box.current(h) for h in box.hosts] == [V1, V1]
        third = box.rollout("deploy", "production", V2)
        assert third.returncode == 0, third.stdout + third.stderr
        back = box.rollout("rollback", "production", "--reason", "testing")
        assert back.returncode == 0, back.stdout + back.stderr
        assert [box.current(h) for h in box.hosts] == [V1, V1]
    finally:
        box.stop_apps()

    if answer == "500":  # it was tried, with the secret, and refused
        assert any(SECRET in _basic(p.authorization) for p in receiver.posts)
    outputs = [r.stdout + r.stderr for r in (first, second, third, back)]
    assert all("notification to deployments (json://127.0.0.1:" in out for out in outputs)
    for out in (second.stdout + second.stderr, back.stdout + back.stderr):
        assert f"notification to incidents (json://127.0.0.1:{port}) failed" in out
        assert ("error=500" if answer == "500" else "connection error") in out.lower()
    for out in outputs:
        assert SECRET not in out and "ops:" not in out
    for path in (tmp_path / ".rollout").rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
    events = "".join(p.read_text() for p in (tmp_path / ".rollout/events").glob("*.jsonl"))
    assert "notification to deployments" in events
    assert status(box)["status"] == "operational"


def _basic(authorization: str) -> str:
    import base64

    return base64.b64decode(authorization.removeprefix("Basic ")).decode()


def _sink(receiver: Receiver, tmp_path: Path, *, deadline: float = 30.0) -> NotifySink:
    base = f"json://127.0.0.1:{receiver.port}"
    notifier = Notifier(
        {
            Channel.DEPLOYMENTS: [f"{base}/deployments"],
            Channel.INCIDENTS: [f"{base}/incidents"],
            Channel.PAGING: [f"{base}/paging"],
        },
        Redactor({"NOTIFY_SECRET": SECRET}),
        timeout=2,
    )
    board = StatusBoard("demo-app", "production", tmp_path / "status", ["web"])
    board.redactor = notifier.redactor
    return NotifySink(notifier, board, app="demo-app", env="production", deadline=deadline)


def test_incidents_go_to_incidents_and_from_level_2_to_paging_escalations_to_paging(
    tmp_path: Path, receiver: Receiver
) -> None:
    async def run() -> None:
        sink = _sink(receiver, tmp_path)
        sink.emit(Note(message="incident #4 level 1 (minor): p95 2.1 s > 2 s", level="warn"))
        sink.emit(Note(message=f"incident #4 raised to level 2: error rate 3% >= 1% {SECRET}"))
        sink.emit(
            Note(
                message="incident #4 unacknowledged for 600 s: escalated to platform-lead"
                " (rollout ack 4)"
            )
        )
        sink.emit(Note(message="12:00:00 latency 0.2 (ok)"))  # a reading: nobody is told
        assert await sink.flush() == []

    asyncio.run(run())
    told = [(p.path, p.title.split(": ", 1)[1]) for p in receiver.posts]
    assert told[0] == ("/incidents", "incident #4 level 1")
    # One message goes to its channels at once: their order between them is not fixed.
    assert sorted(told[1:3]) == [
        ("/incidents", "incident #4 level 2"),
        ("/paging", "incident #4 level 2"),
    ]
    assert told[3:] == [("/paging", "incident #4 escalated to platform-lead")]
    assert all(SECRET not in p.message and SECRET not in p.title for p in receiver.posts)
    assert any("[secret:NOTIFY_SECRET]" in p.message for p in receiver.posts)
    page = json.loads((tmp_path / "status/status.json").read_text())
    assert page["status"] == "degraded" and page["incident"]["level"] == 2
    for name in ("status.json", "index.html"):
        assert SECRET not in (tmp_path / "status" / name).read_text()


def test_a_receiver_that_never_answers_is_given_up_on_within_the_timeout(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"json://ops:{SECRET}@127.0.0.1:{silent.getsockname()[1]}/hook"
        notifier = Notifier({Channel.INCIDENTS: [url]}, Redactor({"NOTIFY_SECRET": SECRET}), 0.5)
        message = Message("t", "b", (Channel.INCIDENTS, Channel.PAGING))
        started = time.monotonic()
        (failure,) = asyncio.run(notifier.send(message))
    assert time.monotonic() - started < 3
    assert failure.channel is Channel.INCIDENTS and "no answer within 0.5 s" in failure.reason
    assert SECRET not in str(failure) and "ops" not in str(failure) and "/hook" not in str(failure)
    (bad,) = asyncio.run(Notifier({Channel.PAGING: ["nope://x:y@z"]}).send(message))
    assert bad.reason == "not a URL apprise knows" and "y@" not in str(bad)


def test_a_failure_names_a_url_by_its_host_only_when_the_host_is_not_a_token() -> None:
    assert describe_url("json://ops:pw@127.0.0.1:8080/hook?x=1") == "json://127.0.0.1:8080"
    assert describe_url("mailto://me:pw@mail.example.com") == "mailto://mail.example.com"
    assert describe_url("slack://T0KENA/T0KENB/T0KENC/#ops") == "slack://..."
    assert describe_url("pagerduty://integration@routing") == "pagerduty://..."
    notifier = Notifier({Channel.PAGING: ["slack://T0KENA/T0KENB/T0KENC/#ops"]})
    said = notifier.safe("refused T0KENB; see slack://T0KENA/x")
    assert "T0KEN" not in said and "[secret:notify-url]" in said and "slack://..." in said


def test_a_failed_put_back_pages_on_call_and_shows_an_outage(
    tmp_path: Path, receiver: Receiver
) -> None:
    async def run() -> None:
        sink = _sink(receiver, tmp_path)
        hosts = ("web-1",)
        sink.emit(
            RunStarted(
                deployment_id=9,
                env="production",
                tag=V3,
                kind="deploy",
                hosts=hosts,
                deploy_steps=3,
            )
        )
        sink.emit(PhaseFinished(phase=Phase.DEPLOY, status=StepStatus.FAILED, seconds=1.0))
        sink.emit(PhaseFinished(phase=Phase.ROLLBACK, status=StepStatus.FAILED, seconds=2.0))
        sink.emit(RunFinished(outcome=Outcome.FAILED, seconds=3.0, reason="putting back failed"))
        assert await sink.flush() == []

    asyncio.run(run())
    paged = receiver.titles("/paging")
    assert [t.split(": ", 1)[1] for t in paged] == [
        "putting production back FAILED (in 2.0 s)",
        "failed in 3 s",
    ]
    page = json.loads((tmp_path / "status/status.json").read_text())
    assert page["status"] == "outage" and page["maintenance"] is None
    assert page["updates"][0]["message"] == "the previous release could not be put back"
