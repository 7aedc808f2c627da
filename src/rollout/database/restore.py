"""Restoring a verified backup over the live database without ever being without one.

The order is the safety (reference/db-safety.md 3.2):

1. ``check``: the backup verifies at L1 and L2 now and at L3 on record (or now), and it is a
   backup of *this* database (same system identifier and name). Nothing is touched yet.
2. (the caller stops the app: maintenance)
3. ``safety_backup``: the live database as it is now, verified, kept.
4. ``stage``: the backup restored into ``<db>__restore_<time>`` and compared with its manifest.
   A failure here drops only that new database: the live one was never touched.
5. ``swap``: live renamed to ``<db>__prerestore_<time>`` (kept, with every write since the
   backup's point in time) and the restored copy renamed to the live name, in one transaction.
   ``swap_back`` undoes it while the caller's next steps fail.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from rollout.database import postgres
from rollout.database.manifest import Manifest
from rollout.database.verify import Verification, verify_backup
from rollout.errors import BackupBad, BadInput


@dataclass(frozen=True)
class Staged:
    manifest: Manifest
    live: str
    restored: str  # the new database holding the backup's content, not yet live
    kept: str  # the name the live database will be kept under


@dataclass(frozen=True)
class Swapped:
    staged: Staged

    def kept_aside(self, safety: Path | None) -> str:
        m = self.staged.manifest
        where = f"database {self.staged.kept}"
        if safety is not None:
            where += f" and the safety backup {safety}"
        return (
            f"{self.staged.live} is back at {m.started_at} (WAL {m.position});"
            f" writes made after that point are kept aside in {where}"
        )


def check(server: postgres.Server, folder: Path, *, recorded_level: int) -> Verification:
    """L1 and L2 now, L3 on record or now; and the backup must be of this very database."""
    result = verify_backup(folder, 2, server=server)  # L1 and L2, now
    if result.status == "verified" and recorded_level < 3:
        result = verify_backup(folder, 3, server=server, cached_level=2)  # L3 was never done
    if result.status != "verified":
        raise BackupBad(
            f"{folder.name} cannot be restored: {result.summary}", hint="nothing was touched"
        )
    assert result.manifest is not None
    with server.connect() as conn:
        identity, _ = postgres.identity(conn)
    if result.manifest.identity != identity:
        raise BadInput(
            f"{folder.name} is a backup of {result.manifest.identity}, not of this database ({identity})",
            hint="restore a backup taken from this environment's database",
        )
    return result


def stage(server: postgres.Server, folder: Path, manifest: Manifest) -> Staged:
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    live = server.name
    staged = Staged(
        manifest, live, f"{live}__restore_{stamp}"[:63], f"{live}__prerestore_{stamp}"[:63]
    )
    if staged.restored == live or staged.kept == live:
        raise BadInput(f"the restore target {staged.restored} is the live database")
    with server.connect("postgres") as admin:
        postgres.create_database(admin, staged.restored, like=live)
        try:
            postgres.restore_into(server, staged.restored, folder / manifest.dump.name)
            with server.connect(staged.restored) as conn:
                problems = manifest.fingerprint.differences(postgres.fingerprint(conn))
        except BaseException:
            postgres.drop_database(admin, staged.restored)
            raise
        if problems:
            postgres.drop_database(admin, staged.restored)
            raise BackupBad(
                f"the restored copy does not match {folder.name}: {'; '.join(problems)}",
                hint="the live database was not touched",
            )
    return staged


def discard(server: postgres.Server, staged: Staged) -> None:
    with server.connect("postgres") as admin:
        postgres.drop_database(admin, staged.restored)


def swap(server: postgres.Server, staged: Staged) -> Swapped:
    """Live -> kept, restored -> live, atomically; sessions on live are ended first."""
    _rename_pair(server, staged.live, staged.kept, staged.restored, staged.live)
    return Swapped(staged)


def swap_back(server: postgres.Server, swapped: Swapped) -> None:
    s = swapped.staged
    _rename_pair(server, s.live, s.restored, s.kept, s.live)


def _rename_pair(server: postgres.Server, a: str, a_to: str, b: str, b_to: str) -> None:
    """Rename ``a`` to ``a_to`` and then ``b`` to ``b_to`` in one transaction.

    ``a`` refuses new connections first and its sessions are ended (ALTER DATABASE RENAME
    refuses while anyone is connected); on any failure it accepts connections again.
    """
    name = sql.Identifier
    with server.connect("postgres") as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS false").format(name(a)))
        try:
            _end_sessions(admin, a)
            with admin.transaction():
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(name(a), name(a_to)))
                admin.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(name(b), name(b_to)))
        finally:
            renamed = postgres.database_exists(admin, a_to)
            admin.execute(
                sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS true").format(
                    name(a_to if renamed else a)
                )
            )


def _end_sessions(admin: psycopg.Connection[Any], database: str, wait: float = 10.0) -> None:
    """Terminate every session on ``database`` and wait until they are gone."""
    deadline = time.monotonic() + wait
    while True:
        row = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()
        if row is None or row[0] == 0 or time.monotonic() > deadline:
            return
        time.sleep(0.05)
