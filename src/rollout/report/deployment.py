"""One deployment's records, gathered for its report (read-only, through the Store API).

What the store links to a deployment by id: its steps, checks, samples, incidents and the
backups it took; what is found by meaning: the sign-offs for its tag, later rollbacks of it,
and, for a database rollback, the backup it restored (the one whose point in time its
db-restore step reports: the store keeps no id for it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rollout.errors import BadInput, StoreError
from rollout.model import DB_RESTORED, Phase, StepStatus
from rollout.store import Store
from rollout.store.records import (
    ApprovalRecord,
    BackupRecord,
    CheckRecord,
    DeploymentRecord,
    IncidentRecord,
    SampleRecord,
    StepRecord,
)

_PHASE_ORDER = {phase.value: index for index, phase in enumerate(Phase)}


@dataclass(frozen=True)
class Stage:
    """One phase of the run: from its first step's start to its last step's end."""

    phase: str
    started_at: datetime
    finished_at: datetime | None
    steps: int
    failed: int

    @property
    def duration(self) -> timedelta | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


@dataclass(frozen=True)
class DeploymentFacts:
    deployment: DeploymentRecord
    steps: tuple[StepRecord, ...]
    checks: tuple[CheckRecord, ...]
    backups: tuple[BackupRecord, ...]  # taken by this run (pre-deploy, safety)
    restored: BackupRecord | None  # the backup a database rollback put back
    samples: tuple[SampleRecord, ...]
    incidents: tuple[IncidentRecord, ...]
    approvals: tuple[ApprovalRecord, ...]
    rolled_back_by: tuple[DeploymentRecord, ...]  # later rollbacks of this deployment
    rollback_of: DeploymentRecord | None

    @property
    def stages(self) -> tuple[Stage, ...]:
        return stages(self.steps)


def gather(store: Store, deployment_id: int) -> DeploymentFacts:
    try:
        d = store.deployment(deployment_id)
    except StoreError as exc:
        raise BadInput(
            f"no deployment with id {deployment_id} in the records",
            hint="`rollout history` lists the deployments and their ids",
        ) from exc
    steps = tuple(store.steps(d.id))
    later = store.deployments(env=d.env, since=d.started_at)
    return DeploymentFacts(
        deployment=d,
        steps=steps,
        checks=tuple(store.checks(d.id)),
        backups=tuple(store.backups(deployment_id=d.id, include_pruned=True)),
        restored=_restored(store, d, steps),
        samples=tuple(store.samples(env=d.env, deployment_id=d.id)),
        incidents=tuple(
            sorted(
                (i for i in store.incidents(env=d.env) if i.deployment_id == d.id),
                key=lambda i: (i.detected_at, i.id),
            )
        ),
        approvals=tuple(store.approvals(d.env, d.tag)),
        rolled_back_by=tuple(r for r in reversed(later) if r.rollback_of == d.id),
        rollback_of=None if d.rollback_of is None else store.deployment(d.rollback_of),
    )


def stages(steps: tuple[StepRecord, ...]) -> tuple[Stage, ...]:
    by_phase: dict[str, list[StepRecord]] = {}
    for step in steps:
        by_phase.setdefault(step.phase, []).append(step)
    found = []
    for phase, group in by_phase.items():
        ends = [s.finished_at for s in group]
        found.append(
            Stage(
                phase=phase,
                started_at=min(s.started_at for s in group),
                finished_at=None if None in ends else max(e for e in ends if e is not None),
                steps=len(group),
                failed=sum(s.status is StepStatus.FAILED for s in group),
            )
        )
    return tuple(sorted(found, key=lambda s: (_PHASE_ORDER.get(s.phase, 99), s.started_at)))


def _restored(
    store: Store, d: DeploymentRecord, steps: tuple[StepRecord, ...]
) -> BackupRecord | None:
    candidates = store.backups(env=d.env, include_pruned=True)
    recorded = store.audit_entries(subject=f"deployment:{d.id}", action=DB_RESTORED)
    if recorded:  # the restore's own audit entry names the backup
        backup_id = recorded[-1].details.get("backup_id")
        return next((b for b in candidates if b.id == backup_id), None)
    # Records from before the audit entry: the backup the step's output names.
    said = " ".join(s.output for s in steps if s.name == "db-restore")
    if not said:
        return None
    return next(
        (b for b in candidates if b.id not in _own(d, candidates) and _named(b, said)), None
    )


def _own(d: DeploymentRecord, backups: list[BackupRecord]) -> set[int]:
    return {b.id for b in backups if b.deployment_id == d.id}


def _named(backup: BackupRecord, said: str) -> bool:
    return backup.folder in said or backup.point_in_time.isoformat() in said
