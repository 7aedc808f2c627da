"""A monitoring window for one environment, built from the runbook, and the deploy's monitor step.

The probe reads every verify endpoint and the health URL on every host; host statistics come
over each host's own connection when a metric asks for them; Prometheus when one is
configured; the database is pinged when the environment has one. Every sample and every
incident decision goes to the store, with the values and thresholds that made it.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx

from rollout.config import Runbook
from rollout.errors import GateFailed
from rollout.model import utcnow
from rollout.monitor.incidents import TITLES, Decision, Reading, Responder
from rollout.monitor.sources import (
    DatabaseSource,
    HostStatsSource,
    ProbeSource,
    PrometheusSource,
    Sample,
    Source,
)
from rollout.monitor.window import Outcome, Window, WindowResult
from rollout.runtimes.base import Runtime, Target
from rollout.store import Store

if TYPE_CHECKING:
    from rollout.engine.runner import Runner


def build_window(
    runbook: Runbook,
    env: str,
    targets: Mapping[str, Target],
    runtime: Runtime,
    tag: str,
    http: httpx.AsyncClient,
    *,
    duration: timedelta,
) -> Window:
    monitor = runbook.monitor
    hosts, health_path = [], None
    for target in targets.values():
        health = runtime.health_url(target, tag)
        base = target.url or runbook.environment(env).url or _origin(health)
        if base is not None:
            hosts.append((target.name, base))
        if health is not None:
            health_path = urlsplit(health).path or "/"
    paths = monitor.paths or [e.path for e in runbook.verify.endpoints]
    sources: list[Source] = [ProbeSource(http, hosts, paths, health_path=health_path)]
    if any(m.source == "host" for m in monitor.metrics.values()):
        sources.append(HostStatsSource(list(targets.values())))
    queries = {
        n: m.query for n, m in monitor.metrics.items() if m.source == "prometheus" and m.query
    }
    if queries and monitor.sources.prometheus:
        sources.append(PrometheusSource(http, monitor.sources.prometheus, queries))
    database = runbook.environment(env).database
    if database is not None:
        sources.append(DatabaseSource(database.url, runbook.config_dir))
    window = Window(
        metrics=monitor.metrics,
        sources=sources,
        responder=Responder(runbook.incidents, monitor.metrics),
        interval=monitor.interval,
        duration=duration,
        failure_limit=monitor.failure_limit,
        consecutive_error_limit=monitor.consecutive_error_limit,
        health_path=health_path,
        slo=runbook.kpi.targets.availability / 100 if _uses_burn(runbook) else None,
    )
    return window


def _uses_burn(runbook: Runbook) -> bool:
    levels = [getattr(runbook.incidents, f"level{n}") for n in (1, 2, 3)]
    return any("slo burn" in " ".join(level.when) for level in levels if level is not None)


def _origin(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class Recorder:
    """Writes a window's samples and incidents to the store and says them as events."""

    def __init__(
        self, store: Store, env: str, deployment_id: int | None, say: Callable[[str, str], None]
    ) -> None:
        self.store = store
        self.env = env
        self.deployment_id = deployment_id
        self.say = say
        self.incident_id: int | None = None
        self.level = 0
        self.impact_since: Callable[[], datetime | None] = lambda: None
        # Escalation: who is told next when an incident stays unacknowledged past its level's
        # response time (people.escalation), and the level's response times.
        self.escalation: list[str] = []
        self.respond_within: dict[int, timedelta] = {}
        self.escalated = 0
        self.detected_at: datetime | None = None

    def attach(self, window: Window) -> None:
        """Record what ``window`` measures and decides; its impact start is its first bad reading."""
        window.on_samples = self.samples
        window.on_decision = self.decision
        window.on_reading = self.reading
        self.impact_since = lambda: window.bad_since

    def samples(self, samples: list[Sample]) -> None:
        self.store.add_samples(
            self.env,
            self.deployment_id,
            [
                {
                    "metric": s.metric,
                    "host": s.host,
                    "source": s.source,
                    "at": s.at,
                    "value": s.value,
                    "ok": s.ok,
                    "labels": {**s.labels, **({"error": s.error} if s.error else {})},
                }
                for s in samples
            ],
        )

    def decision(self, decision: Decision, reading: Reading) -> None:
        finding = decision.finding
        assert finding is not None
        self.open(finding.level, "; ".join(finding.symptoms), reading, decision)

    def open(
        self, level: int, symptoms: str, reading: Reading, decision: Decision | None = None
    ) -> None:
        action = ", ".join(decision.notify) if decision is not None and decision.notify else None
        if self.incident_id is None:
            self.incident_id = self.store.open_incident(
                env=self.env,
                deployment_id=self.deployment_id,
                level=level,
                title=f"level {level} ({TITLES[level]}) incident in {self.env}",
                symptoms=symptoms,
                impact_start=self.impact_since() or reading.at,
                detected_at=utcnow(),
                action=action,
            )
            self.level = level
            self.detected_at = utcnow()
            self.say(
                f"incident #{self.incident_id} level {level} ({TITLES[level]}): {symptoms}",
                "error" if level >= 2 else "warn",
            )
        elif level > self.level:
            self.store.update_incident(self.incident_id, level=level, symptoms=symptoms)
            self.level = level
            self.say(f"incident #{self.incident_id} raised to level {level}: {symptoms}", "error")
        if decision is not None and decision.notify:
            self.say(f"actions for level {level}: {', '.join(decision.notify)}", "warn")

    def escalate(self, now: datetime) -> None:
        """Each response time that passes unacknowledged tells the next person on the path."""
        if (
            self.incident_id is None
            or self.detected_at is None
            or self.level not in self.respond_within
        ):
            return
        due = self.respond_within[self.level] * (self.escalated + 1)
        if now - self.detected_at < due or self.escalated >= len(self.escalation):
            return
        if self.store.incident(self.incident_id).acknowledged_at is not None:
            return
        person = self.escalation[self.escalated]
        self.escalated += 1
        self.store.update_incident(self.incident_id, action=f"escalated to {person}")
        self.store.append_audit(
            actor="rollout",
            action="incident.escalated",
            subject=f"incident:{self.incident_id}",
            details={
                "to": person,
                "unacknowledged_for_s": round((now - self.detected_at).total_seconds()),
            },
        )
        self.say(
            f"incident #{self.incident_id} unacknowledged for {(now - self.detected_at).total_seconds():.0f} s:"
            f" escalated to {person} (rollout ack {self.incident_id})",
            "error",
        )

    def reading(self, reading: Reading, phases: Mapping[str, str]) -> None:
        self.escalate(reading.at)
        shown = ", ".join(
            f"{name} {_value(value)} ({phases.get(name, '-')})"
            for name, value in reading.values.items()
        )
        down = " health DOWN" if reading.health_down else ""
        self.say(f"{reading.at:%H:%M:%S} {shown or 'probe only'}{down}", "info")


def recorder_for(
    runbook: Runbook,
    store: Store,
    env: str,
    deployment_id: int | None,
    say: Callable[[str, str], None],
) -> Recorder:
    from rollout.monitor.incidents import DEFAULT_LEVEL3

    recorder = Recorder(store, env, deployment_id, say)
    recorder.escalation = list(runbook.people.escalation)
    for number in (1, 2, 3):
        level = getattr(runbook.incidents, f"level{number}") or (
            DEFAULT_LEVEL3 if number == 3 else None
        )
        if level is not None:
            recorder.respond_within[number] = level.respond_within
    return recorder


def _value(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _baseline(
    store: Store, env: str, span: timedelta, deployment_id: int, health_path: str | None
) -> Callable[[], list[float]]:
    """The previous release's probe latencies of the last ``span`` before this deployment."""
    until = utcnow()

    def read() -> list[float]:
        return [
            s.value
            for s in store.samples(
                env=env, metric="latency_seconds", since=until - span, until=until
            )
            if s.value is not None
            and s.deployment_id != deployment_id
            and s.labels.get("path") != health_path
        ]

    return read


async def _watch_until_interrupted(window: Window) -> WindowResult | None:
    """Run the window; Ctrl-C while it runs stops the watching, not the release (None).

    On a terminal it asks first whether to finish the window instead. Ctrl-C is taken from
    asyncio's own handler for the length of the window only, so that everywhere else it still
    interrupts the run (and the hosts are put back).
    """
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    previous = signal.getsignal(signal.SIGINT)
    try:
        loop.add_signal_handler(signal.SIGINT, interrupted.set)
        taken = True
    except (ValueError, RuntimeError):  # not the main thread: Ctrl-C is not ours to take
        taken = False
    watching = asyncio.create_task(window.run())
    waiting = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({watching, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if not watching.done() and sys.stdin.isatty() and await _finish_watching():
            return await watching
        if watching.done():
            return watching.result()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        return None
    finally:
        waiting.cancel()
        if taken:
            loop.remove_signal_handler(signal.SIGINT)
            signal.signal(signal.SIGINT, previous)


async def _finish_watching() -> bool:
    """Ask, on a terminal, whether to finish the window or to stop watching."""
    answer = await asyncio.to_thread(
        input, "\nfinish the monitoring window (f) or stop watching, leaving it unwatched (s)? [s] "
    )
    return answer.strip().lower().startswith("f")


def _unwatched(store: Store, env: str, deployment_id: int, say: Callable[[str, str], None]) -> str:
    store.append_audit(
        actor="operator",
        action="deployment.unwatched",
        subject=f"deployment:{deployment_id}",
        details={"env": env, "why": "monitoring stopped with Ctrl-C"},
    )
    say("monitoring stopped by the operator: this deployment is unwatched", "warn")
    return "stopped by the operator (Ctrl-C): the deployment is unwatched"


def window_action(
    runbook: Runbook, store: Store, runner: Runner, deployment_id: int
) -> Callable[[], Awaitable[str]]:
    """The deploy's monitor step: a level 3 (or a metric past its limit) fails the step, which
    rolls every switched host back; the incident is kept for the operations to mark mitigated."""
    from rollout.engine.events import Note

    plan = runner.plan
    assert plan.monitor_for is not None

    def say(message: str, level: str) -> None:
        runner.events.emit(Note(message=message, level=level))

    async def act() -> str:
        recorder = recorder_for(runbook, store, plan.env, deployment_id, say)
        window = build_window(
            runbook,
            plan.env,
            runner.targets,
            runner.runtime,
            plan.tag,
            runner.http,
            duration=plan.monitor_for or timedelta(0),
        )
        recorder.attach(window)
        if runbook.monitor.baseline is not None:
            window.baseline = _baseline(
                store, plan.env, runbook.monitor.baseline, deployment_id, window.health_path
            )
        result = await _watch_until_interrupted(window)
        if result is None:  # Ctrl-C: stop watching, not the release
            runner.incident_id = recorder.incident_id
            return _unwatched(store, plan.env, deployment_id, say)
        runner.incident_id = recorder.incident_id
        return _conclude(result, recorder)

    def _conclude(result: WindowResult, recorder: Recorder) -> str:
        if result.outcome is Outcome.ROLLBACK:
            if recorder.incident_id is None and result.readings:  # a metric past its limit
                recorder.open(2, result.reason, result.readings[-1])
                runner.incident_id = recorder.incident_id
            raise GateFailed(f"monitoring: {result.reason} (incident #{recorder.incident_id})")
        if result.outcome is Outcome.INCONCLUSIVE:
            say(f"monitoring paused, a person decides: {result.reason}", "warn")
            return f"inconclusive after {result.intervals} intervals: {result.reason}"
        return f"passed: {result.reason}"

    return act


async def watch_environment(
    runbook: Runbook, env: str, duration: timedelta, say: Callable[[str, str], None]
) -> WindowResult:
    """``rollout monitor``: the window without a deploy. It records and classifies; it does not
    roll back (there is no deployment of its own to undo): a rollback decision is reported.
    The incidents it opens are told to people and shown on the status page, as in a deploy."""
    from rollout.engine.events import Note
    from rollout.engine.targets import close_targets, open_targets
    from rollout.notify import notify_sink
    from rollout.runtimes import make_runtime
    from rollout.store import open_store

    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    targets = open_targets(runbook, env)
    try:
        states = [await runtime.state(t) for t in targets.values()]
        tag = next((s.link or s.current for s in states if s.link or s.current), None) or "-"
        with open_store(runbook.store_url, redactor=runbook.redactor) as store:
            notify = notify_sink(runbook, store, env)

            def tell(message: str, level: str) -> None:
                say(message, level)
                if notify is not None:  # it picks the incident lines out of the notes
                    notify.emit(Note(message=message, level=level))

            if notify is not None:
                notify.report = lambda failure: say(str(failure), "warn")
            last = store.deployments(env=env, limit=1)
            recorder = recorder_for(runbook, store, env, last[0].id if last else None, tell)
            try:
                async with httpx.AsyncClient() as http:
                    window = build_window(
                        runbook, env, targets, runtime, tag, http, duration=duration
                    )
                    recorder.attach(window)
                    return await window.run()
            finally:
                if notify is not None:  # every message queued, before the store closes
                    await notify.flush()
    finally:
        await close_targets(targets)
