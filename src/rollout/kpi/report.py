"""The KPI report: each figure beside its target from ``kpi.targets`` and its DORA tiers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC
from typing import Any

from rollout.config import KpiTargets
from rollout.kpi import dora
from rollout.kpi.queries import Facts, Spread
from rollout.kpi.slo import PAGE_BURN_RATES, Budget, budget


@dataclass(frozen=True)
class Figure:
    """One KPI: its value in ``unit``, the target it is held to, and its DORA tiers."""

    key: str
    label: str
    value: float | None
    unit: str  # "/week", "days/week", "min", "%", "s", "x"
    target: str | None = None
    met: bool | None = None
    tiers: dict[str, str | None] = field(default_factory=dict)
    note: str = ""


@dataclass(frozen=True)
class Report:
    env: str
    since: str
    until: str
    figures: tuple[Figure, ...]
    facts: Facts
    budget: Budget

    def figure(self, key: str) -> Figure:
        return next(f for f in self.figures if f.key == key)

    def to_json(self) -> dict[str, Any]:
        return {
            "env": self.env,
            "since": self.since,
            "until": self.until,
            "figures": {f.key: asdict(f) for f in self.figures},
            "facts": asdict(self.facts),
            "budget": asdict(self.budget),
        }


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 60


def _at_most(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def _percent(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def build(facts: Facts, targets: KpiTargets) -> Report:
    """All figures from the loaded facts (pure: no database here)."""
    w = facts.window
    slo = budget(
        facts.samples.window, facts.samples.last_1h, facts.samples.last_6h, targets.availability
    )
    figures = (
        *_frequency(facts, targets),
        *_lead_times(facts, targets),
        *_failures(facts, targets),
        *_recovery(facts, targets),
        *_acknowledge(facts),
        *_service(facts, targets, slo),
    )
    return Report(
        env=w.env,
        since=w.since.isoformat(timespec="seconds"),
        until=w.until.isoformat(timespec="seconds"),
        figures=figures,
        facts=facts,
        budget=slo,
    )


def _counted_weeks(facts: Facts) -> tuple[float, str]:
    """The weeks deployments are counted over, and how to say where they start.

    A window reaching back before the environment's first record (of any deployment) starts
    on that record's UTC day: a team whose records began yesterday has deployed for a day,
    not for the 90 days asked. Cut so, it still counts at least a week (or the whole window,
    if shorter): one day's deployments are not a weekly rate.
    """
    w = facts.window
    first = facts.delivery.records_start
    if first is None:
        return w.seconds / dora.WEEK, ""
    day = first.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if day <= w.since:
        return w.seconds / dora.WEEK, ""
    counted = (w.until - min(day, w.until)).total_seconds()
    weeks = max(counted, min(dora.WEEK, w.seconds)) / dora.WEEK
    return weeks, f"records start {day:%Y-%m-%d}"


def _frequency(facts: Facts, targets: KpiTargets) -> list[Figure]:
    weeks, start = _counted_weeks(facts)
    per_week = facts.delivery.deployments / weeks if weeks > 0 else None
    wanted = dora.frequency_target(targets.deployment_frequency)
    last_day = int((facts.window.until.timestamp() - 1e-6) // dora.DAY)  # inside the window
    days = dora.median_days_per_week(facts.delivery.deployment_days, last_day, int(weeks))
    counted = max(int(weeks), 1)
    whole = f"over {counted} whole week{'s' if counted > 1 else ''}"
    return [
        Figure(
            "deployment_frequency",
            "deployment frequency",
            per_week,
            "/week",
            f">= {targets.deployment_frequency} ({wanted:.2g}/week)",
            None if per_week is None else per_week >= wanted,
            dora.tiers("deployment_frequency", per_week),
            f"{facts.delivery.deployments} production deployments in {weeks:.1f} weeks"
            + (f" ({start})" if start else ""),
        ),
        Figure(
            "deployment_days",
            "median deployment days per week",
            days,
            "days/week",
            note=f"{whole} since {start}" if start else f"{whole} of the window",
        ),
    ]


def _median(key: str, label: str, spread: Spread, limit_s: float, tier: str, note: str) -> Figure:
    """A time's median in minutes against its limit (exclusive) and its DORA tiers."""
    return Figure(
        key,
        f"{label} (median)",
        _minutes(spread.p50),
        "min",
        f"< {limit_s / 60:g} min",
        None if spread.p50 is None else spread.p50 < limit_s,
        dora.tiers(tier, spread.p50),
        note,
    )


def _lead(key: str, label: str, spread: Spread, target_s: float, note: str) -> list[Figure]:
    return [
        _median(key, label, spread, target_s, "lead_time", note),
        Figure(f"{key}_p90", f"{label} (p90)", _minutes(spread.p90), "min"),
    ]


def _lead_times(facts: Facts, targets: KpiTargets) -> list[Figure]:
    d = facts.delivery
    limit = targets.lead_time.total_seconds()
    note = f"{d.changes} changes"
    if d.lead_skipped:
        note += f", {d.lead_skipped} left out (deployed before committed or merged: clock skew)"
    return [
        *_lead(
            "lead_time_commit", "lead time, commit to production", d.lead_from_commit, limit, note
        ),
        *_lead(
            "lead_time_merge",
            "lead time, merge to production",
            d.lead_from_merge,
            limit,
            f"{d.lead_from_merge.count} changes with a merge time",
        ),
    ]


def _failures(facts: Facts, targets: KpiTargets) -> list[Figure]:
    d = facts.delivery
    cfr = _percent(d.failed, d.deployments)
    rollbacks = _percent(d.rolled_back, d.deployments)
    limit = targets.change_failure_rate
    return [
        Figure(
            "change_failure_rate",
            "change failure rate",
            cfr,
            "%",
            f"<= {limit:g} %",
            _at_most(cfr, limit),
            dora.tiers("change_failure_rate", cfr),
            f"{d.failed} of {d.deployments} deployments: {d.rolled_back} rolled back, "
            f"{d.with_incident} with an incident, {d.hotfixed} hotfixed (each counted once)",
        ),
        Figure(
            "rollback_rate",
            "rollback rate",
            rollbacks,
            "%",
            f"<= {limit:g} %",
            _at_most(rollbacks, limit),
            note="the runbook's definition: rollbacks only",
        ),
    ]


def _recovery(facts: Facts, targets: KpiTargets) -> list[Figure]:
    limit = targets.recovery_time.total_seconds()
    overall = facts.recovery
    figures = [
        _median(
            "recovery_time",
            "failed deployment recovery time",
            overall,
            limit,
            "recovery_time",
            f"{overall.count} incidents from deployments, impact start to mitigated",
        ),
        Figure(
            "recovery_time_p90",
            "failed deployment recovery time (p90)",
            _minutes(overall.p90),
            "min",
        ),
    ]
    for level in facts.levels:
        spread = level.recovery
        figures.append(
            _median(
                f"recovery_time_level{level.level}",
                f"recovery time, level {level.level}",
                spread,
                limit,
                "recovery_time",
                f"p90 {_show(_minutes(spread.p90))} min over {spread.count} incidents",
            )
        )
    return figures


def _acknowledge(facts: Facts) -> list[Figure]:
    figures = []
    for level in facts.levels:
        in_time = _percent(level.acknowledged_in_time, level.incidents)
        spread = level.to_acknowledge
        figures.append(
            Figure(
                f"acknowledged_in_time_level{level.level}",
                f"acknowledged within {level.respond_within / 60:g} min, level {level.level}",
                in_time,
                "%",
                "100 %",
                None if in_time is None else level.acknowledged_in_time == level.incidents,
                note=(
                    f"{level.acknowledged} of {level.incidents} acknowledged; median "
                    f"{_show(_minutes(spread.p50))} min, p90 {_show(_minutes(spread.p90))} min"
                ),
            )
        )
    return figures


def _service(facts: Facts, targets: KpiTargets, slo: Budget) -> list[Figure]:
    s = facts.samples
    error_rate = None if s.window.error_ratio is None else 100 * s.window.error_ratio
    p95_limit = targets.response_time_p95.total_seconds()
    db_limit = targets.db_query_time.total_seconds()
    db_note = f"{s.db_queries} timed queries"
    if s.db_query_failed:
        db_note += f", {s.db_query_failed} unanswered (database down)"
    burn_note = ", ".join(
        f"{span} {_show(rate)} (page at {PAGE_BURN_RATES[span]:g})"
        for span, rate in (("1h", slo.burn_rate_1h), ("6h", slo.burn_rate_6h))
    )
    return [
        Figure(
            "availability",
            "availability",
            slo.availability_percent,
            "%",
            f">= {targets.availability:g} %",
            None
            if slo.availability_percent is None
            else slo.availability_percent >= targets.availability,
            note=f"{s.window.total - s.window.bad} of {s.window.total} probe requests good",
        ),
        Figure(
            "error_budget_left",
            "error budget left",
            slo.budget_left_percent,
            "%",
            ">= 0 %",
            None if slo.budget_left_percent is None else slo.budget_left_percent >= 0,
            note=f"{s.window.bad} errors of {slo.allowed_errors:.0f} allowed",
        ),
        Figure(
            "burn_rate",
            "burn rate over the window",
            slo.burn_rate,
            "x",
            "<= 1",
            _at_most(slo.burn_rate, 1.0),
            note=burn_note,
        ),
        Figure(
            "error_rate",
            "error rate",
            error_rate,
            "%",
            f"< {targets.error_rate:g} %",
            None if error_rate is None else error_rate < targets.error_rate,
        ),
        Figure(
            "response_time_p95",
            "response time p95",
            s.latency_p95,
            "s",
            f"< {p95_limit:g} s",
            None if s.latency_p95 is None else s.latency_p95 < p95_limit,
            note=f"{s.latencies} latency samples",
        ),
        Figure(
            "db_query_time",
            "database query time p95",
            None if s.db_query_p95 is None else s.db_query_p95 * 1000,
            "ms",
            f"< {db_limit * 1000:g} ms",
            None if s.db_query_p95 is None else s.db_query_p95 < db_limit,
            note=db_note,
        ),
    ]


def _show(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"
