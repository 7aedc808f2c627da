"""Starting and stopping apps: through configured commands, or the built-in launcher."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import pytest

from rollout.config import Launcher, ReleaseDirRuntime
from rollout.hosts.local import LocalHost
from rollout.runtimes.base import Target
from rollout.runtimes.release_dir import ReleaseDirectories
from tests.fixtures.sandbox import TAGS, make_sandbox

V1, V2 = TAGS[:2]


def use_commands(box_config: Path, start: str, stop: str) -> None:
    """Swap the built-in launcher for service-manager style start/stop commands."""
    text = box_config.read_text()
    head, _, rest = text.partition("  launcher:\n")
    rest = rest.split("  health_url:", 1)[1]
    box_config.write_text(
        f"{head}  start: {json.dumps(start)}\n  stop: {json.dumps(stop)}\n  health_url:{rest}"
    )


def test_configured_start_and_stop_commands_run_on_each_switch(tmp_path: Path) -> None:
    box = make_sandbox(tmp_path, hosts=1)
    # A stand-in for `systemctl restart app`: start the server detached, remember its pid.
    start = (
        f"cd {{release_dir}} && setsid {sys.executable} -m http.server {{port}} --bind 127.0.0.1 "
        "> /dev/null 2>&1 < /dev/null & echo $! > {deploy_to}/svc.pid; echo started {tag} >> {deploy_to}/svc.log"
    )
    stop = "kill $(cat {deploy_to}/svc.pid 2>/dev/null) 2>/dev/null; echo stopped >> {deploy_to}/svc.log; true"
    use_commands(box.config, start, stop)
    try:
        assert box.rollout("deploy", "production", V1).returncode == 0
        result = box.rollout("deploy", "production", V2)
        assert result.returncode == 0, result.stdout + result.stderr
        log = (box.host_dir("web-1") / "svc.log").read_text().split("\n")
        assert log[:4] == ["stopped", f"started {V1}", "stopped", f"started {V2}"]
    finally:
        pidfile = box.host_dir("web-1") / "svc.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), 15)


def test_a_failing_start_command_names_host_and_step_and_leaves_nothing_switched(
    tmp_path: Path,
) -> None:
    box = make_sandbox(tmp_path, hosts=2)
    use_commands(box.config, "echo 'unit app.service not found' >&2; exit 5", "true")
    result = box.rollout("deploy", "production", V1)
    assert result.returncode == 1
    assert "activate" in result.stdout and "web-1" in result.stdout
    assert "unit app.service not found" in result.stdout
    assert [box.current(h) for h in box.hosts] == [None, None]  # web-1 undone, web-2 never touched
    assert box.version_file("web-1") is None


def test_the_launcher_kills_an_app_that_ignores_sigterm_at_its_deadline(tmp_path: Path) -> None:
    settings = ReleaseDirRuntime(
        kind="release-dir",
        path="app",
        launcher=Launcher(
            command=["sh", "-c", "trap '' TERM; while :; do sleep 0.1; done"], stop_timeout="1s"
        ),  # type: ignore[arg-type]
    )
    runtime = ReleaseDirectories(settings)
    target = Target(host=LocalHost("web-1", tmp_path / "host"), env="production", vars={}, url=None)
    release = tmp_path / "host" / "app" / "releases" / V1
    release.mkdir(parents=True)

    asyncio.run(runtime.start(target, V1))
    pid = int((tmp_path / "host" / "app" / "run" / "app.pid").read_text())
    started = time.monotonic()
    asyncio.run(runtime.stop(target, V1))
    took = time.monotonic() - started

    assert not _alive(pid)
    assert 0.9 < took < 10, took  # waited for the grace period, then killed


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in state


@pytest.mark.parametrize("missing", ["health", "artifact"])
def test_missing_pieces_are_clear_errors_before_any_switch(tmp_path: Path, missing: str) -> None:
    box = make_sandbox(tmp_path, hosts=1, health_timeout="1s")
    try:
        if missing == "artifact":
            result = box.rollout("deploy", "production", "v2026.02.02-fffffff")
            assert (
                result.returncode == 2
                and "artifact" in result.stderr
                and "not found" in result.stderr
            )
            assert not (tmp_path / "hosts").exists()
        else:
            box.config.write_text(box.config.read_text().replace("/api/health'", "/nowhere'"))
            result = box.rollout("deploy", "production", V1)
            assert result.returncode == 1
            assert (
                "health" in result.stdout
                and "web-1" in result.stdout
                and "not healthy within 1s" in result.stdout
            )
            assert box.current("web-1") is None
    finally:
        box.stop_apps()
