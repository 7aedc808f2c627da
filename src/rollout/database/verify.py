"""Verifying a backup at three levels, each proving more than the one before.

L1  the bytes: every file's SHA-256 and size match the manifest (and the manifest itself).
    The only level that catches one flipped bit in an uncompressed dump.
L2  the archive: ``pg_restore --list`` parses the table of contents, then a full read to
    /dev/null decompresses every data block (``--list`` alone passes a truncated file).
L3  the content: restore into a scratch database (never the live one), compare the schema,
    the migration head, every table's row count and content hash with the manifest, run the
    runbook's sanity queries, drop the scratch database.

The outcome is ``verified`` only when every level asked for passed; ``bad`` when the backup
is at fault (exit 1: do not restore it); ``undecided`` when something else stopped the check
(exit 3: the server was down, the tools missing).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rollout.database.base import Database, RestoreFailed, archive_reader
from rollout.database.manifest import Manifest, file_entry, read_manifest
from rollout.errors import BadInput, DatabaseError, InfrastructureError

VERIFIED, BAD, UNDECIDED = "verified", "bad", "undecided"


@dataclass(frozen=True)
class LevelResult:
    level: int
    status: str
    detail: str
    seconds: float
    on_record: bool = False  # taken from an earlier verification of these very bytes


@dataclass
class Verification:
    folder: Path
    manifest: Manifest | None
    asked: int
    levels: list[LevelResult] = field(default_factory=list)

    @property
    def status(self) -> str:
        if any(r.status == BAD for r in self.levels):
            return BAD
        if self.reached >= self.asked:
            return VERIFIED
        return UNDECIDED

    @property
    def reached(self) -> int:
        """The highest level passed with every level below it passed too."""
        reached = 0
        for result in sorted(self.levels, key=lambda r: r.level):
            if result.status != VERIFIED or result.level != reached + 1:
                break
            reached = result.level
        return reached

    @property
    def exit_code(self) -> int:
        return {VERIFIED: 0, BAD: 1, UNDECIDED: 3}[self.status]

    @property
    def summary(self) -> str:
        if self.status == VERIFIED:
            return f"verified at L{self.reached}"
        failing = next((r for r in self.levels if r.status != VERIFIED), None)
        reason = failing.detail if failing else "not checked"
        return f"{self.status} at L{failing.level if failing else self.reached + 1}: {reason}"


def verify_backup(
    folder: Path,
    level: int,
    *,
    database: Database | None = None,
    sanity_queries: tuple[str, ...] = (),
    cached_level: int = 0,
) -> Verification:
    """Check ``folder`` up to ``level``; levels at or below ``cached_level`` (a verification on
    record for these very bytes, known from L1's hash) are not repeated."""
    if not 1 <= level <= 3:
        raise BadInput(f"verification level {level} does not exist", hint="use 1, 2 or 3")
    try:
        manifest = read_manifest(folder)
    except BadInput as exc:
        if not folder.is_dir():
            raise BadInput(f"no backup at {folder}", hint="see `rollout db list ENV`") from exc
        result = Verification(folder, None, level)
        result.levels.append(LevelResult(1, BAD, exc.message, 0.0))
        return result
    result = Verification(folder, manifest, level)
    result.levels.append(_timed(1, lambda: _level1(folder, manifest)))
    if result.status == BAD or level == 1:
        return result
    if cached_level >= level:
        for n in range(2, level + 1):
            result.levels.append(
                LevelResult(n, VERIFIED, "on record for these bytes", 0.0, on_record=True)
            )
        return result
    reader = database or archive_reader(manifest)  # L2 needs the tools, not the live database
    reader.check_tools(manifest)
    result.levels.append(_timed(2, lambda: _level2(folder, manifest, reader)))
    if result.status == BAD or level == 2:
        return result
    if database is None:
        no_target = "no database to restore next to: name the environment (--env)"
        result.levels.append(LevelResult(3, UNDECIDED, no_target, 0.0))
        return result
    result.levels.append(
        _timed(3, lambda: database.restore_compare(folder, manifest, sanity_queries))
    )
    return result


def _timed(level: int, check: Callable[[], list[str]]) -> LevelResult:
    started = time.monotonic()
    try:
        problems: list[str] = check()
    except RestoreFailed as exc:
        return LevelResult(level, BAD, str(exc), time.monotonic() - started)
    except (DatabaseError, InfrastructureError) as exc:
        return LevelResult(level, UNDECIDED, exc.message, time.monotonic() - started)
    status = BAD if problems else VERIFIED
    detail = "; ".join(problems) if problems else _passed[level]
    return LevelResult(level, status, detail, time.monotonic() - started)


_passed = {
    1: "every file matches its SHA-256 and size",
    2: "the archive lists and reads to the end",
    3: "restored into a scratch database: schema, migration head, rows and content match",
}


def _level1(folder: Path, manifest: Manifest) -> list[str]:
    problems = []
    for entry in manifest.files:
        path = folder / entry.name
        if not path.is_file():
            problems.append(f"{entry.name} is missing")
            continue
        actual = file_entry(path)
        if actual.size != entry.size:
            problems.append(f"{entry.name} is {actual.size} bytes, the manifest says {entry.size}")
        elif actual.sha256 != entry.sha256:
            problems.append(f"{entry.name}: SHA-256 differs from the manifest (the bytes changed)")
    return problems


def _level2(folder: Path, manifest: Manifest, database: Database) -> list[str]:
    database.read_archive(folder, manifest)
    return []
