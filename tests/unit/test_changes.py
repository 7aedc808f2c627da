"""The changes a deployment ships, read from a real git repository made here."""

from __future__ import annotations

import pytest

from rollout.changes import Change, resolve, shipped
from rollout.errors import BadInput
from tests.fixtures.git import Repo, at


def test_a_release_ships_merged_branches_direct_pushes_and_squash_merges(repo: Repo) -> None:
    a = repo.commit("a", authored=0)
    repo.git("checkout", "-q", "-b", "feature")
    b = repo.commit("b", authored=1)
    c = repo.commit("c", authored=2)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge feature", "feature", authored=3, committed=3)
    d = repo.commit("d", authored=4)
    # A squash merge: written at 5, landed on main at 6.
    s = repo.commit("s", authored=5, committed=6)

    changes = shipped(repo.path, s, previous=a)

    assert changes == [
        Change(b, at(1), at(3)),  # merged when the merge commit landed
        Change(c, at(2), at(3)),
        Change(d, at(4), at(4)),  # a direct push is merged as it is committed
        Change(s, at(5), at(6)),  # written at 5, merged at 6
    ]  # and the merge commit itself is no change


def test_a_branch_merged_twice_belongs_to_its_first_merge(repo: Repo) -> None:
    a = repo.commit("a", authored=0)
    repo.git("checkout", "-q", "-b", "topic")
    b = repo.commit("b", authored=1)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "first", "topic", authored=2, committed=2)
    repo.git("checkout", "-q", "topic")
    c = repo.commit("c", authored=3)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "second", "topic", authored=4, committed=4)
    head = repo.git("rev-parse", "HEAD")

    assert shipped(repo.path, head, previous=a) == [
        Change(b, at(1), at(2)),
        Change(c, at(3), at(4)),
    ]


def test_without_a_previous_deployment_only_the_deployed_commit_counts(repo: Repo) -> None:
    repo.commit("a", authored=0)
    b = repo.commit("b", authored=1, committed=2)

    assert shipped(repo.path, b, previous=None) == [Change(b, at(1), at(2))]
    assert shipped(repo.path, b, previous=b) == []  # a redeploy ships nothing new


def test_the_deployed_commit_is_found_by_commit_tag_or_the_tags_short_sha(repo: Repo) -> None:
    a = repo.commit("a", authored=0)
    b = repo.commit("b", authored=1)
    repo.git("tag", "v2026.11.02-release")

    assert resolve(repo.path, "v2026.11.02-release") == b
    assert resolve(repo.path, f"v2026.11.02-{a[:7]}") == a
    assert resolve(repo.path, "v2026.11.02-xyz", commit=a[:10]) == a
    with pytest.raises(BadInput, match=r"no commit for 'v2026\.11\.02-0000000'"):
        resolve(repo.path, "v2026.11.02-0000000")


def test_a_previous_commit_the_repository_does_not_have_is_bad_input(repo: Repo) -> None:
    a = repo.commit("a", authored=0)

    with pytest.raises(BadInput, match="not in the repository"):
        shipped(repo.path, a, previous="f" * 40)
    with pytest.raises(BadInput, match="is --repo a git repository"):
        shipped(repo.path.parent, a, previous=None)
