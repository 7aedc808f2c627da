"""Planning: a deployment or rollback as a value, built from the runbook alone.

``plan_deploy`` and ``plan_rollback`` touch nothing: no host, no store, no network. The plan is
what ``--dry-run`` prints and what the runner executes step by step, so what people review is
what runs. Everything that can be checked without touching a host (the tag, the artifact's
checksum, every template) is checked here, so bad input stops before the first connection.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from rollout.config import Environment, Runbook
from rollout.errors import BadInput
from rollout.model import Kind, Phase, Release
from rollout.runtimes.base import Artifact

PHASE_ORDER = (
    Phase.READINESS,
    Phase.PREFLIGHT,
    Phase.BACKUP,
    Phase.DEPLOY,
    Phase.ROLLBACK,
    Phase.VERIFY,
    Phase.MONITOR,
    Phase.FINALIZE,
)


@dataclass(frozen=True)
class PlannedStep:
    phase: Phase
    name: str
    host: str | None
    detail: str
    batch: int | None = None
    # Within a batch, steps of a lower wave finish first: a host is reached before it is
    # measured, and what runs is known before asking whether it can be switched back to.
    wave: int = 0


@dataclass(frozen=True)
class Plan:
    kind: Kind
    app: str
    env: str
    tag: str
    hosts: tuple[str, ...]
    batches: tuple[tuple[str, ...], ...]
    steps: tuple[PlannedStep, ...]
    artifact: Artifact | None
    on_failure: str
    reason: str | None = None
    database_backup: str | None = None  # a rollback that also restores this backup folder
    monitor_for: timedelta | None = None  # the monitoring window's length (None: no window)

    def phases(self) -> list[Phase]:
        present = {s.phase for s in self.steps}
        return [p for p in PHASE_ORDER if p in present]

    def steps_in(self, phase: Phase) -> list[PlannedStep]:
        return [s for s in self.steps if s.phase is phase]

    def groups(self, phase: Phase) -> Iterator[list[PlannedStep]]:
        """The phase's steps by batch: steps of one batch run together, batches in order."""
        steps = self.steps_in(phase)
        keys = sorted({(-1 if s.batch is None else s.batch, s.wave) for s in steps})
        for batch, wave in keys:
            yield [
                s for s in steps if (-1 if s.batch is None else s.batch) == batch and s.wave == wave
            ]

    def describe(self) -> list[str]:
        """The plan as lines a reviewer reads (``--dry-run``)."""
        verb = "deploy" if self.kind is Kind.DEPLOY else "roll back"
        lines = [f"{verb} {self.app} {self.tag} to {self.env}: hosts {', '.join(self.hosts)}"]
        lines.append("batches: " + " | ".join(", ".join(b) for b in self.batches))
        for phase in self.phases():
            lines.append(f"{phase}:")
            for step in self.steps_in(phase):
                where = f" on {step.host}" if step.host else ""
                batch = f" [batch {step.batch + 1}]" if step.batch is not None else ""
                lines.append(f"  - {step.name}{where}{batch}: {step.detail}")
        lines.append(f"on failure: {self.on_failure}")
        return lines


def batches(hosts: Sequence[str], size: int) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(hosts[i : i + size]) for i in range(0, len(hosts), size))


def resolve_artifact(runbook: Runbook, tag: str) -> Artifact | None:
    """Find the release's artifact and its checksum; a missing or corrupt file is bad input."""
    template = runbook.release.artifact
    if template is None:
        return None
    path = Path(template.format(tag=tag))
    path = path if path.is_absolute() else runbook.config_dir / path
    if not path.is_file():
        raise BadInput(
            f"release artifact for {tag} not found: {path}",
            hint="build it first, or fix release.artifact in rollout.yml",
        )
    digest = _sha256(path)
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.is_file():
        expected = sidecar.read_text().split()[0] if sidecar.read_text().split() else ""
        if expected != digest:
            raise BadInput(
                f"artifact {path.name} does not match its checksum file {sidecar.name}",
                hint="the artifact is corrupt or was rebuilt; rebuild it and its .sha256 together",
            )
    return Artifact(path=path, sha256=digest)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plan_deploy(
    runbook: Runbook, env_name: str, tag: str, *, monitor_for: timedelta | None = None
) -> Plan:
    """The whole runbook for ``tag``. ``monitor_for``: the monitoring window's length (None: the
    runbook's ``monitor.window`` when it names metrics; zero: no window, the deploy unwatched)."""
    env = runbook.environment(env_name)
    release = Release.parse(tag, runbook.release.tag_pattern)
    # A release-dir artifact is a file here; a compose artifact is an image the hosts check.
    artifact = (
        resolve_artifact(runbook, release.tag) if runbook.runtime.kind == "release-dir" else None
    )
    names = tuple(h.name for h in env.hosts)
    groups = batches(names, env.batch_size(len(names)))
    steps: list[PlannedStep] = [
        *_readiness_steps(runbook),
        PlannedStep(Phase.PREFLIGHT, "artifact", None, _artifact_detail(artifact)),
        *_preflight_env_steps(runbook, env_name, env, release.tag, deploying=True),
        *_preflight_host_steps(runbook, env),
    ]
    if env.database is not None and env.database.backup_before_deploy:
        level = env.database.verify_level
        steps.append(
            PlannedStep(
                Phase.BACKUP, "db-backup", None, f"back up the database, verify it to L{level}"
            )
        )
    steps += [PlannedStep(Phase.DEPLOY, "install", h, _install_detail(runbook, tag)) for h in names]
    if env.database is not None and env.database.migrations is not None:
        # Planned (linted, classed) at pre-flight; applied after every install, before the
        # first switch, so the old release keeps running on the expanded schema meanwhile.
        steps.append(
            PlannedStep(
                Phase.PREFLIGHT, "migrations", None, "pending migrations linted, expand only"
            )
        )
        steps.append(
            PlannedStep(Phase.DEPLOY, "migrate", None, "apply the pending migrations", wave=1)
        )
    steps += _switch_steps(Phase.DEPLOY, groups, tag)
    steps += _verify_steps(runbook, env, tag)
    window = (
        runbook.monitor.window if monitor_for is None and runbook.monitor.metrics else monitor_for
    )
    if window:
        every = runbook.monitor.interval.total_seconds()
        names_ = ", ".join(runbook.monitor.metrics) or "health"
        steps.append(
            PlannedStep(
                Phase.MONITOR,
                "window",
                None,
                f"watch {names_} for {window} every {every:g} s; incidents by level, roll back on level 3",
            )
        )
    steps += [
        PlannedStep(Phase.FINALIZE, "prune", h, f"keep the last {runbook.release.keep} releases")
        for h in names
    ]
    if runbook.followups:
        steps.append(PlannedStep(Phase.FINALIZE, "followups", None, _followups_detail(runbook)))
    return Plan(
        kind=Kind.DEPLOY,
        app=runbook.app,
        env=env_name,
        tag=release.tag,
        hosts=names,
        batches=groups,
        steps=tuple(steps),
        artifact=artifact,
        on_failure="preflight or install: stop, nothing switched; "
        "activate, health, verify or a monitoring rollback: every touched host back to its "
        "previous release",
        monitor_for=window or None,
    )


def plan_checks(runbook: Runbook, env_name: str, phase: Phase, tag: str | None) -> Plan:
    """Only a suite of checks (``rollout check`` / ``rollout verify``): nothing is switched.

    Without a tag, pre-flight leaves out what needs one (the artifact, staging running it).
    """
    env = runbook.environment(env_name)
    if tag is not None:
        Release.parse(tag, runbook.release.tag_pattern)
    names = tuple(h.name for h in env.hosts)
    artifact = None
    if phase is Phase.VERIFY:
        assert tag is not None  # the caller finds out what runs when no tag is given
        steps = _verify_steps(runbook, env, tag)
    else:
        steps = [
            s
            for s in _preflight_env_steps(runbook, env_name, env, tag or "")
            if tag or s.name != "staging"
        ]
        if tag is not None and runbook.runtime.kind == "release-dir" and runbook.release.artifact:
            artifact = resolve_artifact(runbook, tag)
            steps.insert(
                0, PlannedStep(Phase.PREFLIGHT, "artifact", None, _artifact_detail(artifact))
            )
        steps += _preflight_host_steps(runbook, env)
    return Plan(
        kind=Kind.DEPLOY,
        app=runbook.app,
        env=env_name,
        tag=tag or "",
        hosts=names,
        batches=(names,),
        steps=tuple(steps),
        artifact=artifact,
        on_failure="report; nothing is changed",
    )


def plan_rollback(
    runbook: Runbook,
    env_name: str,
    target: str,
    *,
    reason: str | None,
    database_backup: str | None = None,
) -> Plan:
    """Switch every host to ``target``; with ``database_backup``, restore that backup between
    stopping the app and starting ``target`` (the runbook's database rollback)."""
    env = runbook.environment(env_name)
    release = Release.parse(target, runbook.release.tag_pattern)
    names = tuple(h.name for h in env.hosts)
    groups = batches(names, env.batch_size(len(names)))
    steps = []
    for h in names:
        steps.append(PlannedStep(Phase.PREFLIGHT, "connect", h, "reach the host"))
        steps.append(PlannedStep(Phase.PREFLIGHT, "target-present", h, f"{target} fully installed"))
    if database_backup is not None:
        steps += [
            PlannedStep(Phase.ROLLBACK, "stop", h, "stop the app (maintenance)") for h in names
        ]
        steps.append(
            PlannedStep(
                Phase.ROLLBACK,
                "db-restore",
                None,
                f"safety backup, restore {Path(database_backup).name} into a new database,"
                " compare, swap (the old one is kept)",
                wave=1,
            )
        )
    steps += _switch_steps(Phase.ROLLBACK, groups, target)
    steps += _verify_steps(runbook, env, target)
    return Plan(
        kind=Kind.ROLLBACK,
        app=runbook.app,
        env=env_name,
        tag=release.tag,
        hosts=names,
        batches=groups,
        steps=tuple(steps),
        artifact=None,
        on_failure="target missing anywhere: refuse before touching a host; "
        "a host failing: stop and report it"
        + (
            "; the restore or the hosts after it failing: the old database back"
            if database_backup
            else ""
        ),
        reason=reason,
        database_backup=database_backup,
    )


def _followups_detail(runbook: Runbook) -> str:
    counts = ", ".join(f"{len(items)} at +{after}" for after, items in runbook.followups.items())
    return f"plan the post-deployment follow-ups ({counts}): rollout followups"


def _readiness_steps(runbook: Runbook) -> list[PlannedStep]:
    """The readiness review gates a deploy only when the runbook asks for sign-offs or items."""
    policy = runbook.readiness
    if policy.approvals.count == 0 and not policy.approvals.roles and not policy.require:
        return []
    return [PlannedStep(Phase.READINESS, "review", None, "sign-offs and checklist items recorded")]


def _install_detail(runbook: Runbook, tag: str) -> str:
    if runbook.runtime.kind == "compose":
        return f"pull the image for {tag} (the running containers are untouched)"
    return f"unpack {tag} into releases/{tag} (checksum verified)"


def _switch_steps(phase: Phase, groups: tuple[tuple[str, ...], ...], tag: str) -> list[PlannedStep]:
    """Batch by batch, each host switched then checked healthy before the next batch starts."""
    steps = []
    for i, group in enumerate(groups):
        for h in group:
            steps.append(
                PlannedStep(phase, "activate", h, f"stop, switch current -> {tag}, start", i)
            )
            steps.append(PlannedStep(phase, "health", h, "wait for the health URL", i))
    return steps


def _artifact_detail(artifact: Artifact | None) -> str:
    if artifact is None:
        return "no artifact file: the runtime checks the release on each host"
    return f"{artifact.path.name} sha256 {artifact.sha256[:12]}"


def _preflight_host_steps(runbook: Runbook, env: Environment) -> list[PlannedStep]:
    """Per host: reach it (wave 0), measure it, all at once (wave 1), then the way back (wave 2)."""
    checks = runbook.checks
    mounts = ", ".join(checks.disk_mounts)
    steps = []
    for h in env.hosts:
        # Reach every host first: one unreachable host stops the deploy before anything changes.
        steps.append(
            PlannedStep(Phase.PREFLIGHT, "connect", h.name, f"reach {h.address} ({h.kind})")
        )
        for name, detail in (
            ("disk", f"disk use of {mounts} < {checks.disk_max:g} %"),
            ("runtime", f"{runbook.runtime.kind} ready for the release"),
            ("cpu", f"CPU busy < {checks.cpu_max:g} %"),
            ("memory", f"memory used < {checks.memory_max:g} %"),
            ("production-health", "running release healthy"),
        ):
            steps.append(PlannedStep(Phase.PREFLIGHT, name, h.name, detail, wave=1))
        steps.append(
            PlannedStep(
                Phase.PREFLIGHT,
                "rollback-ready",
                h.name,
                "the running release can be switched back to",
                wave=2,
            )
        )
    return steps


def _preflight_env_steps(
    runbook: Runbook, env_name: str, env: Environment, tag: str, *, deploying: bool = False
) -> list[PlannedStep]:
    """Checks of the environment as a whole, each planned only when the runbook configures it.

    A deploy with a backup phase takes and verifies a fresh backup itself, which proves more
    than the freshness gate, so that gate is left to `rollout check` and to deploys without."""
    steps = []
    if "staging" in runbook.environments and env_name != "staging":
        steps.append(
            PlannedStep(Phase.PREFLIGHT, "staging", None, f"staging healthy and running {tag}")
        )
    if env.database is not None:
        steps.append(PlannedStep(Phase.PREFLIGHT, "database", None, "connects, SELECT 1"))
        if env.database.backups and not (deploying and env.database.backup_before_deploy):
            steps.append(
                PlannedStep(
                    Phase.PREFLIGHT,
                    "backup",
                    None,
                    f"newest backup in {env.database.backups} < {runbook.checks.backup_max_age}",
                )
            )
    if env.url is not None and env.url.startswith("https://"):
        steps.append(
            PlannedStep(
                Phase.PREFLIGHT,
                "certificate",
                None,
                f"certificate valid > {runbook.checks.certificate_min_days} days",
            )
        )
    if runbook.checks.monitoring_url:
        steps.append(
            PlannedStep(
                Phase.PREFLIGHT, "monitoring", None, f"{runbook.checks.monitoring_url} answers"
            )
        )
    return steps


def _verify_steps(runbook: Runbook, env: Environment, tag: str) -> list[PlannedStep]:
    steps = []
    for h in env.hosts:
        for endpoint in runbook.verify.endpoints:
            conditions = " and ".join(endpoint.conditions)
            steps.append(PlannedStep(Phase.VERIFY, f"endpoint {endpoint.path}", h.name, conditions))
        if runbook.verify.version is not None:
            v = runbook.verify.version
            steps.append(
                PlannedStep(Phase.VERIFY, "version", h.name, f"{v.path} .{v.field} == {tag}")
            )
    return steps + _grader_steps(runbook, env)


def _grader_steps(runbook: Runbook, env: Environment) -> list[PlannedStep]:
    """The graders run once, against the environment's public URL (what users reach)."""
    if env.url is None:
        return []
    verify, steps = runbook.verify, []
    if verify.headers is not None:
        steps.append(
            PlannedStep(Phase.VERIFY, "security-headers", None, f"{env.url} headers graded")
        )
    if verify.tls is not None and env.url.startswith("https://"):
        steps.append(
            PlannedStep(Phase.VERIFY, "tls-grade", None, f"TLS grade >= {verify.tls.min_grade}")
        )
    if verify.load is not None:
        load = verify.load
        steps.append(
            PlannedStep(
                Phase.VERIFY,
                "load",
                None,
                f"{load.requests} requests, {load.concurrency} at once: {', '.join(load.thresholds) or 'no errors'}",
            )
        )
    return steps
