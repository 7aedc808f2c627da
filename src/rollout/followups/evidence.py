"""The probe's samples before and after a deployment: what the automatic follow-ups judge.

    after   from the switch (the last host activated; the deployment's start when no step says)
            to the time the follow-up is about (its due time, or now when run early), cut at
            the next deployment of the environment: its samples are another release's
    before  the environment's samples before the deployment started, back to the previous
            deployment's switch and at most ``LOOKBACK``: the release it replaced

Latencies and errors are those of the users' paths: the health URL's own are left out when
other paths were probed, as the monitoring window does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from rollout.config import Runbook
from rollout.store import DeploymentRecord, Store
from rollout.store.records import SampleRecord

LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class Span:
    since: datetime
    until: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "since": self.since.isoformat(timespec="seconds"),
            "until": self.until.isoformat(timespec="seconds"),
        }


@dataclass(frozen=True)
class Evidence:
    """The users' requests of one span: a latency and an error flag (0 or 1) per request."""

    span: Span
    latencies: list[float]
    errors: list[float]
    failures: list[SampleRecord]  # the requests that failed: 5xx, or no answer at all

    @property
    def requests(self) -> int:
        return len(self.errors)

    @property
    def error_rate(self) -> float | None:
        return sum(self.errors) / len(self.errors) if self.errors else None

    @property
    def p95(self) -> float | None:
        if not self.latencies:
            return None
        import numpy as np  # lazily: most commands never need it

        # Linear interpolation between ranks, as PostgreSQL's percentile_cont and `rollout kpi`.
        return float(np.quantile(np.asarray(self.latencies, dtype=float), 0.95))

    def summary(self) -> dict[str, object]:
        return {
            **self.span.to_json(),
            "requests": self.requests,
            "p95_s": self.p95,
            "error_rate": self.error_rate,
        }


def health_path(runbook: Runbook) -> str | None:
    url = runbook.runtime.health_url
    return (urlsplit(url).path or "/") if url else None


def switched_at(store: Store, deployment: DeploymentRecord) -> datetime:
    """When the last host of ``deployment`` was switched to its release."""
    done = [
        s.finished_at
        for s in store.steps(deployment.id)
        if s.phase == "deploy" and s.name == "activate" and s.finished_at is not None
    ]
    return max(done, default=deployment.started_at)


def spans(store: Store, deployment: DeploymentRecord, until: datetime) -> tuple[Span, Span]:
    """(before, after) for ``deployment``, the after span ending at ``until`` at the latest."""
    start = deployment.started_at
    nearby = store.deployments(env=deployment.env, since=start - LOOKBACK)
    later = [d.started_at for d in nearby if d.started_at > start and d.id != deployment.id]
    earlier = [d for d in nearby if d.started_at < start]
    since = start - LOOKBACK
    if earlier:
        previous = max(earlier, key=lambda d: (d.started_at, d.id))
        since = max(since, switched_at(store, previous))
    switched = switched_at(store, deployment)
    end = min([until, *later])
    return Span(since, start), Span(switched, max(end, switched))


def collect(store: Store, env: str, span: Span, health: str | None) -> Evidence:
    samples = [
        s
        for s in store.samples(env=env, since=span.since, until=span.until)
        if s.source == "probe" and s.metric in ("latency_seconds", "http_error")
    ]
    paths = Counter(s.labels.get("path") for s in samples)
    if any(path != health for path in paths):
        samples = [s for s in samples if s.labels.get("path") != health]
    latencies = [s.value for s in samples if s.metric == "latency_seconds" and s.value is not None]
    requests = [s for s in samples if s.metric == "http_error" and s.value is not None]
    return Evidence(
        span=span,
        latencies=latencies,
        errors=[float(s.value > 0) for s in requests if s.value is not None],
        failures=_failures(samples, requests),
    )


def _failures(samples: list[SampleRecord], requests: list[SampleRecord]) -> list[SampleRecord]:
    """Each failed request once: the 5xx's error sample, or the latency sample saying why there
    was no answer (it carries the error text)."""
    unanswered = {
        (s.host, s.at, s.labels.get("path")): s
        for s in samples
        if s.metric == "latency_seconds" and s.value is None
    }
    return [
        unanswered.get((s.host, s.at, s.labels.get("path")), s)
        for s in requests
        if s.value is not None and s.value > 0
    ]
