"""The readiness review: sign-offs, checklist items and communications against the policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollout.checks.readiness import review
from rollout.config import Notify, People, Readiness
from rollout.model import CheckStatus
from rollout.store import ApprovalRecord

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = Readiness.model_validate(
    {
        "approvals": {"count": 2, "distinct_people": True, "roles": ["platform", "product-owner"]},
        "require": ["ci-passed", "security-assessment"],
        "window": {"min": "24h", "max": "48h"},
    }
)
PEOPLE = People.model_validate(
    {
        "roles": {"deployer": "platform", "business": "product-owner"},
        "on_call": [{"name": "primary", "notify": "mailto://x"}],
        "escalation": ["on-call", "cto"],
    }
)
NOTIFY = Notify.model_validate({"deployments": ["json://localhost"]})


def approval(person: str, role: str, hours_ago: float, kind: str = "sign-off") -> ApprovalRecord:
    return ApprovalRecord(
        0, "production", "v1", person, role, "", kind, NOW - timedelta(hours=hours_ago)
    )


def by_id(records: list[ApprovalRecord]) -> dict[str, object]:
    return {r.id: r for r in review(POLICY, PEOPLE, NOTIFY, records, NOW)}


def test_a_complete_review_passes() -> None:
    results = by_id(
        [
            approval("ana", "platform", 30),
            approval("bo", "product-owner", 26),
            approval("ci", "", 30, kind="ci-passed"),
            approval("sec", "", 40, kind="security-assessment"),
        ]
    )
    assert {k: r.status for k, r in results.items()} == {  # type: ignore[attr-defined]
        "sign-offs": CheckStatus.PASS,
        "ci-passed": CheckStatus.PASS,
        "security-assessment": CheckStatus.PASS,
        "stakeholders-notified": CheckStatus.PASS,
        "on-call-confirmed": CheckStatus.PASS,
        "incident-team-named": CheckStatus.PASS,
    }


def test_a_missing_role_names_who_may_give_it() -> None:
    sign_offs = by_id([approval("ana", "platform", 30)])["sign-offs"]
    assert sign_offs.status is CheckStatus.FAIL  # type: ignore[attr-defined]
    assert "a sign-off as product-owner (the business in people.roles)" in sign_offs.remedy  # type: ignore[attr-defined]


def test_one_person_signing_twice_counts_once() -> None:
    sign_offs = by_id([approval("ana", "platform", 30), approval("ana", "product-owner", 30)])[
        "sign-offs"
    ]
    assert sign_offs.status is CheckStatus.FAIL and sign_offs.value == "1 of 2"  # type: ignore[attr-defined]


def test_sign_offs_outside_the_window_do_not_count() -> None:
    stale = [
        approval("ana", "platform", 24 * 10),
        approval("bo", "product-owner", 2),
    ]  # too old, too fresh
    sign_offs = by_id(stale)["sign-offs"]
    assert (
        sign_offs.status is CheckStatus.FAIL
        and "2 outside the window (24h to 48h before the deploy)" in sign_offs.evidence
    )  # type: ignore[attr-defined]


def test_missing_items_and_communications() -> None:
    quiet = review(POLICY, People(), Notify(), [], NOW)
    statuses = {r.id: r.status for r in quiet}
    assert statuses["ci-passed"] is CheckStatus.FAIL
    assert statuses["on-call-confirmed"] is CheckStatus.WARN  # a warning unless required
    strict = Readiness.model_validate({"require": ["communications"]})
    assert {r.id: r.status for r in review(strict, People(), Notify(), [], NOW)}[
        "incident-team-named"
    ] is CheckStatus.FAIL
