"""Planning a deployment's follow-ups when it finishes: one record per activity of the runbook's
``followups:``, due that long after the deployment finished (its finalize step)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

from rollout.config import Runbook
from rollout.followups.activities import Activity, Kind, activities, owner_of
from rollout.store import FollowUpRecord, Store


@dataclass(frozen=True)
class Planned:
    activity: str
    after: timedelta
    kind: Kind
    owner: str
    due_at: datetime


def plan(runbook: Runbook, *, finished_at: datetime, deployer: str) -> list[Planned]:
    """What ``followups:`` asks for after a deployment that finished at ``finished_at``."""
    return [_planned(a, runbook, finished_at, deployer) for a in activities(runbook.followups)]


def _planned(activity: Activity, runbook: Runbook, finished_at: datetime, deployer: str) -> Planned:
    return Planned(
        activity=activity.name,
        after=activity.after,
        kind=activity.kind,
        owner=owner_of(activity, runbook.people, deployer=deployer),
        due_at=finished_at + activity.after,
    )


def schedule(
    runbook: Runbook, store: Store, deployment_id: int, finished_at: datetime
) -> list[FollowUpRecord]:
    """Record the follow-ups of ``deployment_id``; once: a second call returns the first's."""
    existing = store.follow_ups(deployment_id=deployment_id)
    if existing:
        return existing
    deployment = store.deployment(deployment_id)
    planned = plan(runbook, finished_at=finished_at, deployer=deployment.actor)
    if not planned:
        return []
    store.add_follow_ups(
        deployment_id,
        [{"activity": p.activity, "owner": p.owner, "due_at": p.due_at} for p in planned],
    )
    store.append_audit(
        actor="rollout",
        action="followups.planned",
        subject=f"deployment:{deployment_id}",
        details={
            "env": deployment.env,
            "finished_at": finished_at.isoformat(),
            "activities": [p.activity for p in planned],
        },
    )
    return store.follow_ups(deployment_id=deployment_id)


def describe(records: list[FollowUpRecord], finished_at: datetime) -> str:
    if not records:
        return "no follow-ups in the runbook"
    from rollout.followups.activities import kind_of

    kinds = Counter(kind_of(r.activity) for r in records)
    times = Counter(_after(r.due_at - finished_at) for r in records)
    when = ", ".join(f"{n} at +{t}" for t, n in times.items())
    return (
        f"{len(records)} follow-ups planned ({when}): {kinds['automatic']} automatic,"
        f" {kinds['manual']} for people; see `rollout followups {records[0].env}`"
    )


def _after(span: timedelta) -> str:
    seconds = round(span.total_seconds())
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
