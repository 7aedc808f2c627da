"""Taking a backup: one consistent snapshot, its fingerprints, the dump, a manifest, atomically.

PostgreSQL: a REPEATABLE READ transaction exports its snapshot; ``pg_dump --snapshot`` dumps
exactly that snapshot while this side counts and hashes every table *in the same snapshot* on
the exporting connection, so a restore can later be compared row for row with what the dump
holds, however much the app wrote meanwhile. The dump is hashed as it streams to disk (no
second read). Everything is written into a hidden folder, fsynced, and renamed into place
last: a folder without the ``.partial-`` prefix is always a complete backup.
"""

from __future__ import annotations

import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from rollout.database import postgres
from rollout.database.manifest import MANIFEST, Manifest, fsync_dir, write_durably
from rollout.errors import DatabaseError

DUMP = "db.dump"
GLOBALS = "globals.sql"


@dataclass(frozen=True)
class BackupTaken:
    folder: Path
    manifest: Manifest
    seconds: float


def backup_name(env: str, kind: str, at: datetime) -> str:
    return f"{env}-{at:%Y%m%dT%H%M%S}{at.microsecond:06d}Z-{kind}"


def take_backup(
    server: postgres.Server,
    root: Path,
    *,
    app: str,
    env: str,
    kind: str,
    compression: int | None = None,
    hash_limit: int = postgres.HASH_LIMIT,
) -> BackupTaken:
    started = time.monotonic()
    now = datetime.now(UTC)
    root.mkdir(parents=True, exist_ok=True)
    name = backup_name(env, kind, now)
    partial = root / f".partial-{name}"
    partial.mkdir()
    try:
        tool = postgres.tool_version("pg_dump")
        with server.connect(autocommit=False) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            conn.read_only = True
            row = conn.execute(
                "SELECT pg_export_snapshot(), pg_current_wal_lsn()::text, now()"
            ).fetchone()
            assert row is not None
            snapshot, lsn, point_in_time = str(row[0]), str(row[1]), row[2]
            identity, version = postgres.identity(conn)
            if postgres.major(tool) < postgres.major(version):
                raise DatabaseError(
                    f"pg_dump {tool} is older than the server ({version}) and cannot dump it",
                    hint="install the client tools of the server's major version or newer",
                )
            # The dump runs in its own process while this connection, which holds the snapshot
            # open for it, takes the fingerprints of the very same snapshot.
            with ThreadPoolExecutor(1) as pool:
                dumping = pool.submit(
                    postgres.dump, server, snapshot, partial / DUMP, compression=compression
                )
                try:
                    fingerprint = postgres.fingerprint(conn, hash_limit)
                finally:
                    dump = dumping.result()
            conn.rollback()
        files = [dump]
        notes = []
        try:
            files.append(postgres.dump_globals(server, partial / GLOBALS))
            notes.append("globals.sql: roles and tablespaces, without password hashes")
        except DatabaseError as exc:  # roles are the cluster's, not the app's: say so, go on
            (partial / GLOBALS).unlink(missing_ok=True)
            notes.append(f"globals not dumped: {exc.message}")
        manifest = Manifest(
            app=app,
            env=env,
            kind=kind,
            engine="postgresql",
            database=server.name,
            identity=identity,
            server_version=version,
            tool_version=tool,
            started_at=point_in_time.astimezone(UTC).isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            position=lsn,
            fingerprint=fingerprint,
            files=tuple(files),
            notes=tuple(notes),
        )
        write_durably(partial / MANIFEST, manifest.to_json())
        final = root / name
        partial.rename(final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # never a half backup that looks whole
        raise
    return BackupTaken(
        final, Manifest.from_json((final / MANIFEST).read_text(), name), time.monotonic() - started
    )
