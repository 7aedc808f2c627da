"""A deployment's charts: its timeline by phase, and what monitoring measured during it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from rollout.report.charts import Bar, Chart, Series
from rollout.report.deployment import DeploymentFacts
from rollout.report.formats import seconds
from rollout.store.records import SampleRecord

OK_COLOR = "#2563eb"
FAILED_COLOR = "#dc2626"
RUNNING_COLOR = "#d97706"
ERROR_BINS = 40  # error-rate buckets over the monitored span: enough to see when it started
MAX_METRICS = 8  # charts per report; the rest are summarised in the tables


def timeline(facts: DeploymentFacts) -> Chart:
    start = facts.deployment.started_at
    bars = tuple(
        Bar(
            row=stage.phase,
            start=(stage.started_at - start).total_seconds(),
            length=0.0 if stage.duration is None else stage.duration.total_seconds(),
            color=FAILED_COLOR
            if stage.failed
            else RUNNING_COLOR
            if stage.finished_at is None
            else OK_COLOR,
            text=seconds(stage.duration) if stage.duration is not None else "unfinished",
        )
        for stage in facts.stages
    )
    return Chart("timeline", "stages", "", kind="spans", spans=bars)


def monitoring(facts: DeploymentFacts) -> tuple[tuple[Chart, str], ...]:
    """Each metric's chart (at most MAX_METRICS) with its caption; incidents as red lines."""
    marks = tuple((i.detected_at, f"level {i.level} incident #{i.id}") for i in facts.incidents)
    by_metric: dict[str, list[SampleRecord]] = {}
    for sample in facts.samples:
        by_metric.setdefault(sample.metric, []).append(sample)
    found: list[tuple[Chart, str]] = []
    for metric in sorted(by_metric, key=_metric_order)[:MAX_METRICS]:
        samples = by_metric[metric]
        key = f"metric-{len(found)}"
        if metric == "http_error":
            chart = Chart(key, "error rate", "%", _error_rates(samples), marks=marks)
            caption = "share of probe requests that failed, by host"
        elif metric == "health":
            chart = Chart(key, "health", "up", _by_series(samples), "step", marks=marks,
                          limits=(-0.1, 1.1))  # fmt: skip
            caption = "the health endpoint by host: 1 up, 0 down"
        else:
            chart = Chart(key, metric, _unit(metric), _by_series(samples), "points", marks=marks)
            caption = f"{metric} by host, as sampled"
        found.append((chart, caption + (" (red: an incident detected)" if marks else "")))
    return tuple(found)


def _metric_order(metric: str) -> tuple[int, str]:
    first = ("latency_seconds", "http_error", "health")
    return (first.index(metric) if metric in first else len(first), metric)


def _unit(metric: str) -> str:
    return "s" if metric.endswith("_seconds") else "%" if metric.endswith("_percent") else ""


def _series_name(sample: SampleRecord) -> str:
    name = sample.host or sample.source
    phase = sample.labels.get("phase") if isinstance(sample.labels, dict) else None
    return f"{name} {phase}" if phase else name


def _by_series(samples: Iterable[SampleRecord]) -> tuple[Series, ...]:
    groups: dict[str, list[SampleRecord]] = {}
    for s in samples:
        groups.setdefault(_series_name(s), []).append(s)
    return tuple(
        Series(name, [s.at for s in group], [s.value for s in group])
        for name, group in sorted(groups.items())
    )


def _error_rates(samples: Sequence[SampleRecord]) -> tuple[Series, ...]:
    """Per host: the share of probe requests that failed, in buckets over the window."""
    first = min(s.at for s in samples)
    span = (max(s.at for s in samples) - first).total_seconds()
    width = max(1.0, span / ERROR_BINS)
    hosts: dict[str, dict[int, list[float]]] = {}
    for s in samples:
        if s.value is not None:
            bucket = int((s.at - first).total_seconds() // width)
            hosts.setdefault(_series_name(s), {}).setdefault(bucket, []).append(s.value)
    return tuple(
        _rate_series(name, buckets, first, width) for name, buckets in sorted(hosts.items())
    )


def _rate_series(
    name: str, buckets: dict[int, list[float]], first: datetime, width: float
) -> Series:
    keys = sorted(buckets)
    return Series(
        name,
        [first + timedelta(seconds=(k + 0.5) * width) for k in keys],
        [100 * sum(buckets[k]) / len(buckets[k]) for k in keys],
    )
