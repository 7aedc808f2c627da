"""The one exception tree of rollout.

Every error a user can meet is a ``RolloutError``; third-party errors (asyncssh, httpx,
SQLAlchemy, psycopg, PyYAML, pydantic) are translated where they enter, with ``raise ... from
exc``, so callers never catch a library's exception. Each class carries the process exit code
the CLI maps it to (DESIGN.md: 0 ok, 1 a check or gate failed, 2 bad input, 3 infrastructure).

    RolloutError
    ├── BadInput                   exit 2   what, where, how to fix
    │   ├── ConfigError                     every problem of one rollout.yml at once
    │   └── BadTag                          a release tag that does not match release.tag_pattern
    ├── GateFailed                 exit 1   a check, gate or verification said no
    │   ├── DeployFailed                    a step failed; the hosts were put back
    │   ├── NotHealthy                      an app did not answer healthy in time
    │   ├── RollbackRefused                 the rollback target is not present everywhere
    │   ├── BackupBad                       a backup failed verification: do not restore it
    │   └── MigrationFailed                 a migration's SQL failed (database/migrate.py)
    └── InfrastructureError        exit 3   something outside rollout stopped it
        ├── LockHeld                        another deployment holds the environment's lock
        ├── HostError                       a host could not be reached or a command failed
        │   └── CommandFailed               a command ran and exited non-zero
        ├── StoreError                      the records could not be read or written
        ├── DatabaseError                   the app's database or its tools could not do the work
        └── MigrationBlocked                a migration waited for locks past every retry
                                            (database/migrate.py: both carry their steps)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class RolloutError(Exception):
    """Base of every error rollout raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class BadInput(RolloutError):
    """The user asked for something rollout cannot do as asked."""

    exit_code = 2


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file: where it is and what is wrong."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(BadInput):
    """A rollout.yml that cannot be used; carries every issue found, not only the first."""

    def __init__(self, issues: Sequence[ConfigIssue], *, hint: str | None = None) -> None:
        self.issues = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues), hint=hint)


class BadTag(BadInput):
    """A release tag refused before any host is touched."""


class GateFailed(RolloutError):
    """A check, gate or verification failed."""

    exit_code = 1


class DeployFailed(GateFailed):
    """A deployment step failed; hosts already switched were rolled back."""


class NotHealthy(GateFailed):
    """An app did not become healthy before its deadline (the app's fault, not the network's)."""

    def __init__(self, host: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{host}: {message}", hint=hint)
        self.host = host


class RollbackRefused(GateFailed):
    """A rollback target is missing on at least one host; nothing was touched."""


class BackupBad(GateFailed):
    """A backup's bytes, archive or restored content do not match what its manifest claims."""


class InfrastructureError(RolloutError):
    """Something outside rollout (a host, the store, a lock) stopped the work."""

    exit_code = 3


class LockHeld(InfrastructureError):
    """The deploy lock of an environment is held by someone else."""


class HostError(InfrastructureError):
    """A host could not be reached, or a file could not be moved to or from it."""

    def __init__(self, host: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{host}: {message}", hint=hint)
        self.host = host


class CommandFailed(HostError):
    """A command ran on a host and exited non-zero."""

    def __init__(self, host: str, command: str, exit_status: int, output: str) -> None:
        tail = output.strip()[-2000:]
        detail = f"\n{tail}" if tail else ""
        super().__init__(host, f"`{command}` exited {exit_status}{detail}")
        self.command = command
        self.exit_status = exit_status
        self.output = output


class StoreError(InfrastructureError):
    """rollout's own records could not be read or written."""


class DatabaseError(InfrastructureError):
    """The app's database could not be reached, or pg_dump/pg_restore could not finish."""
