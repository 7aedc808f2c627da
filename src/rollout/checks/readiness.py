"""The release readiness review: recorded sign-offs and checklist items against the runbook's
policy, and the communications checklist read from `people:` and `notify:`.

Sign-offs are records (`rollout approve`), never ticks in a document: who, as what role, when.
Only those inside the policy's window before the deploy count: a review from last month does
not approve today's release.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from rollout.config import Notify, People, Readiness
from rollout.model import CheckResult, CheckStatus
from rollout.store import ApprovalRecord

SIGN_OFF = "sign-off"

# The communications checklist: each item and where in rollout.yml it is answered.
COMMUNICATIONS = {
    "stakeholders-notified": "notify.deployments",
    "on-call-confirmed": "people.on_call",
    "incident-team-named": "people.escalation",
}


@dataclass(frozen=True)
class Window:
    min: timedelta | None
    max: timedelta | None

    def contains(self, approved_at: datetime, now: datetime) -> bool:
        age = now - approved_at
        return (self.min is None or age >= self.min) and (self.max is None or age <= self.max)

    def __str__(self) -> str:
        if self.min is None and self.max is None:
            return "any time before"
        low = _human(self.min) if self.min else "0"
        return f"{low} to {_human(self.max) if self.max else 'any time'} before the deploy"


def review(
    policy: Readiness,
    people: People,
    notify: Notify,
    records: Sequence[ApprovalRecord],
    now: datetime,
) -> list[CheckResult]:
    """Every readiness check for one release: sign-offs, required items, communications."""
    window = Window(policy.window.min, policy.window.max)
    inside = [r for r in records if window.contains(r.approved_at, now)]
    outside = len(records) - len(inside)
    results = [
        _sign_offs(policy, people, [r for r in inside if r.kind == SIGN_OFF], window, outside)
    ]
    done = {r.kind for r in inside if r.kind != SIGN_OFF}
    for item in policy.require:
        if item == "communications":
            continue
        results.append(_item(item, item in done, window))
    results += _communications(people, notify, required="communications" in policy.require)
    return results


def _sign_offs(
    policy: Readiness, people: People, sign_offs: list[ApprovalRecord], window: Window, outside: int
) -> CheckResult:
    wanted = policy.approvals
    if wanted.count == 0 and not wanted.roles:
        return CheckResult(
            "sign-offs", CheckStatus.SKIP, "", "", "no approvals required by readiness.approvals"
        )
    counted = len({r.person for r in sign_offs}) if wanted.distinct_people else len(sign_offs)
    roles_given = {r.role for r in sign_offs}
    missing_roles = [role for role in wanted.roles if role not in roles_given]
    need = max(wanted.count, len(wanted.roles))
    threshold = f">= {need} sign-offs" + (
        " from different people" if wanted.distinct_people else ""
    )
    if wanted.roles:
        threshold += f", roles {', '.join(wanted.roles)}"
    given = "; ".join(
        f"{r.person} as {r.role} at {r.approved_at:%Y-%m-%d %H:%M} UTC" for r in sign_offs
    )
    evidence = (given or "none") + (f"; {outside} outside the window ({window})" if outside else "")
    ok = counted >= need and not missing_roles
    remedy = ""
    if not ok:
        who = [f"a sign-off as {role}{_holder(people, role)}" for role in missing_roles]
        if counted + len(missing_roles) < need:
            who.append(
                f"{need - counted - len(missing_roles)} more sign-off(s) from another person"
            )
        remedy = "missing " + " and ".join(who) + ": rollout approve ENV TAG --as ROLE"
    return CheckResult(
        "sign-offs",
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        f"{counted} of {need}",
        threshold,
        evidence,
        remedy,
    )


def _holder(people: People, role: str) -> str:
    """Who may give a role's sign-off, as people.roles names it (function: role)."""
    functions = [function for function, held in people.roles.items() if held == role]
    return f" (the {', '.join(functions)} in people.roles)" if functions else ""


def _item(item: str, done: bool, window: Window) -> CheckResult:
    return CheckResult(
        item,
        CheckStatus.PASS if done else CheckStatus.FAIL,
        "recorded" if done else "missing",
        f"recorded {window}",
        f"readiness.require lists {item}",
        "" if done else f"record it: rollout approve ENV TAG --item {item}",
    )


def _communications(people: People, notify: Notify, *, required: bool) -> list[CheckResult]:
    answered = {
        "stakeholders-notified": bool(notify.deployments),
        "on-call-confirmed": bool(people.on_call),
        "incident-team-named": bool(people.escalation),
    }
    missing_status = CheckStatus.FAIL if required else CheckStatus.WARN
    return [
        CheckResult(
            item,
            CheckStatus.PASS if ok else missing_status,
            "configured" if ok else "not configured",
            f"{COMMUNICATIONS[item]} set",
            f"from {COMMUNICATIONS[item]} in rollout.yml",
            "" if ok else f"fill in {COMMUNICATIONS[item]} in rollout.yml",
        )
        for item, ok in answered.items()
    ]


def _human(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:g}h" if hours <= 72 or hours % 24 else f"{hours / 24:g}d"
