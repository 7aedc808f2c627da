"""The library API the CLI and the web app call: deploy, rollback, status, history.

Each operation validates everything it can before touching a host, opens the store, holds the
environment's lock for the whole run (released on every exit path), keeps the record, and
returns a report value. Presentation is the caller's: it passes sinks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from rollout import changes
from rollout.changes import Change
from rollout.config import Runbook
from rollout.engine.events import CheckRecorded, Event, Fanout, Note, Sink
from rollout.engine.lock import deploy_lock, whoami
from rollout.engine.plan import Plan, plan_checks, plan_deploy, plan_rollback
from rollout.engine.record import JsonlSink, StoreSink
from rollout.engine.runner import Runner, RunResult
from rollout.engine.targets import close_targets, open_targets
from rollout.errors import BadInput, RollbackRefused, RolloutError
from rollout.model import HostState, Kind, Outcome, Phase, Release, utcnow
from rollout.notify.sink import notify_sink
from rollout.runtimes import Runtime, Target, make_runtime
from rollout.store import DeploymentRecord, LockInfo, Store, open_store


@dataclass(frozen=True)
class Options:
    """Who deploys and what the change is: recorded for history and the DORA figures."""

    actor: str = field(default_factory=whoami)
    roles: tuple[str, ...] = ()
    message: str = ""
    commit_sha: str | None = None
    committed_at: datetime | None = None
    merged_at: datetime | None = None
    # A git checkout of the app: the deployment records every commit since the previous
    # deployment's as a change (rollout.changes), each with its own lead time.
    repo: Path | None = None
    changes: tuple[Change, ...] = ()  # filled from ``repo``, or the one commit given
    # Hosts whose install fails are left on their release and the rest deployed (never for
    # switches: a host that fails to switch is always put back).
    keep_going: bool = False
    # Contract migrations (drop, rename, type change) run only when asked for.
    allow_contract: bool = False
    # The monitoring window: None the runbook's, zero none (recorded as unwatched).
    monitor_for: timedelta | None = None


@dataclass(frozen=True)
class Report:
    plan: Plan
    deployment_id: int | None = None
    result: RunResult | None = None
    event_log: Path | None = None

    @property
    def outcome(self) -> Outcome | None:
        return None if self.result is None else self.result.outcome


@dataclass(frozen=True)
class EnvStatus:
    env: str
    hosts: list[HostState]
    lock: LockInfo | None
    last: DeploymentRecord | None

    @property
    def drift(self) -> bool:
        """Hosts run different releases, or a host runs another release than its files say."""
        actual = {h.link or h.current for h in self.hosts}
        return len(actual) > 1 or any(
            h.link is not None and h.link != h.current for h in self.hosts
        )


def events_dir(runbook: Runbook) -> Path:
    return runbook.config_dir / ".rollout" / "events"


def _prepare(runbook: Runbook, plan: Plan) -> tuple[Runtime, dict[str, Target]]:
    """Build hosts, runtime and targets and fill every template once, before any connection."""
    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    targets = open_targets(runbook, plan.env)
    for target in targets.values():
        runtime.check_templates(target, plan.tag)
    return runtime, targets


async def deploy(
    runbook: Runbook,
    env_name: str,
    tag: str,
    *,
    sinks: Sequence[Sink] = (),
    options: Options | None = None,
    dry_run: bool = False,
) -> Report:
    options = options or Options()
    plan = plan_deploy(runbook, env_name, tag, monitor_for=options.monitor_for)
    runtime, targets = _prepare(runbook, plan)
    if dry_run:
        return Report(plan=plan)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        options = _with_changes(options, store, plan.env, plan.tag)
        return await _execute(runbook, store, plan, runtime, targets, sinks, options)


def _with_changes(options: Options, store: Store, env: str, tag: str) -> Options:
    """What the deployment ships, for lead times: with a repository, every commit since the
    previous deployment of ``env`` (read before anything is touched: a tag the repository does
    not know is bad input); else the one commit given with its times, if any."""
    if options.repo is not None:
        sha = changes.resolve(options.repo, tag, options.commit_sha)
        shipped = tuple(changes.shipped(options.repo, sha, store.last_commit(env)))
        own = next((c for c in shipped if c.sha == sha), None)
        return replace(
            options,
            commit_sha=sha,
            committed_at=options.committed_at or (own.committed_at if own else None),
            merged_at=options.merged_at or (own.merged_at if own else None),
            changes=shipped,
        )
    if options.commit_sha and options.committed_at and not options.changes:
        one = Change(options.commit_sha, options.committed_at, options.merged_at)
        return replace(options, changes=(one,))
    return options


async def rollback(
    runbook: Runbook,
    env_name: str,
    *,
    to: str | None = None,
    reason: str | None = None,
    database: bool | Path = False,
    sinks: Sequence[Sink] = (),
    options: Options | None = None,
    dry_run: bool = False,
) -> Report:
    """Quick rollback: switch every host to ``to`` (default: their previous release).

    With ``database`` (True: the pre-deploy backup of the deployment being rolled back; or a
    backup folder), the app is stopped, that backup restored over the live database (kept
    aside, with a safety backup) and the target release started on it.
    """
    options = options or Options()
    if to is not None:
        Release.parse(to, runbook.release.tag_pattern)
    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    targets = open_targets(runbook, env_name)
    try:
        target_tag = to or await _common_previous(runtime, targets)
    finally:
        await close_targets(targets)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        backup = (
            None if database is False else _backup_to_restore(runbook, store, env_name, database)
        )
        plan = plan_rollback(
            runbook,
            env_name,
            target_tag,
            reason=reason,
            database_backup=None if backup is None else str(backup),
        )
        runtime, targets = _prepare(runbook, plan)
        if dry_run:
            await close_targets(targets)
            return Report(plan=plan)
        if backup is not None:
            from rollout.database.operations import check_restorable

            # Before the lock and before anything stops: a bad or foreign backup is refused.
            await asyncio.to_thread(check_restorable, runbook, store, env_name, backup)
        report = await _execute(runbook, store, plan, runtime, targets, sinks, options)
    result = report.result
    if result is not None and result.failed_step == f"{Phase.PREFLIGHT}/target-present":
        raise RollbackRefused(
            f"rollback to {target_tag} refused: {result.reason}",
            hint="nothing was touched; pick a release present on every host with --to",
        )
    return report


async def _common_previous(runtime: Runtime, targets: dict[str, Target]) -> str:
    states = await asyncio.gather(*(runtime.state(t) for t in targets.values()))
    previous = {s.previous for s in states}
    if previous == {None}:
        raise RollbackRefused(
            "no previous release is recorded on the hosts",
            hint="name the release to go back to with --to TAG",
        )
    if len(previous) > 1:
        seen = ", ".join(f"{s.host}: {s.previous or 'none'}" for s in states)
        raise BadInput(
            f"hosts disagree on their previous release ({seen})", hint="choose one with --to TAG"
        )
    (tag,) = previous
    assert tag is not None
    return tag


async def _execute(
    runbook: Runbook,
    store: Store,
    plan: Plan,
    runtime: Runtime,
    targets: dict[str, Target],
    sinks: Sequence[Sink],
    options: Options,
) -> Report:
    with deploy_lock(store, plan.env, tag=plan.tag, message=options.message):
        deployment_id = store.create_deployment(
            app=runbook.app,
            env=plan.env,
            kind=plan.kind,
            tag=plan.tag,
            actor=options.actor,
            roles=options.roles,
            commit_sha=options.commit_sha,
            committed_at=options.committed_at,
            merged_at=options.merged_at,
            reason=plan.reason,
            rollback_of=_rolled_back(store, plan),
        )
        if options.changes:
            store.add_changes(deployment_id, plan.env, options.changes)
        store.append_audit(
            actor=options.actor,
            action=f"{plan.kind.value}.started",
            subject=f"deployment:{deployment_id}",
            details={"env": plan.env, "tag": plan.tag, "hosts": list(plan.hosts)},
        )
        log = JsonlSink(events_dir(runbook), deployment_id, runbook.redactor)
        notify = notify_sink(runbook, store, plan.env)
        told: list[Sink] = [] if notify is None else [notify]
        store_sink = StoreSink(store, deployment_id, plan.env, options.actor)
        fanout = Fanout([*sinks, store_sink, log, *told])
        if notify is not None:
            notify.report_to(fanout.emit)
        runner = Runner(
            runbook=runbook,
            plan=plan,
            runtime=runtime,
            targets=targets,
            events=fanout,
            deployment_id=deployment_id,
            http=httpx.AsyncClient(),
        )
        runner.keep_going = options.keep_going
        runner.approvals = store.approvals(plan.env, plan.tag)
        if plan.kind is Kind.ROLLBACK:  # a person rolling back responds to the open incident
            runner.incident_id = _open_incident(store, plan.env)
        _store_work(runbook, store, plan, runner, deployment_id, options)
        if plan.kind is Kind.ROLLBACK:
            runner.previous_after_rollback = _previous_of(store, plan.env, plan.tag)
        try:
            result = await runner.run()
        finally:
            store.set_previous_tag(deployment_id, _common(runner.before))
            await runner.http.aclose()
            await close_targets(targets)
            if notify is not None:  # every message queued during the run, before the store closes
                await notify.flush()
        put_back = result.outcome is Outcome.ROLLED_BACK or (
            plan.kind is Kind.ROLLBACK and result.outcome is Outcome.SUCCEEDED
        )
        if runner.incident_id is not None and put_back:
            # Mitigated: every host is back on the release it ran before, and healthy.
            store.update_incident(runner.incident_id, mitigated_at=utcnow(), status="mitigated")
            fanout.emit(Note(message=f"incident #{runner.incident_id} mitigated: rolled back"))
            _draft_postmortem(runbook, store, runner.incident_id, fanout)
        result.previous_tag = _common(runner.before)
    return Report(plan=plan, deployment_id=deployment_id, result=result, event_log=log.path)


def _open_incident(store: Store, env: str) -> int | None:
    """The newest incident of ``env`` not yet mitigated, which a rollback now mitigates."""
    waiting = [i for i in store.incidents(env=env, open_only=True) if i.mitigated_at is None]
    return max((i.id for i in waiting), default=None)


async def declare_incident(
    runbook: Runbook,
    env: str,
    *,
    level: int,
    title: str,
    since: timedelta | None = None,
    deployment_id: int | None = None,
    actor: str | None = None,
) -> int:
    """A person declares an incident the monitoring did not see (customers report broken data):
    recorded with when its impact began (``since`` ago, when known) and acknowledged by them,
    tied to a deployment (default: the one running now), told to #incidents (paging from
    level 2) and shown on the status page. A rollback of ``env`` then mitigates it."""
    from rollout.monitor.incidents import TITLES

    runbook.environment(env)
    if level not in TITLES:
        raise BadInput(f"no incident level {level}", hint="levels are 1 (minor) to 3 (critical)")
    if not title.strip():
        raise BadInput("an incident needs a title", hint='--title "checkout answers 500"')
    person, now = actor or whoami(), utcnow()
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        deployment = _declared_against(store, env, deployment_id)
        incident_id = store.open_incident(
            env=env,
            deployment_id=deployment,
            level=level,
            title=title,
            symptoms=title,
            impact_start=now - since if since is not None else None,
            detected_at=now,
            action="declared",
        )
        store.update_incident(incident_id, acknowledged_at=now, acknowledged_by=person)
        store.append_audit(
            actor=person,
            action="incident.declared",
            subject=f"incident:{incident_id}",
            details={"env": env, "level": level, "deployment": deployment},
        )
        notify = notify_sink(runbook, store, env)
        if notify is not None:
            notify.emit(
                Note(message=f"incident #{incident_id} level {level} ({TITLES[level]}): {title}")
            )
            await notify.flush()
    return incident_id


def _declared_against(store: Store, env: str, deployment_id: int | None) -> int | None:
    if deployment_id is None:
        running = [
            d
            for d in store.deployments(env=env, kind=Kind.DEPLOY, limit=20)
            if d.status is Outcome.SUCCEEDED
        ]
        return running[0].id if running else None
    try:
        found = store.deployment(deployment_id)
    except RolloutError:
        found = None
    if found is None or found.env != env:
        raise BadInput(
            f"no deployment {deployment_id} of {env}", hint=f"see `rollout history --env {env}`"
        )
    return deployment_id


def _draft_postmortem(runbook: Runbook, store: Store, incident_id: int, fanout: Fanout) -> None:
    """The level's ``postmortem`` action: a draft from the records, once the incident is
    mitigated (its timeline is then complete up to the rollback). A draft that cannot be
    written is said, never raised: the release is already back."""
    from rollout.monitor.incidents import level_actions
    from rollout.notify import postmortem

    if "postmortem" not in level_actions(runbook.incidents, store.incident(incident_id).level):
        return
    path = postmortem.default_path(runbook, incident_id)
    try:
        text = postmortem.draft(store, incident_id, now=utcnow(), runbook=runbook)
        postmortem.write(path, text)
    except (RolloutError, OSError) as exc:
        fanout.emit(
            Note(message=f"post-mortem draft for incident #{incident_id} not written: {exc}")
        )
        return
    fanout.emit(Note(message=f"post-mortem draft for incident #{incident_id}: {path}"))


def _backup_to_restore(runbook: Runbook, store: Store, env: str, database: bool | Path) -> Path:
    """The backup a database rollback restores: the one named, or the pre-deploy backup of the
    deployment being rolled back (the newest deploy of ``env``)."""
    if isinstance(database, Path):
        return database
    last = store.deployments(env=env, kind=Kind.DEPLOY, limit=1)
    if not last:
        raise RollbackRefused(f"no deployment of {env} on record to roll the database back from")
    found = store.backups(env=env, deployment_id=last[0].id, kind="pre-deploy")
    if not found:
        raise RollbackRefused(
            f"deployment {last[0].id} ({last[0].tag}) has no pre-deploy backup on record",
            hint="restore a backup by name: rollout db restore ENV BACKUP",
        )
    return Path(found[0].folder)


def _store_work(
    runbook: Runbook,
    store: Store,
    plan: Plan,
    runner: Runner,
    deployment_id: int,
    options: Options,
) -> None:
    """Give the runner what needs the store: the monitoring window, the follow-ups, the backup
    phase, the migrations and the recorded freshness gate."""
    if any(step.name == "followups" for step in plan.steps_in(Phase.FINALIZE)):
        from rollout.followups.schedule import describe, schedule

        async def plan_followups() -> str:
            finished_at = utcnow()  # due from the deployment's end, which is now
            records = await asyncio.to_thread(schedule, runbook, store, deployment_id, finished_at)
            return describe(records, finished_at)

        runner.store_actions["followups"] = plan_followups
    if plan.steps_in(Phase.MONITOR):
        from rollout.monitor.session import window_action

        runner.store_actions["window"] = window_action(runbook, store, runner, deployment_id)
    elif runbook.monitor.metrics and plan.kind is Kind.DEPLOY:
        runner.events.emit(
            Note(message="no monitoring window: this deployment is unwatched", level="warn")
        )
    database = runbook.environment(plan.env).database
    if database is None:
        return
    from rollout.database import operations as db

    if plan.steps_in(Phase.BACKUP):

        async def take_backup() -> str:
            return await asyncio.to_thread(
                db.pre_deploy_backup, runbook, store, plan.env, deployment_id
            )

        runner.store_actions["db-backup"] = take_backup
    if plan.database_backup is not None:
        runner.store_actions["db-restore"] = db.restore_action(
            runbook, store, plan.env, Path(plan.database_backup), runner, options.actor
        )
    if database.migrations is not None and plan.kind is Kind.DEPLOY:
        from rollout.database.steps import migration_actions

        runner.store_actions.update(
            migration_actions(runbook, plan.env, runner, allow_contract=options.allow_contract)
        )
    max_age, level = runbook.checks.backup_max_age, database.verify_level
    runner.recorded_backup_check = lambda: db.recorded_freshness(store, plan.env, max_age, level)


def _common(states: dict[str, HostState]) -> str | None:
    currents = {s.current for s in states.values()}
    return currents.pop() if len(currents) == 1 else None


def _rolled_back(store: Store, plan: Plan) -> int | None:
    if plan.kind is not Kind.ROLLBACK:
        return None
    last = store.deployments(env=plan.env, kind=Kind.DEPLOY, limit=1)
    return last[0].id if last else None


def _previous_of(store: Store, env: str, tag: str) -> str | None:
    """What ran before ``tag`` last time it was deployed: the rollback's new 'previous'."""
    for record in store.deployments(env=env, kind=Kind.DEPLOY):
        if record.tag == tag and record.status == Outcome.SUCCEEDED.value:
            return record.previous_tag
    return None


async def status(runbook: Runbook, env_name: str) -> EnvStatus:
    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    targets = open_targets(runbook, env_name)
    try:
        states = await asyncio.gather(*(_host_status(runtime, t) for t in targets.values()))
    finally:
        await close_targets(targets)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        last = store.deployments(env=env_name, limit=1)
        return EnvStatus(
            env=env_name,
            hosts=list(states),
            lock=store.lock(env_name),
            last=last[0] if last else None,
        )


async def _host_status(runtime: Runtime, target: Target) -> HostState:
    state = await runtime.state(target)
    url = runtime.health_url(target, state.current) if state.current else None
    if url is None:
        return state
    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            healthy = (await client.get(url)).is_success
    except httpx.HTTPError:
        healthy = False
    return HostState(
        host=state.host,
        current=state.current,
        previous=state.previous,
        running=state.running,
        link=state.link,
        healthy=healthy,
        releases=state.releases,
    )


def history(
    runbook: Runbook, *, env: str | None = None, limit: int | None = None
) -> list[DeploymentRecord]:
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        return store.deployments(env=env, limit=limit)


class _CheckRecorder:
    """Keeps the results of a check run outside any deployment in the store."""

    def __init__(self, store: Store, env: str) -> None:
        self.store = store
        self.env = env

    def emit(self, event: Event) -> None:
        if isinstance(event, CheckRecorded):
            self.store.record_check(
                event.result, env=self.env, phase=event.phase.value, recorded_at=event.at
            )


async def run_checks(
    runbook: Runbook,
    env_name: str,
    phase: Phase,
    *,
    tag: str | None = None,
    sinks: Sequence[Sink] = (),
) -> tuple[Plan, RunResult]:
    """``rollout check`` (pre-flight) or ``rollout verify``: the suite alone, recorded, nothing changed."""
    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    if phase is Phase.VERIFY and tag is None:
        targets = open_targets(runbook, env_name)
        try:
            tag = await _common_current(runtime, targets)
        finally:
            await close_targets(targets)
    plan = plan_checks(runbook, env_name, phase, tag)
    targets = open_targets(runbook, env_name)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        runner = Runner(
            runbook=runbook,
            plan=plan,
            runtime=runtime,
            targets=targets,
            events=Fanout([*sinks, _CheckRecorder(store, env_name)]),
            deployment_id=0,
            http=httpx.AsyncClient(),
        )
        try:
            result = await runner.run()
        finally:
            await runner.http.aclose()
            await close_targets(targets)
    return plan, result


async def current_release(runbook: Runbook, env_name: str) -> str:
    """The one release every host of the environment runs (BadInput when they differ)."""
    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    targets = open_targets(runbook, env_name)
    try:
        return await _common_current(runtime, targets)
    finally:
        await close_targets(targets)


async def _common_current(runtime: Runtime, targets: dict[str, Target]) -> str:
    states = await asyncio.gather(*(runtime.state(t) for t in targets.values()))
    running = {s.link or s.current for s in states}
    if len(running) != 1 or None in running:
        seen = ", ".join(f"{s.host}: {s.link or s.current or 'nothing'}" for s in states)
        raise BadInput(
            f"cannot tell which release to verify ({seen})", hint="name it with --tag TAG"
        )
    (tag,) = running
    assert tag is not None
    return tag
