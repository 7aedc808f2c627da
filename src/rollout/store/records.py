"""The records the store hands back: frozen values, detached from any database connection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rollout.model import CheckStatus, Kind, Outcome, StepStatus


def _span(start: datetime, end: datetime | None) -> timedelta | None:
    return None if end is None else end - start


@dataclass(frozen=True)
class DeploymentRecord:
    id: int
    app: str
    env: str
    kind: Kind
    tag: str
    previous_tag: str | None
    commit_sha: str | None
    committed_at: datetime | None
    merged_at: datetime | None
    actor: str
    roles: tuple[str, ...]
    status: Outcome
    started_at: datetime
    finished_at: datetime | None
    reason: str | None
    failed_host: str | None
    failed_step: str | None
    rollback_of: int | None

    @property
    def duration(self) -> timedelta | None:
        """How long it ran; None while it is still running."""
        return _span(self.started_at, self.finished_at)


def deployment_summary(r: DeploymentRecord) -> dict[str, Any]:
    """A deployment as `rollout history --json` prints it and the dashboard's API serves it."""
    return {
        "id": r.id,
        "env": r.env,
        "kind": r.kind,
        "tag": r.tag,
        "previous_tag": r.previous_tag,
        "commit_sha": r.commit_sha,
        "status": r.status,
        "actor": r.actor,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "seconds": None if r.duration is None else round(r.duration.total_seconds(), 3),
        "reason": r.reason,
        "failed_host": r.failed_host,
        "failed_step": r.failed_step,
    }


@dataclass(frozen=True)
class ChangeRecord:
    """A change (commit) a deployment shipped: when it was written, and when it was merged."""

    id: int
    deployment_id: int
    env: str
    sha: str
    committed_at: datetime
    merged_at: datetime | None


@dataclass(frozen=True)
class StepRecord:
    id: int
    deployment_id: int
    phase: str
    name: str
    host: str | None
    status: StepStatus
    started_at: datetime
    finished_at: datetime | None
    output: str

    @property
    def duration(self) -> timedelta | None:
        return _span(self.started_at, self.finished_at)


@dataclass(frozen=True)
class CheckRecord:
    id: int
    deployment_id: int | None
    env: str
    phase: str
    check_id: str
    host: str | None
    status: CheckStatus
    value: str
    threshold: str
    evidence: str
    remedy: str
    recorded_at: datetime


@dataclass(frozen=True)
class ApprovalRecord:
    id: int
    env: str
    tag: str
    person: str
    role: str
    note: str
    kind: str
    approved_at: datetime


@dataclass(frozen=True)
class LockInfo:
    """Who holds an environment's deploy lock; ``token`` proves it when releasing."""

    env: str
    holder: str
    machine: str
    pid: int
    token: str
    tag: str | None
    message: str
    acquired_at: datetime


@dataclass(frozen=True)
class BackupRecord:
    """A backup of the app's database as recorded when it was taken."""

    id: int
    env: str
    kind: str
    deployment_id: int | None
    folder: str
    database: str
    dump_sha256: str
    size: int
    point_in_time: datetime
    taken_at: datetime
    seconds: float
    manifest: str
    pruned_at: datetime | None
    verified_level: int  # the highest level a check found it verified at (0: never)


@dataclass(frozen=True)
class BackupCheckRecord:
    id: int
    backup_id: int | None
    dump_sha256: str
    level: int
    status: str
    detail: str
    checked_at: datetime
    seconds: float


@dataclass(frozen=True)
class IncidentRecord:
    """An incident and its timeline, as the runbook's levels classified it."""

    id: int
    deployment_id: int | None
    env: str
    level: int
    title: str
    symptoms: str  # the measurements that made it, with their thresholds
    status: str  # open, mitigated, resolved
    impact_start: datetime | None
    detected_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    mitigated_at: datetime | None
    resolved_at: datetime | None
    action: str | None


@dataclass(frozen=True)
class SampleRecord:
    id: int
    deployment_id: int | None
    env: str
    metric: str
    host: str | None
    source: str
    at: datetime
    value: float | None
    ok: bool | None
    labels: dict[str, str]


@dataclass(frozen=True)
class FollowUpRecord:
    """A post-deployment activity: due some time after its deployment, open until done.

    ``result`` is what doing it found: a person's note, or an automatic action's JSON.
    ``env`` and ``tag`` are its deployment's, for listing without a second read.
    """

    id: int
    deployment_id: int
    env: str
    tag: str
    activity: str
    owner: str | None
    due_at: datetime
    status: str  # pending, done, failed (an automatic attempt that errored; retried)
    done_at: datetime | None
    result: str | None
