"""Follow-ups as values: what the runbook's `followups:` plans, who owns each item, and what the
performance analysis and the error review conclude from hand-made before/after requests."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollout.config import Runbook, load_runbook
from rollout.errors import ConfigError
from rollout.followups import plan
from rollout.followups.error_review import review
from rollout.followups.evidence import Evidence, Span
from rollout.followups.performance import analyse
from rollout.store.records import SampleRecord

FINISHED = datetime(2026, 11, 30, 14, 0, tzinfo=UTC)
HOUR, DAY, WEEK = timedelta(hours=1), timedelta(days=1), timedelta(weeks=1)

EXAMPLE = """\
app: united-cars
runtime: {kind: release-dir, path: srv/app, start: 'true'}
environments:
  production:
    hosts: [{name: web-1, kind: local, address: 127.0.0.1, root: hosts/web-1}]
people:
  roles: {deployer: platform, secondary: on-call, business: product-owner}
  on_call: [{name: primary, notify: 'json://localhost/'}]
  escalation: [on-call, platform-lead]
followups:
  1h: [metrics-review, support-channels, error-tracking, team-update]
  24h: [performance-analysis, usage-patterns, cost-check, docs-update]
  1w: [success-metrics, user-satisfaction, runbook-update, {retrospective: engineering-manager}]
"""


def runbook(tmp_path: Path, text: str = EXAMPLE) -> Runbook:
    path = tmp_path / "rollout.yml"
    path.write_text(text)
    return load_runbook(path)


def test_the_example_runbook_plans_twelve_follow_ups_due_after_the_deployment_finished(
    tmp_path: Path,
) -> None:
    planned = plan(runbook(tmp_path), finished_at=FINISHED, deployer="alice")

    assert [(p.activity, p.kind, p.owner, p.due_at - FINISHED) for p in planned] == [
        ("metrics-review", "automatic", "rollout", HOUR),
        ("support-channels", "manual", "primary", HOUR),  # the first on call
        ("error-tracking", "automatic", "rollout", HOUR),
        ("team-update", "manual", "platform", HOUR),  # people.roles.deployer
        ("performance-analysis", "automatic", "rollout", DAY),
        ("usage-patterns", "manual", "product-owner", DAY),  # people.roles.business
        ("cost-check", "manual", "platform", DAY),
        ("docs-update", "manual", "platform", DAY),
        ("success-metrics", "automatic", "rollout", WEEK),
        ("user-satisfaction", "manual", "product-owner", WEEK),
        ("runbook-update", "manual", "platform", WEEK),
        ("retrospective", "manual", "engineering-manager", WEEK),  # named in the runbook
    ]


def test_without_people_the_deployer_owns_what_no_one_else_does(tmp_path: Path) -> None:
    text = EXAMPLE.split("people:")[0] + (
        "followups:\n  2h: [support-channels, user-satisfaction, {hotfix-review: on-call},"
        " unheard-of-chore]\n"
    )
    planned = plan(runbook(tmp_path, text), finished_at=FINISHED, deployer="alice")

    assert [(p.activity, p.kind, p.owner, p.due_at) for p in planned] == [
        ("support-channels", "manual", "alice", FINISHED + 2 * HOUR),
        ("user-satisfaction", "manual", "alice", FINISHED + 2 * HOUR),
        ("hotfix-review", "manual", "alice", FINISHED + 2 * HOUR),
        ("unheard-of-chore", "manual", "alice", FINISHED + 2 * HOUR),  # unknown: tracked
    ]


def test_an_item_that_is_neither_a_name_nor_one_owner_pair_is_refused_at_its_line(
    tmp_path: Path,
) -> None:
    text = EXAMPLE.replace("{retrospective: engineering-manager}", "{retrospective: a, b: c}")

    with pytest.raises(ConfigError) as refused:
        runbook(tmp_path, text)

    assert str(refused.value) == (
        f"{tmp_path / 'rollout.yml'}:13: followups.1w[3]: expected an activity name, or one"
        " `activity: owner` pair (got {'retrospective': 'a', 'b': 'c'})"
    )


# --- the automatic actions over hand-made requests ---------------------------------------------


def requests(latencies: list[float], errors: int = 0, *, start: datetime = FINISHED) -> Evidence:
    """One request per latency, the first ``errors`` of them answered with a 500."""
    failure = {"path": "/api/vehicles", "status": "500"}
    failures = [
        SampleRecord(i, 1, "production", "http_error", "web-1", "probe", start, 1.0, True, failure)
        for i in range(errors)
    ]
    return Evidence(
        Span(start, start + HOUR),
        latencies=latencies,
        errors=[1.0] * errors + [0.0] * (len(latencies) - errors),
        failures=failures,
    )


def spread(median: float, n: int = 60, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [median * rng.uniform(0.8, 1.2) for _ in range(n)]


def test_a_release_three_times_slower_is_a_regression() -> None:
    found = analyse(requests(spread(0.100)), requests(spread(0.300, seed=2)))

    assert found.verdict == "regressed"
    assert found.details["latency"]["classification"] == "high"
    assert found.details["errors"]["classification"] == "pass"
    assert found.details["before"]["p95_s"] == pytest.approx(0.117, abs=0.005)
    assert found.details["after"]["p95_s"] == pytest.approx(0.352, abs=0.015)
    assert found.summary.startswith("p95 0.11")
    assert found.needs_attention


def test_the_same_latencies_and_errors_after_as_before_are_ok() -> None:
    found = analyse(requests(spread(0.100), errors=1), requests(spread(0.100, seed=2), errors=1))

    assert found.verdict == "ok"
    assert found.details["after"]["error_rate"] == pytest.approx(1 / 60)
    assert not found.needs_attention


def test_errors_jumping_after_the_release_are_a_regression_even_when_as_fast() -> None:
    found = analyse(requests(spread(0.100)), requests(spread(0.100, seed=2), errors=12))

    assert found.verdict == "regressed"
    assert found.details["errors"]["classification"] == "high"
    assert "error rate 0.00 % -> 20.00 %" in found.summary


def test_too_few_requests_on_either_side_is_inconclusive_never_ok() -> None:
    found = analyse(requests([]), requests(spread(0.100)))

    assert found.verdict == "inconclusive"
    assert found.details["before"]["requests"] == 0
    assert found.summary.startswith("nothing to compare: 0 requests before, 60 after")
    few = analyse(requests(spread(0.100, n=5)), requests(spread(0.300, n=5)))
    assert few.verdict == "inconclusive" and "too few requests to compare" in few.summary


def test_the_error_review_holds_the_rate_to_its_target_and_says_where_errors_were() -> None:
    over = review(requests(spread(0.1, n=100), errors=3), target_percent=1.0)
    within = review(requests(spread(0.1, n=100), errors=1), target_percent=1.0)
    empty = review(requests([]), target_percent=1.0)

    assert (over.verdict, within.verdict, empty.verdict) == ("over-target", "ok", "inconclusive")
    assert over.summary.startswith("error rate 3.00 % of 100 requests (over the 1 % target)")
    assert over.details["by_path_status"] == {"/api/vehicles 500": 3}
    assert over.details["by_host"] == {"web-1": 3}
