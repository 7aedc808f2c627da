"""Runtimes: how a release is installed, switched to and started on one host."""

from __future__ import annotations

from rollout.config import ComposeRuntime, ReleaseDirRuntime
from rollout.errors import BadInput
from rollout.runtimes.base import Artifact, Runtime, Target


def make_runtime(settings: ReleaseDirRuntime | ComposeRuntime) -> Runtime:
    if isinstance(settings, ReleaseDirRuntime):
        from rollout.runtimes.release_dir import ReleaseDirectories

        return ReleaseDirectories(settings)
    raise BadInput(
        "runtime.kind compose is not available in this version",
        hint="use runtime.kind: release-dir for now; docker compose arrives with issue 3",
    )


__all__ = ["Artifact", "Runtime", "Target", "make_runtime"]
