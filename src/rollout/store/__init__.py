"""rollout's own records: deployments and their changes, steps, checks, approvals, locks and
the audit trail.

Open with ``open_store(url)``; the schema is migrated to the newest revision on open.
"""

from rollout.store.audit import AuditEntry, AuditReport
from rollout.store.records import (
    ApprovalRecord,
    ChangeRecord,
    CheckRecord,
    DeploymentRecord,
    FollowUpRecord,
    LockInfo,
    StepRecord,
)
from rollout.store.repository import OUTPUT_LIMIT, Redacts, Store, open_store

__all__ = [
    "OUTPUT_LIMIT",
    "ApprovalRecord",
    "AuditEntry",
    "AuditReport",
    "ChangeRecord",
    "CheckRecord",
    "DeploymentRecord",
    "FollowUpRecord",
    "LockInfo",
    "Redacts",
    "StepRecord",
    "Store",
    "open_store",
]
