"""Deploying, failing and rolling back on local hosts, through the real CLI."""

from __future__ import annotations

import json
import signal
import sqlite3
import time
from pathlib import Path

from tests.fixtures.sandbox import TAGS, Sandbox, build_artifact, make_sandbox

V1, V2, V3 = TAGS


def history(box: Sandbox) -> list[dict[str, object]]:
    result = box.rollout("history", "--json")
    assert result.returncode == 0, result.stderr
    records: list[dict[str, object]] = json.loads(result.stdout)
    return records


def tree(root: Path) -> dict[str, str]:
    """Every path under root with its link target or size: a host's state, comparable."""
    snapshot = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        snapshot[key] = (
            f"-> {path.readlink()}"
            if path.is_symlink()
            else str(path.stat().st_size if path.is_file() else "dir")
        )
    return snapshot


def test_deploy_switches_every_host_and_records_it(sandbox: Sandbox) -> None:
    first = sandbox.rollout("deploy", "production", V1)
    assert first.returncode == 0, first.stdout + first.stderr
    second = sandbox.rollout("deploy", "production", V2)
    assert second.returncode == 0, second.stdout + second.stderr

    for host in sandbox.hosts:
        assert sandbox.current(host) == V2
        assert sandbox.version_file(host, "current") == V2
        assert sandbox.version_file(host, "previous") == V1
    records = history(sandbox)
    assert [(r["tag"], r["status"], r["previous_tag"]) for r in records] == [
        (V2, "succeeded", V1),
        (V1, "succeeded", None),
    ]
    assert "stage timings" in second.stdout


def test_status_shows_what_runs_where(sandbox: Sandbox) -> None:
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    result = sandbox.rollout("status", "production", "--json")
    status = json.loads(result.stdout)
    assert [(h["host"], h["current"], h["running"], h["healthy"]) for h in status["hosts"]] == [
        (h, V1, True, True) for h in sandbox.hosts
    ]
    assert status["lock"] is None and status["drift"] is False


def test_a_release_that_never_gets_healthy_is_rolled_back_on_every_switched_host(
    tmp_path: Path,
) -> None:
    box = make_sandbox(tmp_path, hosts=2, batch=1, health_timeout="2s")
    build_artifact(tmp_path / "dist", V3, healthy=False)
    try:
        assert box.rollout("deploy", "production", V1).returncode == 0
        result = box.rollout("deploy", "production", V3)
        assert result.returncode == 1
        for host in box.hosts:
            assert box.current(host) == V1
            assert box.version_file(host, "current") == V1
        # The first batch failed its health check: the second host was never switched.
        latest = history(box)[0]
        assert latest["status"] == "rolled_back"
        assert latest["failed_step"] == "deploy/health" and latest["failed_host"] == "web-1"
        assert "not healthy within 2s" in str(latest["reason"])
    finally:
        box.stop_apps()


def test_a_failed_verification_rolls_every_host_back_and_records_both(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=2)
    build_artifact(
        tmp_path / "dist", V3, version="v0-wrong"
    )  # healthy, but reports another version
    try:
        assert box.rollout("deploy", "production", V2).returncode == 0
        result = box.rollout("deploy", "production", V3)
        assert result.returncode == 1
        assert [box.current(h) for h in box.hosts] == [V2, V2]
        latest = history(box)[0]
        assert latest["status"] == "rolled_back" and latest["failed_step"] == "verify/version"
        steps = (
            sqlite3.connect(tmp_path / ".rollout" / "rollout.db")
            .execute(
                "select phase, name, host, status from steps where deployment_id = ? order by id",
                (latest["id"],),
            )
            .fetchall()
        )
        assert ("rollback", "restore", "web-1", "succeeded") in steps
        assert ("rollback", "restore", "web-2", "succeeded") in steps
    finally:
        box.stop_apps()


def test_quick_rollback_goes_back_to_the_previous_release(sandbox: Sandbox) -> None:
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    assert sandbox.rollout("deploy", "production", V2).returncode == 0
    result = sandbox.rollout("rollback", "production", "--reason", "checkout errors")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [sandbox.current(h) for h in sandbox.hosts] == [V1, V1]
    latest = history(sandbox)[0]
    assert (latest["kind"], latest["tag"], latest["status"], latest["reason"]) == (
        "rollback",
        V1,
        "succeeded",
        "checkout errors",
    )


def test_rollback_is_refused_before_touching_anything_when_the_target_is_missing(
    sandbox: Sandbox,
) -> None:
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    assert sandbox.rollout("deploy", "production", V2).returncode == 0
    # V1 disappears from one host (pruned, or deleted by hand): it must not be half rolled back.
    victim = sandbox.host_dir("web-2") / "releases" / V1 / ".rollout-release"
    victim.unlink()
    before = {h: tree(sandbox.host_dir(h)) for h in sandbox.hosts}

    result = sandbox.rollout("rollback", "production", "--to", V1)

    assert result.returncode == 1
    assert "refused" in result.stderr and "web-2" in result.stdout + result.stderr
    assert {h: tree(sandbox.host_dir(h)) for h in sandbox.hosts} == before


def test_hostile_tags_are_refused_before_any_host_or_record_is_touched(sandbox: Sandbox) -> None:
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    before = {h: tree(sandbox.host_dir(h)) for h in sandbox.hosts}
    for tag in ["v1; rm -rf /", "../../etc", "", "v2026.01.01-aaaaaaa; touch /tmp/pwned", "$(id)"]:
        result = sandbox.rollout("deploy", "production", tag)
        assert result.returncode == 2, (tag, result.stderr)
        assert "tag" in result.stderr
    assert {h: tree(sandbox.host_dir(h)) for h in sandbox.hosts} == before
    assert len(history(sandbox)) == 1


def test_dry_run_prints_the_plan_and_touches_nothing(sandbox: Sandbox) -> None:
    result = sandbox.rollout("deploy", "production", V1, "--dry-run")
    assert result.returncode == 0
    assert (
        "activate on web-1 [batch 1]" in result.stdout
        and "activate on web-2 [batch 2]" in result.stdout
    )
    assert not (sandbox.root / "hosts").exists()
    assert history(sandbox) == []


def test_old_releases_are_pruned_but_current_and_previous_are_kept(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1, tags=TAGS)  # keep: 2
    try:
        for tag in TAGS:
            assert box.rollout("deploy", "production", tag).returncode == 0
        releases = sorted(p.name for p in (box.host_dir("web-1") / "releases").iterdir())
        assert releases == [V2, V3]
    finally:
        box.stop_apps()


def test_a_corrupt_artifact_is_refused_before_any_host_is_touched(sandbox: Sandbox) -> None:
    artifact = sandbox.root / "dist" / f"app-{V1}.tar.gz"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    result = sandbox.rollout("deploy", "production", V1)
    assert result.returncode == 2
    assert "checksum" in result.stderr
    assert not (sandbox.root / "hosts").exists()


def test_a_second_deploy_waits_for_nobody_it_exits_3_naming_the_holder(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1, health_timeout="60s")
    build_artifact(tmp_path / "dist", V3, healthy=False)  # keeps the first deploy busy in health
    first = box.popen("deploy", "production", V3, "--message", "slow one")
    try:
        _wait_for_lock(box)
        second = box.rollout("deploy", "production", V1)
        assert second.returncode == 3
        assert "locked by" in second.stderr and "slow one" in second.stderr
        # Ctrl-C on the first: the lock is released and the record says aborted.
        first.send_signal(signal.SIGINT)
        said, _ = first.communicate(timeout=30)
        assert first.returncode == 130
        assert "production: aborted: interrupted by the operator" in " ".join(said.split())
        assert json.loads(box.rollout("lock", "status", "production", "--json").stdout) is None
        latest = history(box)[0]
        assert latest["status"] == "aborted"
        assert box.current("web-1") is None  # the interrupted first deploy was undone
    finally:
        if first.poll() is None:
            first.kill()
        box.stop_apps()


def test_the_lock_is_released_after_a_failing_step(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1, health_timeout="1s")
    build_artifact(tmp_path / "dist", V3, healthy=False)
    try:
        assert box.rollout("deploy", "production", V3).returncode == 1
        assert json.loads(box.rollout("lock", "status", "production", "--json").stdout) is None
        assert box.rollout("deploy", "production", V1).returncode == 0
    finally:
        box.stop_apps()


def test_lock_release_needs_force_while_the_holder_runs(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1, health_timeout="60s")
    build_artifact(tmp_path / "dist", V3, healthy=False)
    first = box.popen("deploy", "production", V3)
    try:
        _wait_for_lock(box)
        refused = box.rollout("lock", "release", "production")
        assert refused.returncode == 3 and "--force" in refused.stderr
        forced = box.rollout("lock", "release", "production", "--force")
        assert forced.returncode == 0
        assert json.loads(box.rollout("lock", "status", "production", "--json").stdout) is None
    finally:
        first.send_signal(signal.SIGINT)
        first.wait(timeout=30)
        box.stop_apps()


def test_secrets_never_reach_the_console_the_records_or_the_event_log(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1, health_timeout="2s")
    secret = box.env["APP_TOKEN"]
    # A broken start command that prints its environment into the log the failure report quotes.
    config = box.config.read_text().replace(
        "command: ['", "command: ['sh', '-c', 'echo token=$APP_TOKEN; exit 3', '"
    )
    box.config.write_text(config)
    result = box.rollout("deploy", "production", V1)
    assert result.returncode == 1
    assert "[secret:APP_TOKEN]" in result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
    for path in [
        tmp_path / ".rollout" / "rollout.db",
        *(tmp_path / ".rollout" / "events").glob("*.jsonl"),
    ]:
        assert secret.encode() not in path.read_bytes(), path
    # The secret did reach the app, where it belongs.
    assert secret in (box.host_dir("web-1") / "log" / "app.log").read_text()


def test_audit_verify_detects_an_edited_record(sandbox: Sandbox) -> None:
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    assert sandbox.rollout("audit", "verify").returncode == 0
    db = sqlite3.connect(sandbox.root / ".rollout" / "rollout.db")
    triggers = [
        name for (name,) in db.execute("select name from sqlite_master where type = 'trigger'")
    ]
    for name in triggers:  # an attacker with file access can drop the guard rails first
        db.execute(f"drop trigger {name}")
    db.execute("update audit set actor = 'someone-else' where id = 1")
    db.commit()
    result = sandbox.rollout("audit", "verify")
    assert result.returncode == 1
    assert "TAMPERED" in result.stdout


def _wait_for_lock(box: Sandbox, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = box.rollout("lock", "status", "production", "--json")
        if result.returncode == 0 and json.loads(result.stdout) is not None:
            return
        time.sleep(0.2)
    raise AssertionError("the first deploy never took the lock")
