"""Plans are values built from the runbook alone: what --dry-run prints is what runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.config import load_runbook
from rollout.engine.plan import plan_deploy, plan_rollback
from rollout.errors import BadInput, BadTag
from rollout.model import Phase
from tests.fixtures.sandbox import TAGS, make_sandbox

V1 = TAGS[0]


def runbook(tmp_path: Path, *, hosts: int = 4, batch: int | str = 1):  # type: ignore[no-untyped-def]
    box = make_sandbox(tmp_path, hosts=hosts, batch=batch)
    return load_runbook(box.config, {"APP_TOKEN": "x"})


@pytest.mark.parametrize(
    ("hosts", "batch", "expected"),
    [
        (4, 1, [["web-1"], ["web-2"], ["web-3"], ["web-4"]]),
        (4, 3, [["web-1", "web-2", "web-3"], ["web-4"]]),
        (4, "50%", [["web-1", "web-2"], ["web-3", "web-4"]]),
        (3, "25%", [["web-1"], ["web-2"], ["web-3"]]),
        (2, "100%", [["web-1", "web-2"]]),
    ],
)
def test_hosts_are_switched_in_batches(
    tmp_path: Path, hosts: int, batch: int | str, expected: list[list[str]]
) -> None:
    plan = plan_deploy(runbook(tmp_path, hosts=hosts, batch=batch), "production", V1)
    assert [list(b) for b in plan.batches] == expected
    activations = [(s.host, s.batch) for s in plan.steps if s.name == "activate"]
    assert activations == [(h, i) for i, b in enumerate(expected) for h in b]


def test_every_host_is_installed_before_the_first_switch(tmp_path: Path) -> None:
    plan = plan_deploy(runbook(tmp_path), "production", V1)
    names = [s.name for s in plan.steps_in(Phase.DEPLOY)]
    assert names[:4] == ["install"] * 4
    assert names[4:6] == ["activate", "health"]
    assert plan.phases() == [Phase.PREFLIGHT, Phase.DEPLOY, Phase.VERIFY, Phase.FINALIZE]


def test_preflight_checks_every_host_before_anything_changes(tmp_path: Path) -> None:
    plan = plan_deploy(runbook(tmp_path), "production", V1)
    preflight = {(s.name, s.host) for s in plan.steps_in(Phase.PREFLIGHT)}
    for host in ("web-1", "web-2", "web-3", "web-4"):
        assert {("connect", host), ("disk", host), ("production-health", host)} <= preflight
    assert ("artifact", None) in preflight


@pytest.mark.parametrize(
    "tag", ["v1; rm -rf /", "../../etc", "", "v2026.01.01-aaaaaaa\n", "v2026.01.01-AAAAAAA"]
)
def test_tags_that_do_not_match_the_pattern_are_refused(tmp_path: Path, tag: str) -> None:
    with pytest.raises(BadTag):
        plan_deploy(runbook(tmp_path), "production", tag)


def test_a_missing_artifact_is_refused_at_planning(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"artifact .* not found"):
        plan_deploy(runbook(tmp_path), "production", "v2026.12.31-fffffff")


def test_an_unknown_environment_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="production"):
        plan_deploy(runbook(tmp_path), "prod", V1)


def test_the_rollback_plan_checks_the_target_on_every_host_first(tmp_path: Path) -> None:
    plan = plan_rollback(runbook(tmp_path, hosts=2), "production", V1, reason="errors")
    assert [(s.phase, s.name, s.host) for s in plan.steps[:4]] == [
        (Phase.PREFLIGHT, "connect", "web-1"),
        (Phase.PREFLIGHT, "target-present", "web-1"),
        (Phase.PREFLIGHT, "connect", "web-2"),
        (Phase.PREFLIGHT, "target-present", "web-2"),
    ]
    assert plan.reason == "errors"


def test_describe_names_every_step(tmp_path: Path) -> None:
    lines = plan_deploy(runbook(tmp_path, hosts=2), "production", V1).describe()
    assert lines[0].startswith(f"deploy demo-app {V1} to production")
    assert any("activate on web-2 [batch 2]" in line for line in lines)
    assert lines[-1].startswith("on failure:")
