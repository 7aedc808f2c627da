"""The Store: rollout's records, read and written through SQLAlchemy Core.

Every method is one short transaction. Writers on SQLite take the write lock up front (see
``connect._begin``); every text a caller hands in goes through the redactor before it is
written, so a secret that leaked into a command's output never reaches the database.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, overload

from sqlalchemy import Connection, Engine, Row, Table, delete, insert, select, text
from sqlalchemy import update as sql_update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import URL

from rollout.errors import LockHeld, StoreError
from rollout.model import CheckResult, CheckStatus, Kind, Outcome, StepStatus, utcnow
from rollout.store import audit as chain
from rollout.store import schema
from rollout.store.audit import AuditEntry, AuditReport
from rollout.store.connect import WRITE, create, migrate, parse_url, translated_errors
from rollout.store.records import (
    ApprovalRecord,
    BackupCheckRecord,
    BackupRecord,
    ChangeRecord,
    CheckRecord,
    DeploymentRecord,
    FollowUpRecord,
    IncidentRecord,
    LockInfo,
    SampleRecord,
    StepRecord,
)

if TYPE_CHECKING:
    from rollout.changes import Change
    from rollout.redact import Redactor

    # The real redactor must keep satisfying the protocol the store asks for.
    _conforms: type[Redacts] = Redactor

# Step output is an excerpt: the end of a failing command's output is what explains it.
OUTPUT_LIMIT = 4000
_ELLIPSIS = "[...]\n"


FOLLOW_UP_STATUSES = ("pending", "done", "failed")


class Redacts(Protocol):
    def redact(self, text: str) -> str: ...


class _NoRedaction:
    def redact(self, text: str) -> str:
        return text


def open_store(url: str, *, redactor: Redacts | None = None) -> Store:
    """Open (creating and migrating as needed) the store at an SQLAlchemy URL."""
    parsed = parse_url(url)
    engine = create(parsed)
    try:
        with translated_errors(parsed):
            migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return Store(engine, parsed, redactor or _NoRedaction())


class Store:
    """Deployments, steps, checks, approvals, locks and the audit trail of one database."""

    def __init__(self, engine: Engine, url: URL, redactor: Redacts) -> None:
        self._engine = engine
        self._url = url
        self._redactor = redactor

    @property
    def engine(self) -> Engine:
        """For read-only queries over the tables (KPIs, the dashboard)."""
        return self._engine

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- deployments -------------------------------------------------------------------------

    def create_deployment(
        self,
        *,
        app: str,
        env: str,
        kind: Kind,
        tag: str,
        previous_tag: str | None = None,
        actor: str,
        roles: Sequence[str] = (),
        commit_sha: str | None = None,
        committed_at: datetime | None = None,
        merged_at: datetime | None = None,
        reason: str | None = None,
        rollback_of: int | None = None,
        started_at: datetime | None = None,
    ) -> int:
        values = dict(
            app=app,
            env=env,
            kind=Kind(kind).value,
            tag=tag,
            previous_tag=previous_tag,
            actor=actor,
            roles=list(roles),
            commit_sha=commit_sha,
            committed_at=committed_at,
            merged_at=merged_at,
            status=Outcome.RUNNING.value,
            started_at=started_at or utcnow(),
            reason=self._redact(reason),
            rollback_of=rollback_of,
        )
        return self._insert(schema.deployments, values)

    def finish_deployment(
        self,
        deployment_id: int,
        *,
        status: Outcome,
        finished_at: datetime | None = None,
        reason: str | None = None,
        failed_host: str | None = None,
        failed_step: str | None = None,
    ) -> None:
        values = dict(
            status=Outcome(status).value,
            finished_at=finished_at or utcnow(),
            failed_host=failed_host,
            failed_step=failed_step,
        )
        if reason is not None:  # keep the reason given at the start (a rollback's "why")
            values["reason"] = self._redact(reason)
        self._update(schema.deployments, deployment_id, values)

    def set_previous_tag(self, deployment_id: int, tag: str | None) -> None:
        self._update(schema.deployments, deployment_id, {"previous_tag": tag})

    def deployment(self, deployment_id: int) -> DeploymentRecord:
        query = select(schema.deployments).where(schema.deployments.c.id == deployment_id)
        with self._reading() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise StoreError(f"no deployment with id {deployment_id}")
        return _deployment(row)

    def deployments(
        self,
        *,
        env: str | None = None,
        app: str | None = None,
        kind: Kind | None = None,
        since: datetime | None = None,
        status: Outcome | None = None,
        limit: int | None = None,
    ) -> list[DeploymentRecord]:
        """Deployments matching every filter given, newest first."""
        table = schema.deployments
        query = select(table).order_by(table.c.started_at.desc(), table.c.id.desc()).limit(limit)
        if env is not None:
            query = query.where(table.c.env == env)
        if app is not None:
            query = query.where(table.c.app == app)
        if kind is not None:
            query = query.where(table.c.kind == Kind(kind).value)
        if since is not None:
            query = query.where(table.c.started_at >= since)
        if status is not None:
            query = query.where(table.c.status == Outcome(status).value)
        with self._reading() as conn:
            return [_deployment(row) for row in conn.execute(query)]

    # -- the changes a deployment ships -------------------------------------------------------

    def add_changes(self, deployment_id: int, env: str, changes: Sequence[Change]) -> int:
        """Record the changes (commits) a deployment ships; how many were not recorded yet.

        A commit is recorded once per deployment (given twice, or again: the first stands).
        Recorded while the deployment runs, they count for lead times from its finish, as
        the database's triggers derive them (migration 0005).
        """
        d, c = schema.deployments, schema.changes
        with self._writing() as conn:
            row = conn.execute(select(d.c.env).where(d.c.id == deployment_id)).first()
            if row is None:
                raise StoreError(f"no deployment with id {deployment_id}")
            if row.env != env:
                raise StoreError(f"deployment {deployment_id} is of {row.env}, not of {env}")
            known = set(
                conn.execute(select(c.c.sha).where(c.c.deployment_id == deployment_id)).scalars()
            )
            rows = []
            for change in changes:
                if change.sha not in known:
                    known.add(change.sha)
                    rows.append(
                        dict(
                            deployment_id=deployment_id,
                            env=env,
                            sha=change.sha,
                            committed_at=change.committed_at,
                            merged_at=change.merged_at,
                        )
                    )
            if rows:
                conn.execute(insert(c), rows)
        return len(rows)

    def changes(self, deployment_id: int) -> list[ChangeRecord]:
        """The changes a deployment recorded, in the order given."""
        c = schema.changes
        query = select(c).where(c.c.deployment_id == deployment_id).order_by(c.c.id)
        with self._reading() as conn:
            return [ChangeRecord(**row._mapping) for row in conn.execute(query)]

    def last_commit(self, env: str) -> str | None:
        """The commit of the newest deploy of ``env`` that reached its hosts (succeeded or
        rolled back): where the next deploy's changes start (``git log LAST..NEXT``).

        None when there is none, or when it recorded no commit: what it shipped is unknown,
        and the next deploy then ships its own commit only rather than a guessed range.
        """
        d = schema.deployments
        query = (
            select(d.c.commit_sha)
            .where(
                d.c.env == env,
                d.c.kind == Kind.DEPLOY.value,
                d.c.status.in_([Outcome.SUCCEEDED.value, Outcome.ROLLED_BACK.value]),
            )
            .order_by(d.c.finished_at.desc(), d.c.id.desc())
            .limit(1)
        )
        with self._reading() as conn:
            sha: str | None = conn.execute(query).scalar()
        return sha

    # -- steps and checks --------------------------------------------------------------------

    def start_step(
        self,
        deployment_id: int,
        *,
        phase: str,
        name: str,
        host: str | None,
        started_at: datetime | None = None,
    ) -> int:
        values = dict(
            deployment_id=deployment_id,
            phase=phase,
            name=name,
            host=host,
            status=StepStatus.RUNNING.value,
            started_at=started_at or utcnow(),
            output="",
        )
        return self._insert(schema.steps, values)

    def finish_step(
        self,
        step_id: int,
        *,
        status: StepStatus,
        finished_at: datetime | None = None,
        output: str = "",
    ) -> None:
        # Redact before cutting: a cut could split a secret and leave half of it unrecognised.
        values = dict(
            status=StepStatus(status).value,
            finished_at=finished_at or utcnow(),
            output=_excerpt(self._redact(output)),
        )
        self._update(schema.steps, step_id, values)

    def steps(self, deployment_id: int) -> list[StepRecord]:
        table = schema.steps
        query = select(table).where(table.c.deployment_id == deployment_id).order_by(table.c.id)
        with self._reading() as conn:
            return [
                StepRecord(**{**row._mapping, "status": StepStatus(row.status)})
                for row in conn.execute(query)
            ]

    def record_check(
        self,
        result: CheckResult,
        *,
        env: str,
        phase: str,
        deployment_id: int | None = None,
        recorded_at: datetime | None = None,
    ) -> None:
        values = dict(
            deployment_id=deployment_id,
            env=env,
            phase=phase,
            check_id=result.id,
            host=result.host,
            status=CheckStatus(result.status).value,
            value=self._redact(result.value),
            threshold=self._redact(result.threshold),
            evidence=self._redact(result.evidence),
            remedy=self._redact(result.remedy),
            recorded_at=recorded_at or utcnow(),
        )
        self._insert(schema.check_results, values)

    def checks(self, deployment_id: int) -> list[CheckRecord]:
        table = schema.check_results
        query = select(table).where(table.c.deployment_id == deployment_id).order_by(table.c.id)
        with self._reading() as conn:
            return [
                CheckRecord(**{**row._mapping, "status": CheckStatus(row.status)})
                for row in conn.execute(query)
            ]

    # -- approvals ---------------------------------------------------------------------------

    def add_approval(
        self,
        *,
        env: str,
        tag: str,
        person: str,
        role: str,
        note: str = "",
        kind: str = "sign-off",
        approved_at: datetime | None = None,
    ) -> int:
        values = dict(
            env=env,
            tag=tag,
            person=person,
            role=role,
            note=self._redact(note),
            kind=kind,
            approved_at=approved_at or utcnow(),
        )
        return self._insert(schema.approvals, values)

    def approvals(self, env: str, tag: str) -> list[ApprovalRecord]:
        table = schema.approvals
        query = (
            select(table)
            .where(table.c.env == env, table.c.tag == tag)
            .order_by(table.c.approved_at, table.c.id)
        )
        with self._reading() as conn:
            return [ApprovalRecord(**row._mapping) for row in conn.execute(query)]

    # -- locks -------------------------------------------------------------------------------

    def acquire_lock(
        self,
        env: str,
        *,
        holder: str,
        machine: str,
        pid: int,
        tag: str | None,
        message: str = "",
    ) -> LockInfo:
        """Take the environment's deploy lock, or raise LockHeld saying who has it."""
        mine = LockInfo(
            env=env,
            holder=holder,
            machine=machine,
            pid=pid,
            token=secrets.token_hex(16),
            tag=tag,
            message=self._redact(message),
            acquired_at=utcnow(),
        )
        # The primary key decides between racing runners. A holder can release between our
        # failed insert and our look at who holds it; then the lock is free: try again.
        for _attempt in range(3):
            with self._writing() as conn:
                if _insert_if_absent(conn, schema.locks, asdict(mine)):
                    return mine
                held = _lock(conn, env)
            if held is not None:
                raise LockHeld(_held_message(held), hint=_held_hint(env))
        raise StoreError(f"the deploy lock of {env} kept changing hands; try again")

    def release_lock(self, env: str, token: str) -> bool:
        """Release the lock if ``token`` is the one it was taken with; say whether it was."""
        table = schema.locks
        query = delete(table).where(table.c.env == env, table.c.token == token)
        with self._writing() as conn:
            return conn.execute(query).rowcount == 1

    def lock(self, env: str) -> LockInfo | None:
        with self._reading() as conn:
            return _lock(conn, env)

    def force_release_lock(self, env: str) -> LockInfo | None:
        """Remove the lock whoever holds it (a crashed run); return what was removed."""
        with self._writing() as conn:
            held = _lock(conn, env)
            conn.execute(delete(schema.locks).where(schema.locks.c.env == env))
        return held

    # -- audit -------------------------------------------------------------------------------

    def append_audit(
        self,
        *,
        actor: str,
        action: str,
        subject: str,
        details: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> AuditEntry:
        """Append one entry, chained to the newest one."""
        plain = chain.plain(self._redact_tree(dict(details or {})))
        with self._writing() as conn:
            _serialise_audit(conn)
            last = conn.execute(_NEWEST_AUDIT).first()
            entry = chain.seal(
                id=1 if last is None else last.id + 1,
                at=(at or utcnow()).astimezone(UTC),
                actor=self._redact(actor),
                action=self._redact(action),
                subject=self._redact(subject),
                details=plain,
                prev_hash=chain.GENESIS if last is None else last.hash,
            )
            row = {**asdict(entry), "details": chain.canonical_json(entry.details)}
            conn.execute(insert(schema.audit).values(row))
        return entry

    def audit_entries(
        self, *, subject: str | None = None, action: str | None = None
    ) -> list[AuditEntry]:
        """Entries about ``subject`` and of ``action`` (each filter when given), oldest first."""
        t = schema.audit
        query = select(t).order_by(t.c.id)
        if subject is not None:
            query = query.where(t.c.subject == subject)
        if action is not None:
            query = query.where(t.c.action == action)
        with self._reading() as conn:
            return [_audit_entry(row) for row in conn.execute(query)]

    def verify_audit(self) -> AuditReport:
        """Walk the whole trail and name every row that was edited, removed or re-linked.

        Rows cut off the end leave a shorter chain that is still valid: keep the returned
        ``head`` somewhere outside this database and compare it to catch that.
        """
        query = select(schema.audit).order_by(schema.audit.c.id)
        with self._reading() as conn:
            return chain.verify_chain(_audit_entry(row) for row in conn.execute(query))

    # -- plumbing ----------------------------------------------------------------------------

    # --- monitoring: samples and incidents -----------------------------------------------------

    def add_samples(
        self, env: str, deployment_id: int | None, samples: Sequence[Mapping[str, Any]]
    ) -> None:
        """Rows of (metric, host, source, at, value, ok, labels); one transaction."""
        if not samples:
            return
        rows = [
            {
                "env": env,
                "deployment_id": deployment_id,
                "metric": s["metric"],
                "host": s.get("host"),
                "source": s["source"],
                "at": s["at"],
                "value": s.get("value"),
                "ok": s.get("ok"),
                "labels": self._redact_tree(dict(s.get("labels") or {})),
            }
            for s in samples
        ]
        with self._writing() as conn:
            conn.execute(insert(schema.samples), rows)

    def samples(
        self,
        *,
        env: str,
        metric: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        deployment_id: int | None = None,
    ) -> list[SampleRecord]:
        t = schema.samples
        query = select(t).where(t.c.env == env).order_by(t.c.at, t.c.id)
        if metric is not None:
            query = query.where(t.c.metric == metric)
        if since is not None:
            query = query.where(t.c.at >= since)
        if until is not None:
            query = query.where(t.c.at < until)
        if deployment_id is not None:
            query = query.where(t.c.deployment_id == deployment_id)
        with self._reading() as conn:
            return [SampleRecord(**r._mapping) for r in conn.execute(query)]

    def open_incident(
        self,
        *,
        env: str,
        deployment_id: int | None,
        level: int,
        title: str,
        symptoms: str,
        impact_start: datetime | None,
        detected_at: datetime,
        action: str | None,
    ) -> int:
        values = dict(
            env=env,
            deployment_id=deployment_id,
            level=level,
            title=self._redact(title),
            symptoms=self._redact(symptoms),
            status="open",
            impact_start=impact_start,
            detected_at=detected_at,
            action=action,
        )
        return self._insert(schema.incidents, values)

    def update_incident(self, incident_id: int, **values: Any) -> None:
        allowed = {
            "level",
            "status",
            "acknowledged_at",
            "acknowledged_by",
            "mitigated_at",
            "resolved_at",
            "action",
            "symptoms",
        }
        unknown = set(values) - allowed
        if unknown:
            raise StoreError(f"incidents have no field {sorted(unknown)[0]!r} to update")
        self._update(schema.incidents, incident_id, values)

    def incident(self, incident_id: int) -> IncidentRecord:
        t = schema.incidents
        with self._reading() as conn:
            row = conn.execute(select(t).where(t.c.id == incident_id)).first()
        if row is None:
            raise StoreError(f"no incident {incident_id}")
        return IncidentRecord(**row._mapping)

    def incidents(self, *, env: str | None = None, open_only: bool = False) -> list[IncidentRecord]:
        """Newest first."""
        t = schema.incidents
        query = select(t).order_by(t.c.detected_at.desc(), t.c.id.desc())
        if env is not None:
            query = query.where(t.c.env == env)
        if open_only:
            query = query.where(t.c.status != "resolved")
        with self._reading() as conn:
            return [IncidentRecord(**r._mapping) for r in conn.execute(query)]

    # --- follow-ups after a deployment -------------------------------------------------------

    def add_follow_ups(self, deployment_id: int, items: Sequence[Mapping[str, Any]]) -> list[int]:
        """Rows of (activity, owner, due_at), all pending; one transaction, ids in order."""
        ids = []
        with self._writing() as conn:
            for item in items:
                values = dict(
                    deployment_id=deployment_id,
                    activity=self._redact(item["activity"]),
                    owner=self._redact(item.get("owner")),
                    due_at=item["due_at"],
                    status="pending",
                )
                key = conn.execute(insert(schema.follow_ups).values(values)).inserted_primary_key
                assert key is not None  # a single-row INSERT always reports its key
                ids.append(int(key[0]))
        return ids

    def follow_ups(
        self,
        *,
        env: str | None = None,
        deployment_id: int | None = None,
        status: str | Sequence[str] | None = None,
        due_by: datetime | None = None,
    ) -> list[FollowUpRecord]:
        """Follow-ups matching every filter given (``due_by``: due at or before it), soonest
        due first."""
        f, d = schema.follow_ups, schema.deployments
        query = (
            select(f, d.c.env, d.c.tag)
            .select_from(f.join(d, f.c.deployment_id == d.c.id))
            .order_by(f.c.due_at, f.c.id)
        )
        if env is not None:
            query = query.where(d.c.env == env)
        if deployment_id is not None:
            query = query.where(f.c.deployment_id == deployment_id)
        if status is not None:
            query = query.where(f.c.status.in_([status] if isinstance(status, str) else status))
        if due_by is not None:
            query = query.where(f.c.due_at <= due_by)
        with self._reading() as conn:
            return [FollowUpRecord(**row._mapping) for row in conn.execute(query)]

    def follow_up(self, follow_up_id: int) -> FollowUpRecord:
        f, d = schema.follow_ups, schema.deployments
        query = (
            select(f, d.c.env, d.c.tag)
            .select_from(f.join(d, f.c.deployment_id == d.c.id))
            .where(f.c.id == follow_up_id)
        )
        with self._reading() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise StoreError(f"no follow-up {follow_up_id}")
        return FollowUpRecord(**row._mapping)

    def finish_follow_up(
        self,
        follow_up_id: int,
        *,
        result: str | Mapping[str, Any],
        status: str = "done",
        done_at: datetime | None = None,
    ) -> bool:
        """Record what doing a follow-up found. Only an open one (pending, or failed and being
        retried) is changed: False when it was done already, by someone else meanwhile."""
        if status not in FOLLOW_UP_STATUSES[1:]:
            raise StoreError(f"a follow-up ends done or failed, not {status!r}")
        text_result = (
            self._redact(result)
            if isinstance(result, str)
            else json.dumps(self._redact_tree(dict(result)), sort_keys=True, default=str)
        )
        f = schema.follow_ups
        query = (
            sql_update(f)
            .where(f.c.id == follow_up_id, f.c.status.in_(["pending", "failed"]))
            .values(status=status, done_at=done_at or utcnow(), result=text_result)
        )
        with self._writing() as conn:
            if conn.execute(query).rowcount == 1:
                return True
            if conn.execute(select(f.c.id).where(f.c.id == follow_up_id)).first() is None:
                raise StoreError(f"no follow-up {follow_up_id}")
        return False

    # --- backups of the app's database ---------------------------------------------------------

    def add_backup(
        self,
        *,
        env: str,
        kind: str,
        deployment_id: int | None,
        folder: str,
        database: str,
        dump_sha256: str,
        size: int,
        point_in_time: datetime,
        seconds: float,
        manifest: str,
    ) -> int:
        values = dict(
            env=env,
            kind=kind,
            deployment_id=deployment_id,
            folder=folder,
            database=database,
            dump_sha256=dump_sha256,
            size=size,
            point_in_time=point_in_time,
            taken_at=utcnow(),
            seconds=seconds,
            manifest=manifest,
        )
        return self._insert(schema.backups, values)

    def add_backup_check(
        self,
        *,
        backup_id: int | None,
        dump_sha256: str,
        level: int,
        status: str,
        detail: str,
        seconds: float,
    ) -> int:
        values = dict(
            backup_id=backup_id,
            dump_sha256=dump_sha256,
            level=level,
            status=status,
            detail=self._redact(detail),
            checked_at=utcnow(),
            seconds=seconds,
        )
        return self._insert(schema.backup_checks, values)

    def backups(
        self,
        *,
        env: str | None = None,
        deployment_id: int | None = None,
        kind: str | None = None,
        include_pruned: bool = False,
    ) -> list[BackupRecord]:
        """Newest first."""
        t = schema.backups
        query = select(t).order_by(t.c.taken_at.desc(), t.c.id.desc())
        if env is not None:
            query = query.where(t.c.env == env)
        if deployment_id is not None:
            query = query.where(t.c.deployment_id == deployment_id)
        if kind is not None:
            query = query.where(t.c.kind == kind)
        if not include_pruned:
            query = query.where(t.c.pruned_at.is_(None))
        with self._reading() as conn:
            rows = conn.execute(query).all()
            levels = self._verified_levels(conn, [r.dump_sha256 for r in rows])
        return [
            BackupRecord(**r._mapping, verified_level=levels.get(r.dump_sha256, 0)) for r in rows
        ]

    def backup_by_folder(self, folder: str) -> BackupRecord | None:
        t = schema.backups
        with self._reading() as conn:
            row = conn.execute(select(t).where(t.c.folder == folder)).first()
            if row is None:
                return None
            levels = self._verified_levels(conn, [row.dump_sha256])
        return BackupRecord(**row._mapping, verified_level=levels.get(row.dump_sha256, 0))

    def backup_checks(self, dump_sha256: str) -> list[BackupCheckRecord]:
        t = schema.backup_checks
        query = select(t).where(t.c.dump_sha256 == dump_sha256).order_by(t.c.id)
        with self._reading() as conn:
            return [BackupCheckRecord(**r._mapping) for r in conn.execute(query)]

    def mark_backup_pruned(self, backup_id: int) -> None:
        self._update(schema.backups, backup_id, {"pruned_at": utcnow()})

    @staticmethod
    def _verified_levels(conn: Connection, hashes: Sequence[str]) -> dict[str, int]:
        """The highest level each dump hash was verified at; a later 'bad' check wins."""
        t = schema.backup_checks
        found: dict[str, int] = {}
        rows = conn.execute(
            select(t.c.dump_sha256, t.c.level, t.c.status)
            .where(t.c.dump_sha256.in_(set(hashes)))
            .order_by(t.c.id)
        )
        for sha, level, status in rows:
            if status == "verified":
                found[sha] = max(found.get(sha, 0), level)
            elif status == "bad":
                found[sha] = 0
        return found

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        with translated_errors(self._url), self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        with translated_errors(self._url), self._engine.connect() as conn:
            conn.execution_options(**{WRITE: True})
            with conn.begin():
                yield conn

    def _insert(self, table: Table, values: Mapping[str, Any]) -> int:
        with self._writing() as conn:
            key = conn.execute(insert(table).values(values)).inserted_primary_key
        assert key is not None  # a single-row INSERT always reports its key
        return int(key[0])

    def _update(self, table: Table, row_id: int, values: Mapping[str, Any]) -> None:
        query = sql_update(table).where(table.c.id == row_id).values(values)
        with self._writing() as conn:
            if conn.execute(query).rowcount != 1:
                raise StoreError(f"no {table.name} row with id {row_id}")

    @overload
    def _redact(self, value: str) -> str: ...
    @overload
    def _redact(self, value: None) -> None: ...
    def _redact(self, value: str | None) -> str | None:
        return None if value is None else self._redactor.redact(value)

    def _redact_tree(self, value: Any) -> Any:
        """Redact every string inside nested mappings and sequences (keys too)."""
        if isinstance(value, str):
            return self._redactor.redact(value)
        if isinstance(value, Mapping):
            return {self._redact_tree(str(k)): self._redact_tree(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._redact_tree(v) for v in value]
        return value


_NEWEST_AUDIT = (
    select(schema.audit.c.id, schema.audit.c.hash).order_by(schema.audit.c.id.desc()).limit(1)
)


def _serialise_audit(conn: Connection) -> None:
    # Two writers reading the same newest row would fork the chain. SQLite's BEGIN IMMEDIATE
    # already excludes other writers; PostgreSQL needs a lock that readers do not wait for.
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE audit IN EXCLUSIVE MODE"))


def _insert_if_absent(conn: Connection, table: Table, values: Mapping[str, Any]) -> bool:
    """Insert unless the primary key is taken; True if this call inserted the row."""
    if conn.dialect.name == "postgresql":
        # Imported here: the PostgreSQL dialect costs ~70 ms of start-up SQLite users never need.
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        query: Any = postgresql_insert(table).values(values).on_conflict_do_nothing()
    else:
        query = sqlite_insert(table).values(values).on_conflict_do_nothing()
    # RETURNING, not rowcount: drivers need not report a row count for INSERT.
    return conn.execute(query.returning(*table.primary_key)).first() is not None


def _lock(conn: Connection, env: str) -> LockInfo | None:
    row = conn.execute(select(schema.locks).where(schema.locks.c.env == env)).first()
    return None if row is None else LockInfo(**row._mapping)


def _held_message(held: LockInfo) -> str:
    since = held.acquired_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    what = f" for {held.tag}" if held.tag else ""
    note = f": {held.message}" if held.message else ""
    return (
        f"{held.env} is locked by {held.holder} on {held.machine} (pid {held.pid})"
        f" since {since}{what}{note}"
    )


def _held_hint(env: str) -> str:
    return (
        f"`rollout lock status {env}` shows the lock; if that run is gone,"
        f" `rollout lock release {env}` removes it"
    )


def _excerpt(output: str) -> str:
    if len(output) <= OUTPUT_LIMIT:
        return output
    return _ELLIPSIS + output[-(OUTPUT_LIMIT - len(_ELLIPSIS)) :]


def _deployment(row: Row[Any]) -> DeploymentRecord:
    return DeploymentRecord(
        **{
            **row._mapping,
            "kind": Kind(row.kind),
            "roles": tuple(row.roles),
            "status": Outcome(row.status),
        }
    )


def _audit_entry(row: Row[Any]) -> AuditEntry:
    try:
        details = json.loads(row.details)
    except ValueError:
        # Not JSON any more, so it was edited: keep the text so the hash check reports it.
        details = {"unreadable details": row.details}
    return AuditEntry(**{**row._mapping, "details": details})
