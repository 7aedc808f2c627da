"""Doing the follow-ups: the automatic ones when due (``rollout followups run``), the manual ones
when a person says so (``rollout followups done``). Every clock is a parameter."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from rollout.config import Runbook
from rollout.errors import BadInput, RolloutError, StoreError
from rollout.followups.activities import AUTOMATIC, Action
from rollout.followups.finding import Finding
from rollout.notify.channels import Channel, Failure, Level, Message, Notifier
from rollout.store import FollowUpRecord, Store

OPEN = ("pending", "failed")  # a failed automatic attempt is tried again by the next run


@dataclass(frozen=True)
class Done:
    """One automatic follow-up done now: what it found, or why it could not be done."""

    record: FollowUpRecord
    finding: Finding | None = None
    error: str | None = None


def due(
    store: Store, *, now: datetime, env: str | None = None, early: bool = False
) -> list[FollowUpRecord]:
    """The open automatic follow-ups due by ``now`` (``early``: all of them, due or not)."""
    found = store.follow_ups(env=env, status=OPEN, due_by=None if early else now)
    return [r for r in found if r.activity in AUTOMATIC]


def run_due(
    runbook: Runbook, store: Store, *, now: datetime, env: str | None = None, early: bool = False
) -> list[Done]:
    """Do every open automatic follow-up due by ``now``, recording each result as it comes."""
    done = []
    for record in due(store, now=now, env=env, early=early):
        action = AUTOMATIC[record.activity]
        try:
            finding = perform(runbook, store, record, now)
        except RolloutError as exc:
            failed = {"action": action.value, "error": exc.message}
            store.finish_follow_up(record.id, result=failed, status="failed", done_at=now)
            done.append(Done(record, error=exc.message))
            continue
        if store.finish_follow_up(record.id, result=finding.to_json(action.value), done_at=now):
            done.append(Done(record, finding))
    return done


def perform(runbook: Runbook, store: Store, record: FollowUpRecord, now: datetime) -> Finding:
    """What ``record``'s automatic action finds about the time it is due (now, when early)."""
    from rollout.followups import evidence

    deployment = store.deployment(record.deployment_id)
    until = min(now, record.due_at)
    action = AUTOMATIC[record.activity]
    if action is Action.KPI_SNAPSHOT:
        from rollout.followups.kpi_snapshot import snapshot

        return snapshot(runbook, store, deployment.env, until)
    health = evidence.health_path(runbook)
    before, after = evidence.spans(store, deployment, until)
    seen_after = evidence.collect(store, deployment.env, after, health)
    if action is Action.ERROR_REVIEW:
        from rollout.followups.error_review import review

        return review(seen_after, runbook.kpi.targets.error_rate)
    from rollout.followups.performance import analyse

    return analyse(evidence.collect(store, deployment.env, before, health), seen_after)


def mark_done(store: Store, follow_up_id: int, *, note: str, by: str, now: datetime) -> bool:
    """A person did a follow-up; False when it was done already."""
    try:
        store.follow_up(follow_up_id)
    except StoreError as exc:
        raise BadInput(
            f"no follow-up {follow_up_id}", hint="`rollout followups` lists them with their ids"
        ) from exc
    changed = store.finish_follow_up(
        follow_up_id, result={"by": by, "note": note}, status="done", done_at=now
    )
    if changed:
        store.append_audit(
            actor=by,
            action="followup.done",
            subject=f"follow-up:{follow_up_id}",
            details={"note": note},
            at=now,
        )
    return changed


async def announce(runbook: Runbook, done: list[Done]) -> list[Failure]:
    """Tell #deployments what the automatic follow-ups found; a warning when one needs a look."""
    notifier = Notifier.for_runbook(runbook)
    if not done or not notifier.configured:
        return []
    lines = [
        f"#{d.record.id} {d.record.activity} ({d.record.env} {d.record.tag}): "
        + (f"{d.finding.verdict}: {d.finding.summary}" if d.finding else f"failed: {d.error}")
        for d in done
    ]
    look = any(d.finding is None or d.finding.needs_attention for d in done)
    message = Message(
        title=f"{runbook.app}: {len(done)} follow-up{'s' if len(done) > 1 else ''} done",
        body="\n".join(lines),
        channels=(Channel.DEPLOYMENTS,),
        level=Level.WARNING if look else Level.INFO,
    )
    return await notifier.send(message)
