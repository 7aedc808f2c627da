"""Runtimes: how a release is installed, switched to and started on one host."""

from __future__ import annotations

from rollout.config import ComposeRuntime, ReleaseDirRuntime
from rollout.runtimes.base import Artifact, Runtime, Target


def make_runtime(
    settings: ReleaseDirRuntime | ComposeRuntime, artifact: str | None = None
) -> Runtime:
    """The runtime ``settings`` describe; ``artifact`` is ``release.artifact`` (for compose,
    the image reference with ``{tag}``)."""
    if isinstance(settings, ReleaseDirRuntime):
        from rollout.runtimes.release_dir import ReleaseDirectories

        return ReleaseDirectories(settings)
    from rollout.runtimes.compose import ComposeReleases

    return ComposeReleases(settings, artifact)


__all__ = ["Artifact", "Runtime", "Target", "make_runtime"]
