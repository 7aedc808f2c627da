"""The release-directory runtime on a local host: install, switch, prune."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from pathlib import Path

import pytest

from rollout.config import ReleaseDirRuntime
from rollout.errors import CommandFailed
from rollout.hosts.local import LocalHost
from rollout.runtimes.base import Artifact, Target
from rollout.runtimes.release_dir import ReleaseDirectories
from tests.fixtures.sandbox import TAGS, build_artifact

V1, V2, V3 = TAGS


def artifact(dist: Path, tag: str) -> Artifact:
    path = build_artifact(dist, tag)
    return Artifact(path, (path.parent / f"{path.name}.sha256").read_text().split()[0])


@pytest.fixture
def runtime() -> ReleaseDirectories:
    return ReleaseDirectories(ReleaseDirRuntime(kind="release-dir", path="srv/app", start="true"))


@pytest.fixture
def target(tmp_path: Path) -> Target:
    return Target(host=LocalHost("web-1", tmp_path / "host"), env="production", vars={}, url=None)


def probe_for_gaps(current: Path, stop: threading.Event, gaps: list[int]) -> None:
    """What a health check or a web server sees: the file under `current`, read again and again."""
    while not stop.is_set():
        if not (current / "index.html").exists():
            gaps.append(1)


def test_switching_never_leaves_current_missing(
    runtime: ReleaseDirectories, target: Target, tmp_path: Path
) -> None:
    async def prepare() -> None:
        for tag in (V1, V2):
            await runtime.install(target, tag, artifact(tmp_path / "dist", tag))
        await runtime.switch(target, V1, previous=None)

    asyncio.run(prepare())
    current = tmp_path / "host" / "srv" / "app" / "current"
    stop, gaps = threading.Event(), []
    probe = threading.Thread(target=probe_for_gaps, args=(current, stop, gaps))
    probe.start()

    async def flip() -> None:
        for i in range(60):
            await runtime.switch(target, (V1, V2)[i % 2], previous=None)

    try:
        asyncio.run(flip())
    finally:
        stop.set()
        probe.join()
    assert gaps == []


def test_the_probe_does_catch_a_non_atomic_switch(tmp_path: Path) -> None:
    """Control: the same probe sees the gap that `rm current; ln -s` leaves (capistrano#1110)."""
    base = tmp_path / "app"
    for tag in (V1, V2):
        (base / "releases" / tag).mkdir(parents=True)
        (base / "releases" / tag / "index.html").write_text(tag)
    current = base / "current"
    os.symlink(f"releases/{V1}", current)
    stop, gaps = threading.Event(), []
    probe = threading.Thread(target=probe_for_gaps, args=(current, stop, gaps))
    probe.start()
    try:
        for i in range(300):
            subprocess.run(
                ["sh", "-c", f"rm -f current && ln -s releases/{(V1, V2)[i % 2]} current"],
                cwd=base,
                check=True,
            )
            if gaps:
                break
    finally:
        stop.set()
        probe.join()
    assert gaps, "the probe should have seen `current` missing at least once"


def test_install_verifies_the_checksum_on_the_host(
    runtime: ReleaseDirectories, target: Target, tmp_path: Path
) -> None:
    good = artifact(tmp_path / "dist", V1)
    forged = Artifact(good.path, "0" * 64)
    with pytest.raises(CommandFailed, match="checksum mismatch"):
        asyncio.run(runtime.install(target, V1, forged))
    assert not asyncio.run(runtime.installed(target, V1))
    releases = tmp_path / "host" / "srv" / "app" / "releases"
    assert [p.name for p in releases.iterdir()] == []  # no partial release, no leftover upload


def test_a_tag_is_never_reinstalled_with_other_bytes(
    runtime: ReleaseDirectories, target: Target, tmp_path: Path
) -> None:
    asyncio.run(runtime.install(target, V1, artifact(tmp_path / "dist", V1)))
    other = artifact(tmp_path / "other", V1)
    other.path.write_bytes(other.path.read_bytes() + b"\0")
    rebuilt = Artifact(other.path, "f" * 64)
    with pytest.raises(CommandFailed, match="immutable"):
        asyncio.run(runtime.install(target, V1, rebuilt))


def test_switch_refuses_a_release_that_is_not_fully_installed(
    runtime: ReleaseDirectories, target: Target, tmp_path: Path
) -> None:
    half = tmp_path / "host" / "srv" / "app" / "releases" / V2
    half.mkdir(parents=True)  # unpacked partly, no completion marker
    with pytest.raises(CommandFailed, match="not fully installed"):
        asyncio.run(runtime.switch(target, V2, previous=None))
    assert not (tmp_path / "host" / "srv" / "app" / "current").exists()


def test_state_reports_version_files_link_and_releases(
    runtime: ReleaseDirectories, target: Target, tmp_path: Path
) -> None:
    async def scenario() -> None:
        for tag in (V1, V2):
            await runtime.install(target, tag, artifact(tmp_path / "dist", tag))
        await runtime.switch(target, V2, previous=V1)

    asyncio.run(scenario())
    state = asyncio.run(runtime.state(target))
    assert (state.current, state.previous, state.link, state.releases) == (V2, V1, V2, (V1, V2))
