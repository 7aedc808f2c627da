"""What a backup claims about itself, written beside its files as ``manifest.json``.

Everything a later check compares against is here: the database's identity, the tool versions,
the snapshot's time and WAL position, the migration head, a schema hash, per-table row counts
and content hashes taken *in the dump's own snapshot*, and the SHA-256 and size of every file.
The manifest carries a hash of itself, so an edited manifest is caught like an edited dump.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rollout.errors import BadInput

MANIFEST = "manifest.json"
FORMAT = 1
CHUNK = 1 << 20


@dataclass(frozen=True)
class TableFingerprint:
    name: str  # schema-qualified
    rows: int
    hash: str | None  # md5 over the rows' text, order-free; None for tables too big to hash


@dataclass(frozen=True)
class Fingerprint:
    """The state of a database that a restore must reproduce exactly."""

    schema_hash: str
    migration_head: str | None
    tables: tuple[TableFingerprint, ...]

    def differences(self, other: Fingerprint) -> list[str]:
        """What ``other`` (a restored copy) has that differs from this one, in words."""
        found = []
        if other.schema_hash != self.schema_hash:
            found.append("the schema differs (tables, columns or indexes)")
        if other.migration_head != self.migration_head:
            found.append(f"migration head {other.migration_head} != {self.migration_head}")
        mine = {t.name: t for t in self.tables}
        theirs = {t.name: t for t in other.tables}
        for name in sorted(mine.keys() - theirs.keys()):
            found.append(f"table {name} is missing")
        for name in sorted(theirs.keys() - mine.keys()):
            found.append(f"table {name} was not in the backup")
        for name in sorted(mine.keys() & theirs.keys()):
            a, b = mine[name], theirs[name]
            if a.rows != b.rows:
                found.append(f"{name}: {b.rows} rows, the backup had {a.rows}")
            elif a.hash is not None and b.hash is not None and a.hash != b.hash:
                found.append(f"{name}: same row count but different content")
        return found


@dataclass(frozen=True)
class FileEntry:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Manifest:
    app: str
    env: str
    kind: str  # pre-deploy, manual, safety
    engine: str  # postgresql or sqlite
    database: str  # the database's name (PostgreSQL) or file name (SQLite)
    identity: str  # PostgreSQL system_identifier + name; SQLite: the file's path
    server_version: str
    tool_version: str  # pg_dump's, or SQLite's library version
    started_at: str  # ISO 8601 UTC: the snapshot's time, the backup's point in time
    finished_at: str
    position: str | None  # WAL LSN at the snapshot (PostgreSQL)
    fingerprint: Fingerprint
    files: tuple[FileEntry, ...]
    notes: tuple[str, ...] = ()
    format: int = FORMAT
    self_sha256: str = field(default="", compare=False)

    @property
    def dump(self) -> FileEntry:
        return self.files[0]

    def to_json(self) -> str:
        body = asdict(self)
        body.pop("self_sha256")
        text = json.dumps(body, sort_keys=True, indent=2)
        return json.dumps(
            {**body, "self_sha256": hashlib.sha256(text.encode()).hexdigest()},
            sort_keys=True,
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str, where: str) -> Manifest:
        try:
            data: dict[str, Any] = json.loads(text)
            claimed = data.pop("self_sha256")
            actual = hashlib.sha256(json.dumps(data, sort_keys=True, indent=2).encode()).hexdigest()
            if claimed != actual:
                raise BadInput(
                    f"{where}: the manifest was changed after the backup was taken",
                    hint="a backup whose manifest does not match itself cannot be trusted",
                )
            fp = data.pop("fingerprint")
            tables = tuple(TableFingerprint(**t) for t in fp.pop("tables"))
            files = tuple(FileEntry(**f) for f in data.pop("files"))
            notes = tuple(data.pop("notes", ()))
            return cls(
                **data,
                fingerprint=Fingerprint(tables=tables, **fp),
                files=files,
                notes=notes,
                self_sha256=claimed,
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BadInput(f"{where}: not a rollout backup manifest ({exc})") from exc


def read_manifest(folder: Path) -> Manifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise BadInput(
            f"{folder} is not a backup: {MANIFEST} is missing",
            hint="name a folder written by `rollout db backup` (see `rollout db list ENV`)",
        )
    return Manifest.from_json(path.read_text(), str(path))


def file_entry(path: Path) -> FileEntry:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return FileEntry(path.name, digest.hexdigest(), size)


def write_durably(path: Path, text: str) -> None:
    """Write to a temporary name, fsync, rename: a crash leaves the old file or the new one."""
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    temp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
