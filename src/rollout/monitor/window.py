"""The monitoring window: every interval, collect, reduce, judge, classify, act.

Raw samples (every probe request, every Prometheus series, every host) are recorded as they
come; each metric of ``monitor.metrics`` is then reduced to one value for the interval (probe
latency percentiles and error rates over the last few intervals, the worst host, the worst
series) and judged against its thresholds by Argo's rules, while the incident levels look at
the same values. The window ends early on a rollback decision (a level 3, a level 2 that
persisted, or a metric past its failure limit) or on an inconclusive pause (a source that kept
failing: monitoring that cannot see is never a pass), else when its time is up.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from rollout.config import Metric
from rollout.monitor.incidents import Decision, Reading, Responder
from rollout.monitor.judge import (
    AnalysisPhase,
    Condition,
    Measurement,
    MetricJudge,
    MetricRule,
    Op,
)
from rollout.monitor.rules import probe_stat
from rollout.monitor.sources import DB_QUERY, Sample, Source

HOST_METRICS = {"cpu": "cpu_percent", "memory": "memory_percent", "load": "load1"}
LOOKBACK = 5  # intervals of probe samples a percentile or an error rate is taken over


class Outcome(StrEnum):
    PASSED = "passed"
    ROLLBACK = "rollback"
    INCONCLUSIVE = "inconclusive"  # paused: a person decides


@dataclass
class WindowResult:
    outcome: Outcome
    reason: str
    intervals: int
    decision: Decision | None = None  # the incident decision that ended it, if one did
    readings: list[Reading] = field(default_factory=list)


@dataclass
class Window:
    metrics: Mapping[str, Metric]
    sources: Sequence[Source]
    responder: Responder
    interval: timedelta
    duration: timedelta
    failure_limit: int = 3
    consecutive_error_limit: int = 4
    # The previous release's probe latencies, recorded before the switch: compared with this
    # window's at its end (Mann-Whitney U, Kayenta's score). None: no comparison.
    baseline: Callable[[], Sequence[float]] | None = None
    health_path: str | None = None  # its latency is not what users wait for: not compared
    # The availability target (0.999) the probe's error ratio burns; None: no burn-rate check.
    slo: float | None = None
    _errors: deque[tuple[datetime, float]] = field(default_factory=deque)
    on_samples: Callable[[list[Sample]], None] = lambda samples: None
    on_decision: Callable[[Decision, Reading], None] = lambda decision, reading: None
    on_reading: Callable[[Reading, Mapping[str, str]], None] = lambda reading, phases: None
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    _recent: deque[list[Sample]] = field(default_factory=lambda: deque(maxlen=LOOKBACK))
    _latencies: list[float] = field(default_factory=list)
    bad_since: datetime | None = None

    def __post_init__(self) -> None:
        self.judges = {
            name: MetricJudge(
                MetricRule(
                    name,
                    failure=_failure_condition(metric),
                    failure_limit=self.failure_limit,
                    consecutive_error_limit=self.consecutive_error_limit,
                    # "no data" for a while is a pause, like errors: the window cannot see
                    inconclusive_limit=self.consecutive_error_limit,
                )
            )
            for name, metric in self.metrics.items()
            if metric.max is not None or metric.min is not None
        }

    async def run(self) -> WindowResult:
        started = self.now()
        intervals = 0
        readings: list[Reading] = []
        while True:
            tick = asyncio.get_running_loop().time()
            reading = await self._interval()
            intervals += 1
            readings.append(reading)
            phases = self._judge(reading)
            decision = self.responder.respond(reading)
            self.on_reading(reading, phases)
            if decision.finding is not None:
                self.on_decision(decision, reading)
            if decision.rollback:
                return WindowResult(
                    Outcome.ROLLBACK, decision.reason, intervals, decision, readings
                )
            failed = [n for n, p in phases.items() if p == AnalysisPhase.FAILED.value]
            if failed:
                reason = "; ".join(f"{n}: {self.judges[n].verdict().reason}" for n in failed)
                return WindowResult(
                    Outcome.ROLLBACK,
                    f"failure limit passed: {reason}",
                    intervals,
                    decision,
                    readings,
                )
            blind = [
                n
                for n, p in phases.items()
                if p in (AnalysisPhase.ERROR.value, AnalysisPhase.INCONCLUSIVE.value)
            ]
            if blind:
                reason = "; ".join(f"{n}: {self.judges[n].verdict().reason}" for n in blind)
                return WindowResult(
                    Outcome.INCONCLUSIVE, f"cannot judge: {reason}", intervals, decision, readings
                )
            if self.now() - started + self.interval > self.duration:
                passed = f"{intervals} intervals within thresholds"
                return self._compared(
                    WindowResult(Outcome.PASSED, passed, intervals, None, readings)
                )
            spent = asyncio.get_running_loop().time() - tick
            await self.sleep(max(0.0, self.interval.total_seconds() - spent))

    def _compared(self, result: WindowResult) -> WindowResult:
        """The thresholds passed; does the release also look like the one before it?"""
        if self.baseline is None:
            return result
        from rollout.monitor.judge import BaselineMetric, ComparisonResult, Direction, compare

        metric = BaselineMetric("latency_seconds", Direction.INCREASE, critical=True)
        verdict = compare([metric], {metric.name: self.baseline()}, {metric.name: self._latencies})
        detail = "; ".join(f"{m.metric.name} {m.reason}" for m in verdict.metrics)
        said = f"baseline comparison {verdict.result.value} (score {verdict.score:.0f}): {detail}"
        if verdict.result is ComparisonResult.FAIL:
            return WindowResult(Outcome.ROLLBACK, said, result.intervals, None, result.readings)
        return WindowResult(
            result.outcome, f"{result.reason}; {said}", result.intervals, None, result.readings
        )

    async def _interval(self) -> Reading:
        gathered = await asyncio.gather(*(s.collect() for s in self.sources))
        samples = [sample for batch in gathered for sample in batch]
        self.on_samples(samples)
        self._recent.append(samples)
        self._latencies += [
            s.value
            for s in samples
            if s.metric == "latency_seconds"
            and s.value is not None
            and s.labels.get("path") != self.health_path
        ]
        database_down = any(s.metric == DB_QUERY and s.value is None for s in samples)
        down = sorted({s.host or "?" for s in samples if s.metric == "health" and s.value == 0.0})
        values = {
            name: self._reduce(name, metric, samples) for name, metric in self.metrics.items()
        }
        errors = {
            name: error
            for name, metric in self.metrics.items()
            if values[name] is None and (error := _error_of(name, metric, samples))
        }
        burn = self._burn(samples)
        return Reading(
            at=self.now(),
            values=values,
            errors=errors,
            slo_burn=burn is not None,
            health_down=bool(down),
            database_down=database_down,
            detail={
                **({"health down": ", ".join(down)} if down else {}),
                **({"slo burn": burn} if burn else {}),
            },
        )

    def _burn(self, samples: list[Sample]) -> str | None:
        """The SRE page rules, their windows scaled into this monitoring window, on the probe's
        error ratio of the users' paths; what fired, or None."""
        if self.slo is None:
            return None
        from rollout.monitor.judge import SRE_BURN_RULES, Severity, evaluate_burn, scale_rules

        now = self.now()
        self._errors.extend(
            (now, s.value)
            for s in samples
            if s.metric == "http_error"
            and s.value is not None
            and s.labels.get("path") != self.health_path
        )
        pages = [r for r in SRE_BURN_RULES if r.severity is Severity.PAGE]
        rules = scale_rules(
            pages, max(r.long_window for r in pages) / max(self.duration, self.interval)
        )
        ratios: dict[timedelta, float | None] = {}
        for rule in rules:
            for span in (rule.long_window, rule.short_window):
                seen = [v for at, v in self._errors if now - at <= span]
                ratios[span] = statistics.fmean(seen) if len(seen) >= 10 else None
        verdict = evaluate_burn(self.slo, ratios, rules)
        return verdict.reason if verdict.fired else None

    def _reduce(self, name: str, metric: Metric, samples: list[Sample]) -> float | None:
        if metric.source == "probe":
            # The health path answers for itself (health down); the users' paths make the
            # latency and the error rate, so a full outage of them is not diluted by it.
            probed = [s for batch in self._recent for s in batch if s.source == "probe"]
            users = [
                s
                for s in probed
                if s.metric == "health" or s.labels.get("path") != self.health_path
            ]
            probed_users = any(s.metric == "latency_seconds" for s in users)
            return _probe_value(
                probe_stat(name, metric.stat), users if probed_users else probed, samples
            )
        if metric.source == "host":
            wanted = HOST_METRICS.get(name, name)
            return _worst([s for s in samples if s.source == "host" and s.metric == wanted])
        if metric.source == "prometheus":
            return _worst([s for s in samples if s.source == "prometheus" and s.metric == name])
        if metric.source == "database":
            return _worst([s for s in samples if s.source == "database" and s.metric == DB_QUERY])
        return None

    def _judge(self, reading: Reading) -> dict[str, str]:
        phases = {}
        bad = reading.health_down or reading.database_down
        for name, judge in self.judges.items():
            value = reading.values.get(name)
            error = reading.errors.get(name)
            judged = judge.add(Measurement(value, error if value is None else None))
            bad = bad or judged.phase is AnalysisPhase.FAILED
            phases[name] = judge.phase.value
        # The impact started at the first reading of the current run of bad ones, which may be
        # an interval or two before a level's symptoms (over several intervals) decide.
        if not bad:
            self.bad_since = None
        elif self.bad_since is None:
            self.bad_since = reading.at
        return phases


def _failure_condition(metric: Metric) -> Condition:
    """Argo's failureCondition from max (value > max) or min (value < min)."""
    if metric.max is not None:
        limit = metric.limit(metric.max)
        assert limit is not None
        return Condition(Op.GT, limit)
    limit = metric.limit(metric.min)
    assert limit is not None
    return Condition(Op.LT, limit)


def _error_of(name: str, metric: Metric, samples: list[Sample]) -> str | None:
    """Why a metric has no value this interval: its source's error, when it gave one."""
    wanted = {
        "probe": None,
        "host": HOST_METRICS.get(name, name),
        "prometheus": name,
        "database": DB_QUERY,
    }.get(metric.source)
    for s in samples:
        if s.source == metric.source and s.error and (wanted is None or s.metric == wanted):
            return f"{s.source}: {s.error}"
    return None


def _worst(samples: list[Sample]) -> float | None:
    values = [s.value for s in samples if s.value is not None and math.isfinite(s.value)]
    return max(values) if values else None


def _probe_value(stat: str, recent: list[Sample], current: list[Sample]) -> float | None:
    if stat == "health":
        health = [s.value for s in current if s.metric == "health" and s.value is not None]
        return min(health) if health else None
    if stat == "error_rate":
        errors = [s.value for s in recent if s.metric == "http_error" and s.value is not None]
        return statistics.fmean(errors) if errors else None
    latencies = sorted(
        s.value for s in recent if s.metric == "latency_seconds" and s.value is not None
    )
    if not latencies:
        return None
    if stat == "mean":
        return statistics.fmean(latencies)
    q = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}[stat]
    return latencies[min(len(latencies) - 1, math.ceil(q * len(latencies)) - 1)]
