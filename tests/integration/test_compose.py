"""The compose runtime against real containers (podman + podman-compose), through the real CLI.

Each test gets a local host (a folder under a tmp root) holding the runbook's compose layout:
``deploy/compose/docker-compose.prod.yml`` and ``deploy/compose/env/.prod`` (with lines the
deployment must keep), its own compose project and port; the images come from the session's
private podman store (tests/fixtures/podman.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from rollout.config import ComposeRuntime
from rollout.hosts.local import LocalHost
from rollout.runtimes import make_runtime
from rollout.runtimes.base import Target
from tests.fixtures.podman import PODMAN_COMPOSE, Podman
from tests.fixtures.sandbox import TAGS, free_port

V1, V2, V3 = TAGS
MISSING = "v2026.01.04-ddddddd"  # no image was ever built for it
COMPOSE_FILE = "deploy/compose/docker-compose.prod.yml"
ENV_FILE = "deploy/compose/env/.prod"

RUNBOOK = """\
app: demo-app
store: .rollout/rollout.db
release:
  artifact: '{repo}:{{tag}}'
  keep: 5
runtime:
  kind: compose
  command: '{command}'
  project_dir: srv/app
  compose_file: {compose_file}
  env_file: {env_file}
{project_line}  service: web
  pull: true
{health_url}  health_timeout: 2s
  env: {{CONTAINERS_CONF: '{containers_conf}', CONTAINERS_STORAGE_CONF: '{storage_conf}'}}
checks: {{cpu_max: 100%}}  # the test host shares this machine with podman and the test run
environments:
  production:
    hosts:
      - {{name: web-1, kind: local, address: 127.0.0.1, root: hosts/web-1,
         url: 'http://127.0.0.1:{{port}}', vars: {{port: '{port}'}}}}
verify:
  endpoints:
    - {{path: /api/health, conditions: ['[STATUS] == 200', '[BODY].status == ok']}}
  version: {{path: /api/version, field: version, settle: 2s}}
"""

COMPOSE = """\
services:
  web:
    image: {repo}:${{IMAGE_TAG}}
    network_mode: host
    stop_signal: SIGKILL   # busybox httpd as PID 1 ignores SIGTERM
    command: ["httpd", "-f", "-v", "-p", "127.0.0.1:{port}", "-h", "/www"]
{healthcheck}"""

HEALTHCHECK = """\
    healthcheck:
      test: ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:{port}/api/health"]
      interval: 30s
      retries: 1
"""


@dataclass
class ComposeBox:
    root: Path
    podman: Podman
    project: str
    port: int
    keep: list[str]  # the env file's other lines, which every deployment must keep

    @property
    def config(self) -> Path:
        return self.root / "rollout.yml"

    @property
    def project_dir(self) -> Path:
        return self.root / "hosts" / "web-1" / "srv" / "app"

    @property
    def env_file(self) -> Path:
        return self.project_dir / ENV_FILE

    def version_file(self, which: str) -> str | None:
        path = self.project_dir / f".{which}-production-version"
        return path.read_text().strip() if path.exists() else None

    def rollout(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rollout", *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def compose(self, *args: str, tag: str) -> None:
        """Run podman-compose by hand in the host's project, as an operator would."""
        subprocess.run(
            [
                str(PODMAN_COMPOSE),
                "-p",
                self.project,
                "-f",
                COMPOSE_FILE,
                "--env-file",
                ENV_FILE,
                *args,
            ],
            cwd=self.project_dir,
            env={**os.environ, **self.podman.env, "IMAGE_TAG": tag},
            capture_output=True,
            check=True,
            timeout=60,
        )

    def running(self) -> list[str]:
        """The image refs of the project's running containers."""
        return [c["image"] for c in self.podman.containers(self.project) if c["state"] == "running"]

    def answers(self, path: str) -> dict[str, str]:
        response = httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=5)
        response.raise_for_status()
        body: dict[str, str] = response.json()
        return body

    def snapshot(self) -> dict[str, str]:
        """Every file under the host with its content, and the project's containers."""
        host = self.root / "hosts"
        files = {
            str(p.relative_to(host)): p.read_text() for p in sorted(host.rglob("*")) if p.is_file()
        }
        containers = {
            c["id"]: f"{c['image']} {c['state']}" for c in self.podman.containers(self.project)
        }
        return {**files, **{f"container {k}": v for k, v in containers.items()}}

    def assert_runs(self, tag: str, previous: str | None) -> None:
        """Version files, env file, podman and the app itself all say ``tag``."""
        assert self.version_file("current") == tag
        assert self.version_file("previous") == previous
        lines = self.env_file.read_text().splitlines()
        assert lines == [*self.keep[:1], f"IMAGE_TAG={tag}", *self.keep[1:]]
        assert self.env_file.stat().st_mode & 0o777 == 0o600  # it may hold secrets
        assert self.running() == [f"{self.podman.repo}:{tag}"]
        assert self.answers("/api/version") == {"version": tag}


def make_box(root: Path, podman: Podman, *, health_url: bool = True) -> ComposeBox:
    """A host for one test. With a health URL: the runbook names the compose project, the
    port comes from the env file (IMAGE_TAG sits between lines to keep). Without: the compose
    healthcheck decides, the project is compose's own default (the compose file's folder),
    and there is no env file until the first activation writes one."""
    project = f"rt-{uuid.uuid4().hex[:8]}" if health_url else "compose"
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    (root / "rollout.yml").write_text(
        RUNBOOK.format(
            repo=podman.repo,
            command=PODMAN_COMPOSE,
            compose_file=COMPOSE_FILE,
            env_file=ENV_FILE,
            project_line=f"  project: {project}\n" if health_url else "",
            port=port,
            containers_conf=podman.env["CONTAINERS_CONF"],
            storage_conf=podman.env["CONTAINERS_STORAGE_CONF"],
            health_url="  health_url: 'http://127.0.0.1:{port}/api/health'\n" if health_url else "",
        )
    )
    keep = ["OTHER=keep-me", f"APP_PORT={port}"] if health_url else []
    box = ComposeBox(root=root, podman=podman, project=project, port=port, keep=keep)
    compose_file = box.project_dir / COMPOSE_FILE
    compose_file.parent.mkdir(parents=True)
    compose_file.write_text(
        COMPOSE.format(
            repo=podman.repo,
            port="${APP_PORT}" if health_url else port,
            healthcheck="" if health_url else HEALTHCHECK.format(port=port),
        )
    )
    if health_url:
        box.env_file.parent.mkdir(parents=True)
        box.env_file.write_text(f"{keep[0]}\nIMAGE_TAG=none-yet\n{keep[1]}\n")
        box.env_file.chmod(0o600)
    return box


@pytest.fixture(scope="module")
def images(podman: Podman) -> Podman:
    podman.build(V1)
    podman.build(V2)
    podman.build(V3, healthy=False)  # answers /api/version, but /api/health is a 404
    return podman


@pytest.fixture
def box(tmp_path: Path, images: Podman) -> Iterator[ComposeBox]:
    made = make_box(tmp_path / "sandbox", images)
    yield made
    images.remove_project(made.project)


def history(box: ComposeBox) -> list[dict[str, object]]:
    result = box.rollout("history", "--json")
    assert result.returncode == 0, result.stderr
    records: list[dict[str, object]] = json.loads(result.stdout)
    return records


def test_deploy_upgrade_and_rollback_keep_files_env_and_containers_in_agreement(
    box: ComposeBox,
) -> None:
    first = box.rollout("deploy", "production", V1)
    assert first.returncode == 0, first.stdout + first.stderr
    box.assert_runs(V1, None)

    second = box.rollout("deploy", "production", V2)
    assert second.returncode == 0, second.stdout + second.stderr
    box.assert_runs(V2, V1)
    status = json.loads(box.rollout("status", "production", "--json").stdout)
    [host] = status["hosts"]
    assert (host["current"], host["runs"], host["previous"]) == (V2, V2, V1)
    assert (host["running"], host["healthy"], status["drift"]) == (True, True, False)
    assert host["releases"] == [V1, V2, V3]  # the images of the repository on the host

    back = box.rollout("rollback", "production", "--reason", "checkout errors")
    assert back.returncode == 0, back.stdout + back.stderr
    box.assert_runs(V1, None)
    latest = history(box)[0]
    assert (latest["kind"], latest["tag"], latest["status"]) == ("rollback", V1, "succeeded")

    logs = box.rollout("logs", "production", "--tail", "3")
    assert logs.returncode == 0, logs.stderr
    lines = logs.stdout.splitlines()
    assert len(lines) == 3 and all(line.startswith("web-1 ") for line in lines)
    assert "response:200" in lines[-1]  # busybox httpd -v: the request just made

    # Someone bypasses rollout: status tells what really runs from what the files say.
    box.compose("up", "-d", "web", tag=V2)
    status = json.loads(box.rollout("status", "production", "--json").stdout)
    [host] = status["hosts"]
    assert (host["current"], host["runs"], host["running"]) == (V1, V2, True)
    assert status["drift"] is True
    assert box.running() == [f"{box.podman.repo}:{V2}"]


def test_a_release_that_never_gets_healthy_is_rolled_back_to_the_one_before(
    box: ComposeBox,
) -> None:
    assert box.rollout("deploy", "production", V2).returncode == 0

    result = box.rollout("deploy", "production", V3)

    assert result.returncode == 1, result.stdout + result.stderr
    box.assert_runs(V2, None)
    latest = history(box)[0]
    assert (latest["tag"], latest["status"], latest["failed_step"]) == (
        V3,
        "rolled_back",
        "deploy/health",
    )
    assert "not healthy within 2s" in str(latest["reason"])
    assert "response:404" in str(latest["reason"])  # the container's log: /api/health missing


def test_a_missing_compose_file_fails_preflight_and_changes_nothing(box: ComposeBox) -> None:
    (box.project_dir / COMPOSE_FILE).unlink()
    before = box.snapshot()

    result = box.rollout("deploy", "production", V1)

    assert result.returncode == 1
    latest = history(box)[0]
    assert latest["failed_step"] == "preflight/runtime"
    assert "compose-file: missing" in str(latest["reason"])
    assert box.snapshot() == before
    assert box.podman.containers(box.project) == []


def test_a_tag_without_an_image_fails_preflight_and_changes_nothing(box: ComposeBox) -> None:
    assert box.rollout("deploy", "production", V1).returncode == 0
    before = box.snapshot()

    result = box.rollout("deploy", "production", MISSING)

    assert result.returncode == 1
    latest = history(box)[0]
    assert latest["failed_step"] == "preflight/runtime"
    assert f"image: {box.podman.repo}:{MISSING}" in str(latest["reason"])
    assert box.snapshot() == before  # same files, same container (same id), still running
    box.assert_runs(V1, None)


def test_without_a_health_url_the_container_healthcheck_decides(
    tmp_path: Path, images: Podman
) -> None:
    box = make_box(tmp_path / "sandbox", images, health_url=False)
    try:
        deployed = box.rollout("deploy", "production", V1)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        box.assert_runs(V1, None)

        failed = box.rollout("deploy", "production", V3)  # its healthcheck gets a 404

        assert failed.returncode == 1, failed.stdout + failed.stderr
        latest = history(box)[0]
        assert (latest["status"], latest["failed_step"]) == ("rolled_back", "deploy/health")
        assert "unhealthy" in str(latest["reason"])
        box.assert_runs(V1, None)
    finally:
        images.remove_project(box.project)


def test_prune_removes_old_images_but_never_current_previous_or_running(
    tmp_path: Path, podman: Podman
) -> None:
    repo = f"{podman.repo}-prune"
    tags = [f"v2026.02.0{i}-aaaaaaa" for i in range(1, 6)]
    for tag in tags:  # built oldest first
        podman.build(tag, repo=repo)
    settings = ComposeRuntime(
        command=str(PODMAN_COMPOSE), project_dir="srv/app", env=podman.env, project="prune"
    )
    runtime = make_runtime(settings, f"{repo}:{{tag}}")
    target = Target(LocalHost("web-1", tmp_path), "production", {}, None)
    project = tmp_path / "srv" / "app"
    project.mkdir(parents=True)
    (project / ".current-production-version").write_text(f"{tags[0]}\n")  # oldest
    (project / ".previous-production-version").write_text(f"{tags[1]}\n")

    removed = asyncio.run(runtime.prune(target, keep=2))

    # Newest two kept (5, 4), current (1) and previous (2) kept: only 3 goes.
    assert removed == [tags[2]]
    assert podman.images(repo) == sorted(
        f"{repo}:{t}" for t in (tags[0], tags[1], tags[3], tags[4])
    )
    state = asyncio.run(runtime.state(target))
    assert (state.current, state.previous, state.link) == (tags[0], tags[1], None)
    assert state.releases == (tags[0], tags[1], tags[3], tags[4])
