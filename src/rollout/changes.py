"""The changes a deployment ships, read from its git repository (``rollout deploy --repo``).

A deployment of commit C after a production deployment of commit P ships every commit reachable
from C and not from P (``git log P..C``), each a change with its own lead time. For each:

- ``committed_at`` is its author date: when the change was written. The committer date moves
  on every rebase and amend, and GitHub's squash merge stamps the merge time there.
- ``merged_at`` is when it reached the main line: the committer date of the first-parent commit
  that brought it in. A merge commit brings in everything on its other parents; a commit on the
  main line itself (a direct push, a squash or rebase merge) was merged when it was committed
  there. Merge commits are not changes themselves, only the moment others were merged.

Without a previous deployment (the first one on record) the deployment ships only its own
commit: what went out before rollout kept records is not known, and counting a repository's
whole history as one deployment's changes would drown every lead time in old commits.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rollout.errors import BadInput

FIELDS = "%H%x1f%P%x1f%aI%x1f%cI%x1e"  # sha, parents, author date, committer date; one record each


@dataclass(frozen=True)
class Change:
    sha: str
    committed_at: datetime
    merged_at: datetime | None


@dataclass(frozen=True)
class _Commit:
    sha: str
    parents: tuple[str, ...]
    authored: datetime
    committed: datetime


def resolve(repo: Path, tag: str, commit: str | None = None) -> str:
    """The full sha being deployed: ``commit`` when given, else the git tag named ``tag``, else
    the abbreviated sha a rollout tag ends with (``v2024.01.15-a1b2c3d``)."""
    candidates = [commit] if commit else [f"refs/tags/{tag}", tag.rsplit("-", 1)[-1]]
    for candidate in candidates:
        found = _git(repo, "rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}", ok=(0, 1))
        if found:
            return found
    raise BadInput(
        f"{repo}: no commit for {commit or tag!r}",
        hint="pass --commit SHA, or fetch the tag into the repository first",
    )


def shipped(repo: Path, commit: str, previous: str | None) -> list[Change]:
    """The changes in ``commit`` since ``previous`` (the last production deployment's commit),
    oldest first; only ``commit`` itself when there is no previous deployment."""
    if previous is None or previous == commit:
        (only,) = _log(repo, "--no-walk", commit)
        return [] if previous == commit else [Change(only.sha, only.authored, only.committed)]
    if not _git(repo, "rev-parse", "--verify", "--quiet", f"{previous}^{{commit}}", ok=(0, 1)):
        raise BadInput(
            f"{repo}: the previous deployment's commit {previous[:12]} is not in the repository",
            hint="fetch the full history (git fetch --unshallow), or pass --commit without --repo",
        )
    commits = {c.sha: c for c in _log(repo, f"{previous}..{commit}")}
    main_line = _git(repo, "rev-list", "--first-parent", f"{previous}..{commit}").split()
    merged_at: dict[str, datetime] = {}
    for sha in reversed(main_line):  # oldest first: a commit belongs to the first merge of it
        landed = commits[sha]
        merged_at.setdefault(sha, landed.committed)
        for side in landed.parents[1:]:
            for brought in _ancestors(side, commits, stop=merged_at):
                merged_at[brought] = landed.committed
    return [
        Change(c.sha, c.authored, merged_at.get(c.sha))
        for c in sorted(commits.values(), key=lambda c: (c.committed, c.sha))
        if len(c.parents) < 2  # a merge commit is when changes were merged, not a change
    ]


def _ancestors(start: str, commits: dict[str, _Commit], stop: dict[str, datetime]) -> list[str]:
    """``start`` and its ancestors inside the range that no earlier merge brought in."""
    found, pending = [], [start]
    while pending:
        sha = pending.pop()
        if sha in stop or sha not in commits or sha in found:
            continue
        found.append(sha)
        pending.extend(commits[sha].parents)
    return found


def _log(repo: Path, *spec: str) -> list[_Commit]:
    out = _git(repo, "log", f"--format={FIELDS}", *spec)
    commits = []
    for record in filter(None, (r.strip("\n") for r in out.split("\x1e"))):
        sha, parents, authored, committed = record.split("\x1f")
        commits.append(_Commit(sha, tuple(parents.split()), _utc(authored), _utc(committed)))
    return commits


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def _git(repo: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError:
        raise BadInput("git is not installed", hint="install git, or pass --commit") from None
    if done.returncode not in ok:
        said = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        raise BadInput(f"{repo}: git {args[0]}: {said}", hint="is --repo a git repository?")
    return done.stdout.strip()
