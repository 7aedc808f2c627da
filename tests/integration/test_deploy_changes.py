"""`rollout deploy --repo`: each deployment records the commits it ships, for lead times."""

from __future__ import annotations

import json

from rollout.store import open_store
from tests.fixtures.git import Repo, at
from tests.fixtures.sandbox import TAGS, Sandbox


def recorded(box: Sandbox) -> dict[int, list[tuple[str, str, str | None]]]:
    """Each deployment's changes: (sha, committed, merged) as ISO text."""
    with open_store(f"sqlite:///{box.root / '.rollout' / 'rollout.db'}") as store:
        return {
            d.id: [
                (c.sha, c.committed_at.isoformat(), c.merged_at and c.merged_at.isoformat())
                for c in store.changes(d.id)
            ]
            for d in store.deployments(env="production")
        }


def test_each_deployment_records_the_commits_since_the_last_one(
    sandbox: Sandbox, repo: Repo
) -> None:
    first = repo.commit("a", authored=0)
    repo.git("tag", TAGS[0])
    repo.git("checkout", "-q", "-b", "feature")
    b = repo.commit("b", authored=1)
    repo.git("checkout", "-q", "main")
    repo.git("merge", "-q", "--no-ff", "-m", "merge", "feature", authored=2, committed=2)
    c = repo.commit("c", authored=3, committed=4)  # squash-merged: written at 3, landed at 4
    repo.git("tag", TAGS[1])

    for tag in TAGS[:2]:
        done = sandbox.rollout("deploy", "production", tag, "--repo", str(repo.path))
        assert done.returncode == 0, done.stdout + done.stderr

    one, two = sorted(recorded(sandbox).items())
    assert one[1] == [(first, at(0).isoformat(), at(0).isoformat())]  # no deployment before it
    assert two[1] == [
        (b, at(1).isoformat(), at(2).isoformat()),  # merged when the merge landed
        (c, at(3).isoformat(), at(4).isoformat()),
    ]  # the merge commit is no change of its own
    history = json.loads(sandbox.rollout("history", "--json").stdout)
    assert history[0]["commit_sha"] == c  # the deployed commit, found by its tag
    kpi = json.loads(sandbox.rollout("kpi", "--json").stdout)["figures"]
    assert "3 changes" in kpi["lead_time_commit"]["note"]


def test_a_tag_the_repository_does_not_know_is_refused_before_any_host_is_touched(
    sandbox: Sandbox, repo: Repo
) -> None:
    repo.commit("a", authored=0)

    done = sandbox.rollout("deploy", "production", TAGS[0], "--repo", str(repo.path))
    not_a_repo = sandbox.rollout("deploy", "production", TAGS[0], "--repo", str(sandbox.root))

    assert done.returncode == 2 and "no commit for" in done.stderr
    assert not_a_repo.returncode == 2 and "git repository" in not_a_repo.stderr
    assert all(sandbox.current(h) is None for h in sandbox.hosts)
    assert json.loads(sandbox.rollout("history", "--json").stdout) == []
