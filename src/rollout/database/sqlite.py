"""``Database`` for SQLite: the online backup API, integrity_check, files swapped by rename.

SQLite's backup API copies a live database page by page into a consistent snapshot, even while
the app writes (it restarts on a change, or finishes under a read lock). The copy *is* the dump,
so the fingerprints are taken from the copy itself: they describe exactly what a restore brings
back. L2 is ``PRAGMA integrity_check`` plus reading every row; L3 restores into a scratch file.
A restore checkpoints the live file's WAL, then renames: live -> kept, restored -> live.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from rollout.database.base import RestoreFailed, Snapshot, Staged
from rollout.database.manifest import (
    Fingerprint,
    Manifest,
    TableFingerprint,
    file_entry,
    fsync_dir,
)
from rollout.errors import BackupBad, BadInput, DatabaseError

COPY = "db.sqlite"
HASH_LIMIT = 64 * 1024 * 1024  # a file bigger than this gets row counts, not content hashes


class SqliteDatabase:
    engine = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def from_url(cls, url: str, config_dir: Path) -> SqliteDatabase:
        """``sqlite:///relative/file.db`` (from the runbook's folder) or ``sqlite:////abs.db``."""
        match = re.fullmatch(r"sqlite(\+\w+)?:///(.+)", url)
        if match is None:
            raise BadInput(
                f"database.url {url!r} is not an SQLite file URL", hint="sqlite:///app.db"
            )
        path = Path(match.group(2))
        return cls((path if path.is_absolute() else config_dir / path).resolve())

    @property
    def name(self) -> str:
        return self.path.name

    def identity(self) -> str:
        return f"sqlite:{self.path}"

    def snapshot(self, folder: Path, *, compression: int | None) -> Snapshot:
        if not self.path.is_file():
            raise DatabaseError(f"SQLite database {self.path} does not exist")
        copy = folder / COPY
        try:
            with _connect(self.path, read_only=True) as source, _connect(copy) as target:
                point_in_time = datetime.now(UTC)
                source.backup(target)
                found = fingerprint(target, hash_all=self.path.stat().st_size <= HASH_LIMIT)
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot back up {self.path}: {exc}") from exc
        with copy.open("rb+") as f:
            os.fsync(f.fileno())
        return Snapshot(
            files=(file_entry(copy),),
            fingerprint=found,
            point_in_time=point_in_time,
            position=None,
            identity=self.identity(),
            server_version=sqlite3.sqlite_version,
            tool_version=sqlite3.sqlite_version,
            notes=(f"{COPY}: a consistent copy made with SQLite's online backup API",),
        )

    def check_tools(self, manifest: Manifest) -> None:
        """SQLite reads files of every older version; nothing to refuse."""

    def read_archive(self, folder: Path, manifest: Manifest) -> None:
        path = folder / manifest.dump.name
        try:
            with _connect(path, read_only=True) as conn:
                verdict = conn.execute("PRAGMA integrity_check").fetchall()
                if verdict != [("ok",)]:
                    raise RestoreFailed(
                        f"integrity_check: {'; '.join(str(r[0]) for r in verdict[:5])}"
                    )
                for table in _tables(conn):
                    for _ in conn.execute(f'SELECT * FROM "{table}"'):
                        pass
        except sqlite3.DatabaseError as exc:
            raise RestoreFailed(f"{path.name} cannot be read: {exc}") from exc

    def restore_compare(
        self, folder: Path, manifest: Manifest, sanity_queries: tuple[str, ...]
    ) -> list[str]:
        with tempfile.TemporaryDirectory(prefix="rollout-verify-") as scratch:
            copy = Path(scratch) / "scratch.db"
            if copy.resolve() == self.path:  # by construction it cannot be
                raise BadInput(f"the scratch file {copy} is the live database")
            shutil.copyfile(folder / manifest.dump.name, copy)
            with _connect(copy) as conn:
                problems = manifest.fingerprint.differences(fingerprint(conn, hash_all=True))
                problems += _sanity(conn, sanity_queries)
        return problems

    def stage(self, folder: Path, manifest: Manifest) -> Staged:
        stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
        restored = self.path.with_name(f"{self.path.name}.restore-{stamp}")
        kept = self.path.with_name(f"{self.path.name}.prerestore-{stamp}")
        staged = Staged(manifest, str(self.path), str(restored), str(kept))
        shutil.copyfile(folder / manifest.dump.name, restored)
        try:
            with _connect(restored) as conn:
                problems = manifest.fingerprint.differences(fingerprint(conn, hash_all=True))
            with restored.open("rb+") as f:
                os.fsync(f.fileno())
        except BaseException:
            restored.unlink(missing_ok=True)
            raise
        if problems:
            restored.unlink(missing_ok=True)
            raise BackupBad(
                f"the restored copy does not match {folder.name}: {'; '.join(problems)}",
                hint="the live database was not touched",
            )
        return staged

    def discard(self, staged: Staged) -> None:
        Path(staged.restored).unlink(missing_ok=True)

    def swap(self, staged: Staged) -> None:
        self._checkpoint()
        _move(Path(staged.live), Path(staged.kept))
        os.replace(staged.restored, staged.live)
        fsync_dir(self.path.parent)

    def swap_back(self, staged: Staged) -> None:
        self._checkpoint()
        _move(Path(staged.live), Path(staged.restored))
        _move(Path(staged.kept), Path(staged.live))
        fsync_dir(self.path.parent)

    def _checkpoint(self) -> None:
        """Fold the WAL into the file, so renaming the file moves every committed write."""
        with _connect(self.path) as conn:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def fingerprint(conn: sqlite3.Connection, *, hash_all: bool) -> Fingerprint:
    schema = conn.execute(
        "SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master"
        " WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name"
    ).fetchall()
    tables = []
    for table in _tables(conn):
        rows = 0
        hashes = []
        for row in conn.execute(f'SELECT * FROM "{table}"'):
            rows += 1
            if hash_all:
                hashes.append(hashlib.md5(repr(row).encode(), usedforsecurity=False).hexdigest())
        digest = hashlib.md5("".join(sorted(hashes)).encode(), usedforsecurity=False).hexdigest()
        tables.append(TableFingerprint(f"main.{table}", rows, digest if hash_all else None))
    head = None
    if "alembic_version" in _tables(conn):
        versions = sorted(r[0] for r in conn.execute("SELECT version_num FROM alembic_version"))
        head = ",".join(versions) or None
    schema_hash = hashlib.sha256(repr(schema).encode()).hexdigest()
    return Fingerprint(schema_hash, head, tuple(tables))


def _tables(conn: sqlite3.Connection) -> list[str]:
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
    )
    return [r[0] for r in rows]


def _sanity(conn: sqlite3.Connection, queries: tuple[str, ...]) -> list[str]:
    problems = []
    for query in queries:
        try:
            row = conn.execute(query).fetchone()
        except sqlite3.Error as exc:
            problems.append(f"sanity query {query!r} failed: {exc}")
            continue
        if row is None or not row[0]:
            problems.append(f"sanity query {query!r} is not true on the restored copy")
    return problems


@contextlib.contextmanager
def _connect(path: Path, *, read_only: bool = False) -> Iterator[sqlite3.Connection]:
    uri = f"file:{path}?mode=ro" if read_only else f"file:{path}"
    conn = sqlite3.connect(uri, uri=True, timeout=30)
    try:
        yield conn
        conn.commit()
    finally:
        conn.close()


def _move(source: Path, target: Path) -> None:
    """Rename a database file with its -wal and -shm companions, if any."""
    for suffix in ("-wal", "-shm"):
        companion = source.with_name(source.name + suffix)
        if companion.exists():
            os.replace(companion, target.with_name(target.name + suffix))
    os.replace(source, target)
