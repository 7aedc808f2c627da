"""The database API the CLI and the deploy call: backup, verify, list, prune, all on the record.

Each backup is recorded with its manifest; each verification with its level and outcome, keyed
by the dump's SHA-256, so a verification is never repeated for the same bytes (L1 proves they
are the same bytes) and the pre-flight freshness gate can ask for the newest *verified* backup.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from rollout.config import DatabaseConfig, Runbook
from rollout.database.backup import BackupTaken, take_backup
from rollout.database.base import Database, Staged, open_database
from rollout.database.verify import Verification, verify_backup
from rollout.errors import BadInput
from rollout.model import DB_RESTORE_UNDONE, DB_RESTORED, CheckResult, CheckStatus
from rollout.store import Store
from rollout.store.records import BackupRecord

if TYPE_CHECKING:
    from rollout.engine.runner import Runner


@dataclass(frozen=True)
class BackupDone:
    taken: BackupTaken
    verification: Verification | None
    backup_id: int


def database_of(runbook: Runbook, env: str) -> DatabaseConfig:
    database = runbook.environment(env).database
    if database is None:
        raise BadInput(
            f"environment {env} has no database",
            hint=f"add environments.{env}.database.url to rollout.yml",
        )
    return database


def app_database(runbook: Runbook, env: str) -> Database:
    return open_database(database_of(runbook, env).url, runbook.config_dir)


def backups_root(runbook: Runbook, env: str) -> Path:
    database = database_of(runbook, env)
    if database.via is not None:
        raise BadInput(
            f"environments.{env}.database.via: backups through a host are not supported yet",
            hint="give a database.url reachable from here and leave out `via`",
        )
    folder = Path(database.backups or f".rollout/backups/{env}").expanduser()
    return folder if folder.is_absolute() else runbook.config_dir / folder


def backup_and_verify(
    runbook: Runbook,
    store: Store,
    env: str,
    *,
    kind: str = "manual",
    deployment_id: int | None = None,
    level: int | None = None,
) -> BackupDone:
    """Take a backup of the env's database, record it, verify it (default: database.verify_level)."""
    database = database_of(runbook, env)
    taken = take_backup(
        app_database(runbook, env),
        backups_root(runbook, env),
        app=runbook.app,
        env=env,
        kind=kind,
        compression=database.compression,
    )
    manifest = taken.manifest
    backup_id = store.add_backup(
        env=env,
        kind=kind,
        deployment_id=deployment_id,
        folder=str(taken.folder),
        database=manifest.database,
        dump_sha256=manifest.dump.sha256,
        size=sum(f.size for f in manifest.files),
        point_in_time=datetime.fromisoformat(manifest.started_at),
        seconds=taken.seconds,
        manifest=manifest.to_json(),
    )
    chosen = database.verify_level if level is None else level
    verification = None
    if chosen > 0:
        verification = verify_recorded(runbook, store, env, taken.folder, chosen)
    return BackupDone(taken, verification, backup_id)


def verify_recorded(
    runbook: Runbook, store: Store, env: str | None, folder: Path, level: int
) -> Verification:
    """Verify ``folder`` and record each level's outcome under the dump's hash."""
    database = database_of(runbook, env) if env is not None else None
    record = store.backup_by_folder(str(folder))
    cached = record.verified_level if record is not None else 0
    result = verify_backup(
        folder,
        level,
        database=app_database(runbook, env) if env is not None else None,
        sanity_queries=tuple(database.sanity_queries) if database else (),
        cached_level=cached,
    )
    _record_checks(store, record, result)
    return result


def _record_checks(store: Store, record: BackupRecord | None, result: Verification) -> None:
    """Each level checked now, under the dump's hash (levels taken from the record are not)."""
    if result.manifest is None:
        return
    for check in result.levels:
        if not check.on_record:
            store.add_backup_check(
                backup_id=record.id if record is not None else None,
                dump_sha256=result.manifest.dump.sha256,
                level=check.level,
                status=check.status,
                detail=check.detail,
                seconds=check.seconds,
            )


def newest_verified(store: Store, env: str, level: int) -> BackupRecord | None:
    for record in store.backups(env=env):
        if record.verified_level >= level:
            return record
    return None


def resolve_backup(runbook: Runbook, store: Store, env: str | None, name: str) -> Path:
    """A backup named by its folder (absolute, relative, or a name in the env's backups folder)."""
    path = Path(name).expanduser()
    candidates = [path] if path.is_absolute() else [Path.cwd() / path, runbook.config_dir / path]
    if env is not None and not path.is_absolute():
        candidates.append(backups_root(runbook, env) / path)
    for candidate in candidates:
        if candidate.is_dir():
            return candidate.resolve()
    raise BadInput(f"no backup named {name}", hint="see `rollout db list ENV`")


def prune(
    runbook: Runbook, store: Store, env: str, *, now: datetime | None = None
) -> list[BackupRecord]:
    """Remove backups past database.keep or older than database.max_age; never the newest
    verified one, and never one that is the only verified backup of a recent deployment."""
    import shutil

    database = database_of(runbook, env)
    now = now or datetime.now(UTC)
    records = store.backups(env=env)
    keep_newest = newest_verified(store, env, 1)
    removed = []
    for index, record in enumerate(records):
        too_many = index >= database.keep
        too_old = database.max_age is not None and now - record.taken_at > database.max_age
        if not (too_many or too_old) or (keep_newest is not None and record.id == keep_newest.id):
            continue
        shutil.rmtree(record.folder, ignore_errors=True)
        store.mark_backup_pruned(record.id)
        removed.append(record)
    return removed


def age(record: BackupRecord, now: datetime | None = None) -> timedelta:
    return (now or datetime.now(UTC)) - record.point_in_time


def pre_deploy_backup(runbook: Runbook, store: Store, env: str, deployment_id: int) -> str:
    """The deploy's backup phase: a backup verified to database.verify_level, or the deploy stops."""
    from rollout.errors import BackupBad, DatabaseError

    done = backup_and_verify(runbook, store, env, kind="pre-deploy", deployment_id=deployment_id)
    manifest = done.taken.manifest
    rows = sum(t.rows for t in manifest.fingerprint.tables)
    what = (
        f"{done.taken.folder.name}: {len(manifest.fingerprint.tables)} tables, {rows} rows,"
        f" point in time {manifest.started_at}"
    )
    result = done.verification
    if result is None:
        return f"{what}; not verified (database.verify_level: 0)"
    timings = ", ".join(f"L{c.level} {c.seconds:.2f} s" for c in result.levels)
    if result.status == "bad":
        raise BackupBad(
            f"the pre-deploy backup is bad: {result.summary}", hint="nothing was changed"
        )
    if result.status != "verified":
        raise DatabaseError(f"the pre-deploy backup could not be verified: {result.summary}")
    return f"{what}; {result.summary} ({timings})"


def recorded_freshness(
    store: Store, env: str, max_age: timedelta, level: int
) -> CheckResult | None:
    """The pre-flight backup gate from the records; None when nothing is recorded for ``env``."""
    records = store.backups(env=env)
    if not records:
        return None
    threshold = f"verified at L{level}, newer than {max_age}"
    newest = newest_verified(store, env, level)
    if newest is None:
        return CheckResult(
            "backup",
            CheckStatus.FAIL,
            f"none verified at L{level}",
            threshold,
            f"{len(records)} backup(s) on record, none verified to L{level}",
            f"run: rollout db backup {env} --level {level}",
        )
    old = age(newest)
    ok = old <= max_age
    return CheckResult(
        "backup",
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        f"{old.total_seconds() / 3600:.1f} h old, L{newest.verified_level}",
        threshold,
        f"newest verified: {Path(newest.folder).name}",
        "" if ok else f"the newest verified backup is too old: rollout db backup {env}",
    )


def check_restorable(runbook: Runbook, store: Store, env: str, folder: Path) -> Verification:
    """Before anything stops: L1 and L2 now, L3 on record (or now), and this very database."""
    from rollout.database import restore

    record = store.backup_by_folder(str(folder))
    result = restore.check(
        app_database(runbook, env), folder, recorded_level=record.verified_level if record else 0
    )
    _record_checks(store, record, result)
    return result


def restore_action(
    runbook: Runbook, store: Store, env: str, folder: Path, runner: Runner, actor: str
) -> Callable[[], Awaitable[str]]:
    """The rollback's db-restore step: safety backup, stage, swap; the swap is undone when a
    later step fails (the runner runs ``runner.undo`` before it puts the hosts back). The swap
    and its undoing are audit entries naming the backup, so the record says which backup a
    rollback restored, not only the step's text."""
    from rollout.database import restore
    from rollout.database.manifest import read_manifest
    from rollout.engine.events import Note
    from rollout.errors import BackupBad

    database = app_database(runbook, env)

    def before_swap() -> tuple[Path, Staged]:
        safety = backup_and_verify(
            runbook, store, env, kind="safety", deployment_id=runner.deployment_id, level=2
        )
        if safety.verification is None or safety.verification.status != "verified":
            summary = safety.verification.summary if safety.verification else "not verified"
            raise BackupBad(
                f"the safety backup of the live database failed: {summary}",
                hint="nothing was restored; the live database is as it was",
            )
        return safety.taken.folder, database.stage(folder, read_manifest(folder))

    async def act() -> str:
        safety, staged = await asyncio.to_thread(before_swap)
        try:
            await asyncio.to_thread(database.swap, staged)
        except BaseException:
            await asyncio.to_thread(database.discard, staged)
            raise

        subject = f"deployment:{runner.deployment_id}"
        restored = store.backup_by_folder(str(folder))
        details = {
            "env": env,
            "backup": str(folder),
            "backup_id": None if restored is None else restored.id,
            "safety_backup": str(safety),
        }

        async def swap_back() -> str:
            await asyncio.to_thread(database.swap_back, staged)
            await asyncio.to_thread(
                store.append_audit,
                actor=actor,
                action=DB_RESTORE_UNDONE,
                subject=subject,
                details=details,
            )
            return f"{staged.live} is the database it was before the restore again"

        runner.undo.append(swap_back)  # first: a failure to record must not keep the swap
        await asyncio.to_thread(
            store.append_audit, actor=actor, action=DB_RESTORED, subject=subject, details=details
        )
        kept = restore.Swapped(staged).kept_aside(safety)
        runner.events.emit(Note(message=kept))
        return kept

    return act
