"""Taking a backup: one consistent snapshot, its fingerprints, the dump, a manifest, atomically.

The database writes its consistent copy and the fingerprints of exactly that copy's content
(see ``Database.snapshot``: PostgreSQL counts and hashes the tables in the dump's own exported
snapshot; SQLite fingerprints the copy its online backup API made). Everything is written into
a hidden folder, fsynced, and renamed into place last: a folder without the ``.partial-``
prefix is always a complete backup.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rollout.database.base import Database
from rollout.database.manifest import MANIFEST, Manifest, fsync_dir, write_durably


@dataclass(frozen=True)
class BackupTaken:
    folder: Path
    manifest: Manifest
    seconds: float


def backup_name(env: str, kind: str, at: datetime) -> str:
    return f"{env}-{at:%Y%m%dT%H%M%S}{at.microsecond:06d}Z-{kind}"


def take_backup(
    database: Database,
    root: Path,
    *,
    app: str,
    env: str,
    kind: str,
    compression: int | None = None,
) -> BackupTaken:
    started = time.monotonic()
    root.mkdir(parents=True, exist_ok=True)
    name = backup_name(env, kind, datetime.now(UTC))
    partial = root / f".partial-{name}"
    partial.mkdir()
    try:
        snapshot = database.snapshot(partial, compression=compression)
        manifest = Manifest(
            app=app,
            env=env,
            kind=kind,
            engine=database.engine,
            database=database.name,
            identity=snapshot.identity,
            server_version=snapshot.server_version,
            tool_version=snapshot.tool_version,
            started_at=snapshot.point_in_time.isoformat(),
            finished_at=datetime.now(UTC).isoformat(),
            position=snapshot.position,
            fingerprint=snapshot.fingerprint,
            files=snapshot.files,
            notes=snapshot.notes,
        )
        write_durably(partial / MANIFEST, manifest.to_json())
        final = root / name
        partial.rename(final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)  # never a half backup that looks whole
        raise
    written = Manifest.from_json((final / MANIFEST).read_text(), name)
    return BackupTaken(final, written, time.monotonic() - started)
