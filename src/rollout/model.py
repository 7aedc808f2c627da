"""Value types shared by the engine, the store, the checks and the shells.

They are plain frozen dataclasses and enums: no I/O, no behaviour beyond validation, so any
layer can build, compare, print and store them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum

from rollout.errors import BadTag

# A tag becomes part of file names and remote commands: whatever the configured pattern says,
# it must also be a plain name. This is checked in addition to the pattern, never instead.
_SAFE_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


# The metric of the monitoring window's timed `SELECT 1` (monitor.sources.DatabaseSource), which
# the database query time KPI (kpi.queries) is computed from.
DB_QUERY_METRIC = "db_query_seconds"
# Audit actions of a database rollback (subject "deployment:ID"), naming the backup restored:
# the record of which backup a rollback put back, and of its undoing.
DB_RESTORED = "database.restored"
DB_RESTORE_UNDONE = "database.restore_undone"


def utcnow() -> datetime:
    """The current time, in UTC and aware: every time rollout stores carries its zone."""
    return datetime.now(UTC)


class Phase(StrEnum):
    """The phases of one deployment, in the order the runbook runs them."""

    READINESS = "readiness"
    PREFLIGHT = "preflight"
    BACKUP = "backup"
    DEPLOY = "deploy"
    VERIFY = "verify"
    MONITOR = "monitor"
    ROLLBACK = "rollback"
    FINALIZE = "finalize"


class Outcome(StrEnum):
    """How a deployment (or a rollback run as one) ended."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # stopped before any host changed, or could not be put back
    ROLLED_BACK = "rolled_back"  # switched, then put back on the previous release
    ABORTED = "aborted"  # interrupted by the operator (Ctrl-C)


class StepStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"


class CheckStatus(StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


class Kind(StrEnum):
    """What a deployment record stands for."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Release:
    """A release tag that has been checked against the runbook's pattern."""

    tag: str

    @classmethod
    def parse(cls, tag: str, pattern: str) -> Release:
        """Return the release for ``tag`` or raise ``BadTag`` saying why and how to fix it."""
        if not tag:
            raise BadTag("release tag is empty", hint=f"give a tag matching {pattern!r}")
        if re.fullmatch(pattern, tag) is None:
            raise BadTag(
                f"release tag {tag!r} does not match release.tag_pattern {pattern!r}",
                hint="tags look like v2024.01.15-a1b2c3d; fix the tag or the pattern in rollout.yml",
            )
        if _SAFE_TAG.fullmatch(tag) is None:
            raise BadTag(
                f"release tag {tag!r} contains characters that are unsafe in paths and commands",
                hint="use letters, digits, '.', '_', '+' and '-' only",
            )
        return cls(tag)

    def __str__(self) -> str:
        return self.tag


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict, with what it measured against what and how to fix a failure."""

    id: str
    status: CheckStatus
    value: str = ""
    threshold: str = ""
    evidence: str = ""
    remedy: str = ""
    host: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is CheckStatus.FAIL


@dataclass(frozen=True)
class HostState:
    """What a host says about its releases: the version files and what actually runs."""

    host: str
    current: str | None  # from the version file the runbook reads
    previous: str | None
    running: bool | None  # None when the runtime cannot tell (a service manager starts it)
    link: str | None = None  # the release `current` actually points at
    healthy: bool | None = None
    releases: tuple[str, ...] = field(default_factory=tuple)
