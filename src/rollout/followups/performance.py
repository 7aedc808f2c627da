"""Performance analysis: the users' latency and error rate after a deployment against before.

Each is compared by the monitoring window's own baseline judge (``monitor.judge.classify``:
one-sided Mann-Whitney U, 95 % confidence, at least 10 requests on each side). Latency counts
as higher only when its median also grew by the judge's allowance (10 %); for the error rate,
whose median is mostly zero, the test alone decides. The verdict is ``regressed`` when either
is significantly higher, ``inconclusive`` when either side has too few requests, else ``ok``.
"""

from __future__ import annotations

from typing import Any

from rollout.followups.evidence import Evidence
from rollout.followups.finding import Finding
from rollout.monitor.judge import (
    BaselineMetric,
    Classification,
    Direction,
    MetricComparison,
    classify,
)

LATENCY = BaselineMetric("latency", Direction.INCREASE)
ERRORS = BaselineMetric("error rate", Direction.INCREASE)


def analyse(before: Evidence, after: Evidence) -> Finding:
    latency = classify(LATENCY, before.latencies, after.latencies)
    errors = classify(ERRORS, before.errors, after.errors)
    compared = (latency, errors)
    if any(c.classification is Classification.HIGH for c in compared):
        verdict = "regressed"
    elif any(c.classification is Classification.NODATA for c in compared):
        verdict = "inconclusive"
    else:
        verdict = "ok"
    counts = f"{before.requests} requests before, {after.requests} after"
    if not (before.requests and after.requests):
        summary = f"nothing to compare: {counts} (the probe records requests while watching)"
    else:
        summary = (
            f"p95 {_seconds(before.p95)} -> {_seconds(after.p95)} ({_said(latency)}); "
            f"error rate {_percent(before.error_rate)} -> {_percent(after.error_rate)}"
            f" ({_said(errors)}); {counts}"
        )
    return Finding(
        verdict,
        summary,
        {
            "before": before.summary(),
            "after": after.summary(),
            "latency": _comparison(latency),
            "errors": _comparison(errors),
        },
    )


def _said(comparison: MetricComparison) -> str:
    match comparison.classification:
        case Classification.HIGH:
            return f"higher, p={comparison.p_value:.2g}"
        case Classification.NODATA:
            return "too few requests to compare"
        case _:
            return "no significant increase"


def _comparison(comparison: MetricComparison) -> dict[str, Any]:
    return {
        "classification": comparison.classification.value,
        "reason": comparison.reason,
        "p_value": comparison.p_value,
        "baseline_n": comparison.baseline_n,
        "canary_n": comparison.canary_n,
    }


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"
