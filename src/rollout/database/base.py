"""The ``Database`` protocol: what backup, verify and restore need from an app's database.

Two implementations: PostgreSQL (``postgres.py``: pg_dump of an exported snapshot, pg_restore,
databases swapped by rename) and SQLite (``sqlite.py``: the online backup API, integrity_check,
files swapped by rename), chosen by the URL's scheme.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from rollout.database.manifest import FileEntry, Fingerprint, Manifest
from rollout.errors import BadInput


class RestoreFailed(Exception):
    """The archive could not be read or applied: the backup's fault, not the server's."""


@dataclass(frozen=True)
class Snapshot:
    """What one consistent copy left in the backup folder, and what it holds."""

    files: tuple[FileEntry, ...]  # the dump first
    fingerprint: Fingerprint
    point_in_time: datetime
    position: str | None  # WAL LSN (PostgreSQL)
    identity: str
    server_version: str
    tool_version: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Staged:
    """A backup restored beside the live database, compared, not yet live."""

    manifest: Manifest
    live: str  # the live database's name (PostgreSQL) or file (SQLite)
    restored: str  # the restored copy, under a new name
    kept: str  # the name the live database will be kept under after the swap


class Database(Protocol):
    engine: str  # the manifest's `engine`

    @property
    def name(self) -> str: ...

    def identity(self) -> str:
        """What makes this database itself: a backup of another one is refused."""
        ...

    def snapshot(self, folder: Path, *, compression: int | None) -> Snapshot:
        """Copy the database consistently into ``folder`` and fingerprint that copy's content."""
        ...

    def check_tools(self, manifest: Manifest) -> None:
        """Refuse (BadInput) a backup the tools here cannot read."""
        ...

    def read_archive(self, folder: Path, manifest: Manifest) -> None:
        """L2: the archive is readable to its end (RestoreFailed otherwise)."""
        ...

    def restore_compare(
        self, folder: Path, manifest: Manifest, sanity_queries: tuple[str, ...]
    ) -> list[str]:
        """L3: restore into a scratch copy (never the live one), compare, run the sanity
        queries, remove the scratch copy; the differences, in words."""
        ...

    def stage(self, folder: Path, manifest: Manifest) -> Staged: ...

    def discard(self, staged: Staged) -> None: ...

    def swap(self, staged: Staged) -> None:
        """Live -> kept, restored -> live."""
        ...

    def swap_back(self, staged: Staged) -> None:
        """Live -> restored, kept -> live: the database as it was before ``swap``."""
        ...


def url_scheme(url: str) -> str:
    """``postgresql``, ``sqlite``, ...: the URL's scheme without a driver (``+psycopg``)."""
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def open_database(url: str, config_dir: Path) -> Database:
    """The database behind ``url``: postgresql://... or sqlite:///path (relative to the runbook)."""
    scheme = url_scheme(url)
    if scheme in ("postgresql", "postgres"):
        from rollout.database.postgres import PostgresDatabase

        return PostgresDatabase(url)
    if scheme == "sqlite":
        from rollout.database.sqlite import SqliteDatabase

        return SqliteDatabase.from_url(url, config_dir)
    raise BadInput(
        f"database.url: {scheme}:// databases are not supported",
        hint="use a postgresql:// or sqlite:/// URL",
    )


def archive_reader(manifest: Manifest) -> Database:
    """A database object able to read ``manifest``'s archive without reaching any server."""
    if manifest.engine == "sqlite":
        from rollout.database.sqlite import SqliteDatabase

        return SqliteDatabase(Path(manifest.identity.removeprefix("sqlite:")))
    from rollout.database.postgres import PostgresDatabase

    return PostgresDatabase(f"postgresql:///{manifest.database}")
