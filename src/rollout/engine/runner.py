"""The runner: executes a ``Plan`` step by step, emits events, and puts hosts back on failure.

Safety rules it enforces (DESIGN.md, "Safety first in ordering"):
- nothing on a host changes until every pre-flight step has passed;
- every host is fully installed before the first one is switched;
- batches are switched one after another, each checked healthy before the next;
- on a failure after a switch, every host this run touched goes back to what it ran before;
- a check phase runs all its checks before failing, so people see every problem at once.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx

from rollout.checks import http as http_checks
from rollout.checks.resources import check_cpu, check_disk, check_memory
from rollout.config import Runbook
from rollout.engine.events import (
    CheckRecorded,
    Fanout,
    Note,
    PhaseFinished,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRef,
    StepStarted,
)
from rollout.engine.plan import Plan, PlannedStep
from rollout.errors import CommandFailed, InfrastructureError
from rollout.model import (
    CheckResult,
    CheckStatus,
    HostState,
    Kind,
    Outcome,
    Phase,
    StepStatus,
    utcnow,
)
from rollout.runtimes.base import Runtime, Target
from rollout.store import ApprovalRecord


class StepFailed(Exception):
    """A step failed; carries which one and why, for the record and for the rollback."""

    def __init__(self, step: PlannedStep, reason: str, *, infrastructure: bool = False) -> None:
        super().__init__(reason)
        self.step = step
        self.reason = reason
        # The host or network failed (unreachable, timed out), not the release: exit code 3.
        self.infrastructure = infrastructure


def _is_infrastructure(exc: BaseException) -> bool:
    return isinstance(exc, InfrastructureError) and not isinstance(exc, CommandFailed)


@dataclass
class RunResult:
    outcome: Outcome
    seconds: float
    reason: str | None = None
    failed_host: str | None = None
    failed_step: str | None = None
    previous_tag: str | None = None
    checks: list[CheckResult] = field(default_factory=list)
    phase_seconds: list[tuple[Phase, float]] = field(default_factory=list)
    infrastructure: bool = False  # the failure came from a host or the network
    skipped_hosts: list[str] = field(default_factory=list)  # --keep-going: left on their release

    @property
    def exit_code(self) -> int:
        """DESIGN.md's codes: 0 ok, 1 a gate or step failed, 3 infrastructure, 130 interrupted."""
        if self.outcome is Outcome.SUCCEEDED:
            return 0
        if self.outcome is Outcome.ABORTED:
            return 130
        return 3 if self.infrastructure else 1


@dataclass
class Runner:
    runbook: Runbook
    plan: Plan
    runtime: Runtime
    targets: dict[str, Target]
    events: Fanout
    deployment_id: int
    http: httpx.AsyncClient
    # What each host ran before this run, read in pre-flight; the rollback's destination.
    before: dict[str, HostState] = field(default_factory=dict)
    touched: list[str] = field(default_factory=list)
    result: RunResult = field(default_factory=lambda: RunResult(Outcome.RUNNING, 0.0))
    # A rollback run writes this as each host's previous version (None: remove the file).
    previous_after_rollback: str | None = None
    keep_going: bool = False  # --keep-going: hosts failing to install are left out
    approvals: list[ApprovalRecord] = field(default_factory=list)  # the release's sign-offs
    # Steps whose work needs the store (the database's backup and restore), given by the
    # caller that holds it, by step name; each returns what to show.
    store_actions: dict[str, Callable[[], Awaitable[str]]] = field(default_factory=dict)
    # What to undo before the hosts are put back, newest first (a database swap).
    undo: list[Callable[[], Awaitable[str]]] = field(default_factory=list)
    incident_id: int | None = None  # opened by the monitoring window, mitigated by a put-back
    # The pre-flight freshness gate's answer from the backup records (None: read the folder).
    recorded_backup_check: Callable[[], CheckResult | None] | None = None
    excluded: set[str] = field(default_factory=set)
    unreachable: set[str] = field(default_factory=set)
    _started: float = 0.0

    async def run(self) -> RunResult:
        self._started = time.monotonic()
        self.events.emit(
            RunStarted(
                deployment_id=self.deployment_id,
                env=self.plan.env,
                tag=self.plan.tag,
                kind=self.plan.kind.value,
                hosts=self.plan.hosts,
                deploy_steps=len(
                    self.plan.steps_in(Phase.DEPLOY) or self.plan.steps_in(Phase.ROLLBACK)
                ),
            )
        )
        try:
            for phase in self.plan.phases():
                await self._phase(phase)
            self.result.outcome = Outcome.SUCCEEDED
        except StepFailed as failure:
            await self._on_failure(failure)
        except asyncio.CancelledError:
            self.result.reason = "interrupted by the operator"
            self.result.outcome = Outcome.ABORTED
            await self._put_back(Outcome.ABORTED)
            raise
        finally:
            self._finish()
        return self.result

    # --- phases and steps ----------------------------------------------------------------

    async def _phase(self, phase: Phase) -> None:
        self.events.emit(PhaseStarted(phase=phase))
        started = time.monotonic()
        status = StepStatus.FAILED
        try:
            if phase in (Phase.READINESS, Phase.PREFLIGHT, Phase.VERIFY):
                await self._check_phase(phase)
            elif phase is Phase.FINALIZE:
                await self._finalize()
            else:
                for group in self.plan.groups(phase):
                    await self._group(group)
            status = StepStatus.SUCCEEDED
        finally:
            seconds = time.monotonic() - started
            self.result.phase_seconds.append((phase, seconds))
            self.events.emit(PhaseFinished(phase=phase, status=status, seconds=seconds))

    async def _group(self, steps: Sequence[PlannedStep]) -> None:
        """Run a batch: hosts in parallel, each host's steps in order; wait for all, then fail."""
        # A host's deploy steps run in order; checks are independent, so they all run at once.
        checking = bool(steps) and steps[0].phase in (
            Phase.READINESS,
            Phase.PREFLIGHT,
            Phase.VERIFY,
        )
        by_host: dict[object, list[PlannedStep]] = {}
        for step in steps:
            if step.host in self.excluded or step.host in self.unreachable:
                continue
            by_host.setdefault((step.host, step.name) if checking else step.host, []).append(step)
        limit = asyncio.Semaphore(self.runbook.environment(self.plan.env).parallel)

        async def chain(host_steps: list[PlannedStep]) -> None:
            async with limit:
                for step in host_steps:
                    try:
                        await self._step(step, self._action(step))
                    except StepFailed as failure:
                        if failure.step.name == "connect" and failure.step.host is not None:
                            self.unreachable.add(
                                failure.step.host
                            )  # its other checks would only repeat it
                        if not self._leave_out(failure):
                            raise
                        return

        # Let every host of the batch finish: abandoning a host mid-switch is worse than waiting.
        outcomes = await asyncio.gather(
            *(chain(s) for s in by_host.values()), return_exceptions=True
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    def _leave_out(self, failure: StepFailed) -> bool:
        """--keep-going: a host whose install failed stays on its release; the rest go on.
        Never for switches: a host that failed to switch is always put back."""
        host = failure.step.host
        if not (self.keep_going and failure.step.name == "install" and host is not None):
            return False
        self.excluded.add(host)
        self.result.skipped_hosts.append(host)
        self.events.emit(
            Note(
                message=f"{host}: install failed, left out (--keep-going): {failure.reason}",
                level="warn",
            )
        )
        if len(self.excluded) == len(self.plan.hosts):
            raise failure  # nothing left to deploy to
        return True

    async def _check_phase(self, phase: Phase) -> None:
        failures: list[StepFailed] = []
        for group in self.plan.groups(phase):
            try:
                await self._group(group)
            except StepFailed as failure:
                failures.append(failure)
        # Every group ran, so every failing check is on the record; now stop on the first.
        if failures:
            raise failures[0]

    async def _step(self, step: PlannedStep, action: Callable[[], Awaitable[str]]) -> None:
        ref = StepRef(step.phase, step.name, step.host)
        self.events.emit(StepStarted(step=ref))
        started = time.monotonic()
        try:
            output = await action()
        except StepFailed as failure:
            self._step_done(ref, StepStatus.FAILED, started, failure.reason)
            raise
        except asyncio.CancelledError:
            self._step_done(ref, StepStatus.FAILED, started, "interrupted")
            raise
        except Exception as exc:  # any error from a host or the network fails this step
            reason = str(exc) or type(exc).__name__
            self._step_done(ref, StepStatus.FAILED, started, reason)
            raise StepFailed(step, reason, infrastructure=_is_infrastructure(exc)) from exc
        self._step_done(ref, StepStatus.SUCCEEDED, started, output)

    def _step_done(self, ref: StepRef, status: StepStatus, started: float, output: str) -> None:
        seconds = time.monotonic() - started
        self.events.emit(StepFinished(step=ref, status=status, seconds=seconds, output=output))

    # --- actions ---------------------------------------------------------------------------

    def _action(self, step: PlannedStep) -> Callable[[], Awaitable[str]]:
        target = self.targets[step.host] if step.host else None
        match step.name, target:
            case "artifact", _:
                return lambda: self._checks(step, [self._artifact_check()])
            case "certificate", _:
                return lambda: self._certificate(step)
            case "tls-grade", _:
                return lambda: self._tls_grade(step)
            case "security-headers", _:
                return lambda: self._security_headers(step)
            case "load", _:
                return lambda: self._load(step)
            case "review", _:
                return lambda: self._review(step)
            case "staging", _:
                return lambda: self._staging(step)
            case "backup", _:
                return lambda: self._backup(step)
            case "db-backup" | "db-restore" | "migrations" | "migrate" | "window", _:
                return self.store_actions[step.name]
            case "stop", Target():
                return lambda: self._stop(target)
            case "database", _:
                return lambda: self._database(step)
            case "monitoring", _:
                return lambda: self._monitoring(step)
            case "cpu", Target():
                return lambda: self._host_check(
                    step, check_cpu(target.host, self.runbook.checks.cpu_max)
                )
            case "memory", Target():
                return lambda: self._host_check(
                    step, check_memory(target.host, self.runbook.checks.memory_max)
                )
            case "rollback-ready", Target():
                return lambda: self._rollback_ready(step, target)
            case "connect", Target():
                return lambda: self._connect(target)
            case "runtime", Target():
                return lambda: self._runtime_checks(step, target)
            case "disk", Target():
                return lambda: self._disk(step, target)
            case "production-health", Target():
                return lambda: self._production_health(step, target)
            case "target-present", Target():
                return lambda: self._target_present(step, target)
            case "install", Target():
                return lambda: self._install(target)
            case "activate", Target():
                return lambda: self._activate(target)
            case "health", Target():
                return lambda: self.runtime.wait_healthy(target, self.plan.tag)
            case "version", Target():
                return lambda: self._version(step, target)
            case name, Target() if name.startswith("endpoint "):
                return lambda: self._endpoint(step, target)
        raise AssertionError(f"no action for planned step {step}")

    async def _checks(self, step: PlannedStep, results: Sequence[CheckResult]) -> str:
        for result in results:
            self.result.checks.append(result)
            self.events.emit(CheckRecorded(phase=step.phase, result=result))
        failed = [r for r in results if r.failed]
        if failed:
            raise StepFailed(
                step,
                "; ".join(
                    f"{r.id}: {r.value} (want {r.threshold}) {r.remedy}".strip() for r in failed
                ),
            )
        return "; ".join(f"{r.id}: {r.status} {r.value or r.evidence}" for r in results)

    def _artifact_check(self) -> CheckResult:
        artifact = self.plan.artifact
        if artifact is None:
            why = (
                "the release image is checked on each host (the runtime step)"
                if self.runbook.runtime.kind == "compose"
                else "no release.artifact configured"
            )
            return CheckResult("artifact", CheckStatus.SKIP, "", "", why)
        return CheckResult(
            "artifact",
            CheckStatus.PASS,
            artifact.path.name,
            "present, checksum matches",
            f"sha256 {artifact.sha256}",
        )

    def _public(self) -> tuple[str, str, int]:
        """The environment's URL and its host and port, for the graders."""
        from urllib.parse import urlsplit

        url = self.runbook.environment(self.plan.env).url
        assert url is not None  # graders are planned only with a url
        parts = urlsplit(url)
        return url, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)

    async def _certificate(self, step: PlannedStep) -> str:
        from rollout.checks import tls

        _, host, port = self._public()
        report = await tls.grade(host, port)
        return await self._checks(
            step, [report.expiry_check(self.runbook.checks.certificate_min_days)]
        )

    async def _tls_grade(self, step: PlannedStep) -> str:
        from rollout.checks import tls

        spec = self.runbook.verify.tls
        assert spec is not None
        _, host, port = self._public()
        return await self._checks(step, [(await tls.grade(host, port)).check(spec.min_grade)])

    async def _security_headers(self, step: PlannedStep) -> str:
        from rollout.checks import headers

        spec = self.runbook.verify.headers
        assert spec is not None
        url, _, _ = self._public()
        report = await headers.grade(url)
        return await self._checks(
            step, [report.check(required=spec.required, min_grade=spec.min_grade)]
        )

    async def _load(self, step: PlannedStep) -> str:
        from rollout.checks import load

        spec = self.runbook.verify.load
        assert spec is not None
        url, _, _ = self._public()
        report = await load.run(
            url, requests=spec.requests, concurrency=spec.concurrency, thresholds=spec.thresholds
        )
        return await self._checks(step, report.checks())

    async def _review(self, step: PlannedStep) -> str:
        from rollout.checks.readiness import review

        rb = self.runbook
        return await self._checks(
            step, review(rb.readiness, rb.people, rb.notify, self.approvals, utcnow())
        )

    async def _host_check(self, step: PlannedStep, check: Awaitable[CheckResult]) -> str:
        return await self._checks(step, [await check])

    async def _rollback_ready(self, step: PlannedStep, target: Target) -> str:
        """After this deploy the way back is the release running now: it must be installed."""
        state = self.before.get(target.name) or await self.runtime.state(target)
        running = state.link or state.current
        if running is None:
            result = CheckResult(
                "rollback-ready",
                CheckStatus.SKIP,
                "",
                "",
                "no release runs yet: nothing to go back to",
                host=target.name,
            )
        else:
            present = await self.runtime.installed(target, running)
            result = CheckResult(
                "rollback-ready",
                CheckStatus.PASS if present else CheckStatus.FAIL,
                running if present else f"{running} missing",
                f"{running} installed",
                f"a rollback switches back to {running}",
                ""
                if present
                else f"{running} was removed from the host; redeploy it before moving on",
                target.name,
            )
        return await self._checks(step, [result])

    async def _staging(self, step: PlannedStep) -> str:
        """The release must already run, healthy, on staging: the runbook's staging validation."""
        from rollout.engine.targets import close_targets, open_targets

        staging = open_targets(self.runbook, "staging")
        try:
            results = [await self._staging_host(target) for target in staging.values()]
        finally:
            await close_targets(staging)
        return await self._checks(step, results)

    async def _staging_host(self, target: Target) -> CheckResult:
        spec = self.runbook.verify.version
        base = target.url or self.runbook.environment("staging").url
        if base is None or spec is None:
            why = "no staging url or verify.version configured"
            return CheckResult("staging", CheckStatus.SKIP, "", "", why, host=target.name)
        seen = await http_checks.check_version(self.http, base, spec, self.plan.tag, target.name)
        remedy = "deploy and validate it on staging first" if seen.failed else ""
        wanted = f"staging runs {self.plan.tag}"
        return CheckResult(
            "staging", seen.status, seen.value, wanted, seen.evidence, remedy, target.name
        )

    async def _backup(self, step: PlannedStep) -> str:
        """Read on the database's host (`via`) when there is one; else here, on the controller."""
        from rollout.checks.backup import check_backup_age
        from rollout.hosts.local import LocalHost

        recorded = self.recorded_backup_check() if self.recorded_backup_check else None
        if recorded is not None:
            return await self._checks(step, [recorded])
        database = self.runbook.environment(self.plan.env).database
        assert database is not None and database.backups is not None  # planned only then
        host = (
            self.targets[database.via].host
            if database.via
            else LocalHost("controller", self.runbook.config_dir)
        )
        folder = (
            database.backups
            if database.via is None
            else self.targets[database.via].path(database.backups)
        )
        return await self._checks(
            step, [await check_backup_age(host, folder, self.runbook.checks.backup_max_age)]
        )

    async def _database(self, step: PlannedStep) -> str:
        from rollout.checks.database import check_database

        database = self.runbook.environment(self.plan.env).database
        assert database is not None  # planned only when configured
        return await self._checks(
            step, [await check_database(database.url, config_dir=self.runbook.config_dir)]
        )

    async def _monitoring(self, step: PlannedStep) -> str:
        url = self.runbook.checks.monitoring_url
        assert url is not None  # planned only when configured
        return await self._checks(step, [await http_checks.check_ready(self.http, url)])

    @staticmethod
    async def _connect(target: Target) -> str:
        result = await target.host.run(["uname", "-n"], timeout=60)
        return f"reached {result.stdout.strip() or target.name}"

    async def _runtime_checks(self, step: PlannedStep, target: Target) -> str:
        results = await self.runtime.preflight(target, self.plan.tag)
        return await self._checks(step, results) if results else "nothing to check"

    async def _disk(self, step: PlannedStep, target: Target) -> str:
        limit = self.runbook.checks.disk_max
        results = [
            await check_disk(target.host, target.path(m), limit)
            for m in self.runbook.checks.disk_mounts
        ]
        return await self._checks(step, results)

    async def _production_health(self, step: PlannedStep, target: Target) -> str:
        state = await self.runtime.state(target)
        self.before[target.name] = state
        url = self.runtime.health_url(target, state.current) if state.current else None
        result = await http_checks.check_health(self.http, url, target.name, state.current)
        return await self._checks(step, [result])

    async def _target_present(self, step: PlannedStep, target: Target) -> str:
        self.before[target.name] = await self.runtime.state(target)
        present = await self.runtime.installed(target, self.plan.tag)
        result = CheckResult(
            "target-present",
            CheckStatus.PASS if present else CheckStatus.FAIL,
            "installed" if present else "absent",
            f"{self.plan.tag} installed",
            f"{target.name}: releases there: {', '.join(self.before[target.name].releases) or 'none'}",
            ""
            if present
            else "choose a release present on every host (`rollout status`) or deploy it",
            target.name,
        )
        return await self._checks(step, [result])

    def _touch(self, host: str) -> None:
        """Once per host: a host stopped and then switched is put back once, not twice."""
        if host not in self.touched:
            self.touched.append(host)

    async def _stop(self, target: Target) -> str:
        self._touch(target.name)  # from here on, a failure starts it again
        await self.runtime.deactivate(target)
        return "stopped (maintenance)"

    async def _install(self, target: Target) -> str:
        await self.runtime.install(target, self.plan.tag, self.plan.artifact)
        return f"{self.plan.tag} installed"

    async def _activate(self, target: Target) -> str:
        before = self.before.get(target.name)
        if self.plan.kind is Kind.ROLLBACK:
            previous = self.previous_after_rollback
        elif before is None or before.current in (None, self.plan.tag):
            previous = before.previous if before else None
        else:
            previous = before.current
        self._touch(target.name)  # from here on this host may need putting back
        await self.runtime.activate(target, self.plan.tag, previous=previous)
        return f"current -> {self.plan.tag} (previous: {previous or 'none'})"

    async def _endpoint(self, step: PlannedStep, target: Target) -> str:
        endpoint = next(
            e for e in self.runbook.verify.endpoints if step.name == f"endpoint {e.path}"
        )
        base = self._base_url(target)
        if base is None:
            return await self._checks(step, [self._no_url(step.name, target)])
        return await self._checks(
            step, [await http_checks.check_endpoint(self.http, base, endpoint, target.name)]
        )

    async def _version(self, step: PlannedStep, target: Target) -> str:
        spec = self.runbook.verify.version
        base = self._base_url(target)
        if spec is None or base is None:
            return await self._checks(step, [self._no_url("version", target)])
        result = await http_checks.check_version(
            self.http,
            base,
            spec,
            self.plan.tag,
            target.name,
            settle=spec.settle.total_seconds(),
            streak=spec.streak,
        )
        return await self._checks(step, [result])

    def _base_url(self, target: Target) -> str | None:
        return target.url or self.runbook.environment(self.plan.env).url

    @staticmethod
    def _no_url(check_id: str, target: Target) -> CheckResult:
        return CheckResult(
            check_id,
            CheckStatus.SKIP,
            "",
            "",
            "no url for this host or environment",
            "set hosts[].url or the environment's url",
            target.name,
        )

    async def _finalize(self) -> None:
        """Pruning old releases and planning the follow-ups are housekeeping: a failure is
        reported, never fails the deploy."""
        for step in self.plan.steps_in(Phase.FINALIZE):
            target = self.targets[step.host] if step.host else None
            if step.name == "followups":
                if "followups" not in self.store_actions:
                    continue  # a run without the store (the operations give the action)
                action = self.store_actions["followups"]
            elif target is not None and target.name not in self.excluded:
                action = functools.partial(self._prune, target)
            else:
                continue
            try:
                await self._step(step, action)
            except StepFailed as failure:
                where = f" on {step.host}" if step.host else ""
                self.events.emit(
                    Note(message=f"{step.name}{where} failed: {failure.reason}", level="warn")
                )

    async def _prune(self, target: Target) -> str:
        removed = await self.runtime.prune(target, self.runbook.release.keep)
        return f"removed {', '.join(removed)}" if removed else "nothing to remove"

    # --- failure ---------------------------------------------------------------------------

    async def _on_failure(self, failure: StepFailed) -> None:
        self.result.infrastructure = failure.infrastructure
        self.result.failed_host = failure.step.host
        self.result.failed_step = f"{failure.step.phase}/{failure.step.name}"
        self.result.reason = failure.reason
        if not self.touched:
            self.result.outcome = Outcome.FAILED
            self.events.emit(
                Note(message="no host was switched; nothing to put back", level="warn")
            )
            return
        self.result.outcome = Outcome.ROLLED_BACK
        await self._put_back(Outcome.ROLLED_BACK)

    async def _put_back(self, outcome: Outcome) -> None:
        """Return every touched host to what it ran before this run, all of them or say which not."""
        if not self.touched:
            return
        self.events.emit(Note(message=f"putting back {', '.join(self.touched)}", level="warn"))
        self.events.emit(PhaseStarted(phase=Phase.ROLLBACK))
        started = time.monotonic()
        for number, undo in enumerate(reversed(self.undo)):
            step = PlannedStep(Phase.ROLLBACK, "undo", None, "undo a change before the hosts")
            try:
                await self._step(step, undo)
            except StepFailed as failure:
                self.result.reason = (
                    f"{self.result.reason}; undo {number + 1} failed: {failure.reason}"
                )
        self.undo.clear()
        steps = [
            PlannedStep(Phase.ROLLBACK, "restore", h, "back to the release it ran before")
            for h in self.touched
        ]
        results = await asyncio.gather(
            *(self._step(s, self._restore_action(s)) for s in steps), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        seconds = time.monotonic() - started
        self.result.phase_seconds.append((Phase.ROLLBACK, seconds))
        status = StepStatus.FAILED if errors else StepStatus.SUCCEEDED
        self.events.emit(PhaseFinished(phase=Phase.ROLLBACK, status=status, seconds=seconds))
        if errors:
            self.result.outcome = Outcome.FAILED
            self.result.reason = f"{self.result.reason}; putting back failed: {errors[0]}"

    def _restore_action(self, step: PlannedStep) -> Callable[[], Awaitable[str]]:
        assert step.host is not None
        target = self.targets[step.host]
        before = self.before.get(step.host)

        async def restore() -> str:
            # What `current` pointed at is what ran; the version file is the runbook's note of it.
            release = None if before is None else (before.link or before.current)
            if before is None or release is None:
                await self.runtime.deactivate(target)
                return "no release ran before: stopped and unlinked"
            await self.runtime.activate(target, release, previous=before.previous)
            evidence = await self.runtime.wait_healthy(target, release)
            return f"current -> {release}; {evidence}"

        return restore

    def _finish(self) -> None:
        self.result.seconds = time.monotonic() - self._started
        self.events.emit(
            RunFinished(
                outcome=self.result.outcome,
                seconds=self.result.seconds,
                reason=self.result.reason,
                failed_host=self.result.failed_host,
                failed_step=self.result.failed_step,
                phase_seconds=tuple(self.result.phase_seconds),
            )
        )
