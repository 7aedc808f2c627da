"""The demo's git repository: the changes its releases ship, so lead times have real commits.

Each release is a small piece of work as a team does it: a feature branch of two commits merged
with a merge commit, and a fix squash-merged straight onto main, written and merged over the
hours before the demo runs. The release's tag points at the last of them. ``rollout deploy
--repo`` (here ``Options.repo``) then records each commit since the previous deployment with
its author and merge times, the way it would in a real checkout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

from rollout.sandbox.build import Release

# Hours before the demo: (feature commit 1, feature commit 2, feature merged, fix written,
# fix squash-merged), per release in order. v1's work is older than a day, v3's is fresh.
SCHEDULE = [
    (30.0, 27.0, 26.0, 25.5, 25.0),
    (5.0, 4.0, 3.0, 2.5, 1.5),
    (1.2, 1.0, 0.8, 0.6, 0.5),
]


def build_repo(directory: Path, releases: list[Release], now: datetime) -> Path | None:
    """``directory/repo`` with a tag per release; None where git is not installed."""
    if shutil.which("git") is None:
        return None
    repo = directory / "repo"
    repo.mkdir(parents=True, exist_ok=True)
    git = _Git(repo, now)
    git("init", "-q", "-b", "main")
    git.commit("README.md", "United Cars", hours_ago=48.0)
    for release, (one, two, merged, fixed, landed) in zip(releases, SCHEDULE, strict=False):
        branch = f"feature/{release.name}"
        git("checkout", "-q", "-b", branch)
        git.commit(f"{release.name}/feature.txt", f"{release.name}: the feature", hours_ago=one)
        git.commit(f"{release.name}/tests.txt", f"{release.name}: its tests", hours_ago=two)
        git("checkout", "-q", "main")
        git("merge", "-q", "--no-ff", "-m", f"Merge {branch}", branch, hours_ago=merged)
        git.commit(
            f"{release.name}/fix.txt", f"{release.name}: a fix", hours_ago=fixed, landed=landed
        )
        git("tag", release.tag)
    return repo


class _Git:
    def __init__(self, repo: Path, now: datetime) -> None:
        self.repo = repo
        self.now = now

    def __call__(self, *args: str, hours_ago: float = 0.0, landed: float | None = None) -> None:
        written = self.now - timedelta(hours=hours_ago)
        committed = self.now - timedelta(hours=hours_ago if landed is None else landed)
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "United Cars developer",
            "GIT_AUTHOR_EMAIL": "dev@united-cars.example",
            "GIT_COMMITTER_NAME": "United Cars developer",
            "GIT_COMMITTER_EMAIL": "dev@united-cars.example",
            "GIT_AUTHOR_DATE": written.isoformat(),
            "GIT_COMMITTER_DATE": committed.isoformat(),
            "GIT_CONFIG_NOSYSTEM": "1",  # nothing from the machine's git setup (hooks, signing)
            "HOME": str(self.repo),
        }
        subprocess.run(
            ["git", "-C", str(self.repo), *args], env=env, check=True, capture_output=True
        )

    def commit(
        self, name: str, message: str, *, hours_ago: float, landed: float | None = None
    ) -> None:
        path = self.repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{message}\n")
        self("add", name)
        self("commit", "-q", "-m", message, hours_ago=hours_ago, landed=landed)
