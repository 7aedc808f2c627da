"""A live view of one environment: what ``rollout watch`` shows each interval.

``Watch`` keeps what a view needs between intervals: the sources (the probe of the monitored
paths and the health URL, host statistics always, Prometheus when configured) and the probe
samples of the last few intervals. ``snapshot`` reads them once and reduces them the way the
monitoring window does (p95 and error rate over the last ``LOOKBACK`` intervals, the worst
Prometheus series), per host and for the whole environment, each figure with the
``monitor.metrics`` threshold it is judged against. It records nothing and decides nothing.

Health has its own column, so, as in the window, the p95 and the error rate are those of the
other monitored paths (the users' requests) when there are any: a host failing every
/api/vehicles request shows 100 % errors, not 50 % diluted by its healthy health checks.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import urlsplit

import httpx

from rollout.config import Metric, Runbook
from rollout.errors import RolloutError
from rollout.model import HostState, utcnow
from rollout.monitor.incidents import TITLES
from rollout.monitor.rules import probe_stat
from rollout.monitor.sources import HostStatsSource, ProbeSource, PrometheusSource, Sample, Source
from rollout.monitor.window import HOST_METRICS, LOOKBACK, _probe_value, _worst
from rollout.runtimes.base import Runtime, Target
from rollout.store import Store

NEAR = 0.8  # a figure at 80 % of its max or more is near it


class Standing(StrEnum):
    """A figure against its threshold."""

    UNKNOWN = "unknown"  # no value this time
    UNJUDGED = "unjudged"  # no threshold in monitor.metrics
    OK = "ok"
    NEAR = "near"  # at NEAR of its max or more
    PAST = "past"  # beyond its max or below its min


@dataclass(frozen=True)
class Figure:
    """One value and the ``monitor.metrics`` bounds it is judged against, in its own unit."""

    value: float | None
    max: float | None = None
    min: float | None = None

    @property
    def standing(self) -> Standing:
        if self.value is None:
            return Standing.UNKNOWN
        if self.max is None and self.min is None:
            return Standing.UNJUDGED
        if (self.max is not None and self.value > self.max) or (
            self.min is not None and self.value < self.min
        ):
            return Standing.PAST
        if self.max is not None and self.max > 0 and self.value >= NEAR * self.max:
            return Standing.NEAR
        return Standing.OK


@dataclass(frozen=True)
class HostView:
    name: str
    release: str | None  # what runs: the release `current` points at, else the version file
    health: bool | None  # None: no health URL, or the host could not be asked
    cpu_percent: Figure
    memory_percent: Figure
    load1: Figure
    p95_seconds: Figure  # of this host's probe requests over the last few intervals
    error_rate: Figure  # 0..1, same requests
    notes: tuple[str, ...] = ()  # why a figure is missing


@dataclass(frozen=True)
class EnvironmentView:
    p95_seconds: Figure
    error_rate: Figure
    metrics: Mapping[str, Figure]  # each Prometheus metric of monitor.metrics, worst series
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class IncidentView:
    id: int
    level: int
    title: str  # minor, major, critical
    status: str  # open, mitigated
    age: timedelta  # since it was detected
    acknowledged_by: str | None
    symptoms: str

    @property
    def acknowledged(self) -> bool:
        return self.acknowledged_by is not None


@dataclass(frozen=True)
class Snapshot:
    env: str
    at: datetime
    hosts: tuple[HostView, ...]
    environment: EnvironmentView
    incidents: tuple[IncidentView, ...]
    lookback: int  # intervals the p95 and error rates are taken over, so far


class Watch:
    """The sources of one environment's view, and the recent probe samples it reduces over."""

    def __init__(
        self,
        runbook: Runbook,
        env: str,
        targets: Mapping[str, Target],
        runtime: Runtime,
        http: httpx.AsyncClient,
        *,
        store: Store | None = None,
        lookback: int = LOOKBACK,
    ) -> None:
        self.runbook = runbook
        self.env = env
        self.targets = dict(targets)
        self.runtime = runtime
        self.http = http
        self.store = store
        self.bounds = _bounds(runbook.monitor.metrics)
        self.queries = {
            name: metric.query
            for name, metric in runbook.monitor.metrics.items()
            if metric.source == "prometheus" and metric.query
        }
        self.sources: list[Source] = []
        self.traffic: set[str] = set()  # the paths whose requests p95 and error rates count
        self.recent: deque[list[Sample]] = deque(maxlen=lookback)

    def start(self, tag: str) -> None:
        """Build the sources as the monitoring window does, with host statistics always."""
        runbook, monitor = self.runbook, self.runbook.monitor
        hosts, health_path = [], None
        for target in self.targets.values():
            health = self.runtime.health_url(target, tag)
            base = target.url or runbook.environment(self.env).url or _origin(health)
            if base is not None:
                hosts.append((target.name, base))
            if health is not None:
                health_path = urlsplit(health).path or "/"
        paths = monitor.paths or [e.path for e in runbook.verify.endpoints]
        self.traffic = {p for p in paths if p != health_path} or {*paths, health_path or "/"}
        self.sources = [
            ProbeSource(self.http, hosts, paths, health_path=health_path),
            HostStatsSource(list(self.targets.values())),
        ]
        if self.queries and monitor.sources.prometheus:
            self.sources.append(
                PrometheusSource(self.http, monitor.sources.prometheus, self.queries)
            )


async def snapshot(watch: Watch) -> Snapshot:
    """Read every source once (and every host's release, and the open incidents) and reduce."""
    states = await asyncio.gather(*(_state(watch.runtime, t) for t in watch.targets.values()))
    if not watch.sources:
        tag = next((s.link or s.current for s in states if isinstance(s, HostState)), None)
        watch.start(tag or "-")
    gathered = await asyncio.gather(*(s.collect() for s in watch.sources))
    samples = [sample for batch in gathered for sample in batch]
    watch.recent.append(
        [s for s in samples if s.source == "probe" and s.labels.get("path") in watch.traffic]
    )
    recent = [s for batch in watch.recent for s in batch]
    hosts = tuple(
        _host_view(target.name, state, samples, recent, watch.bounds)
        for target, state in zip(watch.targets.values(), states, strict=True)
    )
    return Snapshot(
        env=watch.env,
        at=utcnow(),
        hosts=hosts,
        environment=_environment_view(watch, samples, recent),
        incidents=_incidents(watch),
        lookback=len(watch.recent),
    )


async def _state(runtime: Runtime, target: Target) -> HostState | str:
    try:
        return await runtime.state(target)
    except (RolloutError, OSError) as exc:
        return f"release: {exc}"


def _host_view(
    name: str,
    state: HostState | str,
    samples: Sequence[Sample],
    recent: Sequence[Sample],
    bounds: Mapping[str, tuple[float | None, float | None]],
) -> HostView:
    mine = [s for s in samples if s.host == name]
    my_recent = [s for s in recent if s.host == name]
    health = [s.value for s in mine if s.metric == "health" and s.value is not None]
    notes = [state] if isinstance(state, str) else []
    notes += _notes(s for s in mine if s.source == "host")

    def stat(metric: str) -> Figure:
        value = _worst([s for s in mine if s.source == "host" and s.metric == metric])
        return Figure(value, *bounds.get(metric, (None, None)))

    return HostView(
        name=name,
        release=None if isinstance(state, str) else state.link or state.current,
        health=min(health) > 0 if health else None,
        cpu_percent=stat("cpu_percent"),
        memory_percent=stat("memory_percent"),
        load1=stat("load1"),
        p95_seconds=_probe_figure("p95", my_recent, mine, bounds),
        error_rate=_probe_figure("error_rate", my_recent, mine, bounds),
        notes=tuple(notes),
    )


def _environment_view(
    watch: Watch, samples: Sequence[Sample], recent: Sequence[Sample]
) -> EnvironmentView:
    metrics = {
        name: Figure(
            _worst([s for s in samples if s.source == "prometheus" and s.metric == name]),
            *watch.bounds.get(name, (None, None)),
        )
        for name in watch.queries
    }
    return EnvironmentView(
        p95_seconds=_probe_figure("p95", recent, samples, watch.bounds),
        error_rate=_probe_figure("error_rate", recent, samples, watch.bounds),
        metrics=metrics,
        notes=tuple(_notes(s for s in samples if s.source == "prometheus")),
    )


def _probe_figure(
    stat: str,
    recent: Sequence[Sample],
    current: Sequence[Sample],
    bounds: Mapping[str, tuple[float | None, float | None]],
) -> Figure:
    return Figure(_probe_value(stat, list(recent), list(current)), *bounds.get(stat, (None, None)))


def _notes(samples: Iterable[Sample]) -> list[str]:
    """The first error of each source and metric, once."""
    seen: dict[str, str] = {}
    for s in samples:
        if s.error and f"{s.source}: {s.error}" not in seen.values():
            seen.setdefault(f"{s.source}/{s.metric}", f"{s.source}: {s.error}")
    return list(seen.values())


def _incidents(watch: Watch) -> tuple[IncidentView, ...]:
    if watch.store is None:
        return ()
    now = utcnow()
    return tuple(
        IncidentView(
            id=r.id,
            level=r.level,
            title=TITLES.get(r.level, "?"),
            status=r.status,
            age=now - r.detected_at,
            acknowledged_by=r.acknowledged_by,
            symptoms=r.symptoms,
        )
        for r in watch.store.incidents(env=watch.env, open_only=True)
    )


def _bounds(metrics: Mapping[str, Metric]) -> dict[str, tuple[float | None, float | None]]:
    """Which column each metric of monitor.metrics judges, with its (max, min): the host
    statistics (cpu_percent, memory_percent, load1), the probe's p95 and error_rate, and each
    Prometheus metric by its name. The first metric naming a column wins."""
    bounds: dict[str, tuple[float | None, float | None]] = {}
    for name, metric in metrics.items():
        if metric.source == "host":
            column = HOST_METRICS.get(name, name)
        elif metric.source == "probe":
            try:
                column = probe_stat(name, metric.stat)
            except ValueError:
                continue
        else:
            column = name
        bounds.setdefault(column, (metric.limit(metric.max), metric.limit(metric.min)))
    return bounds


def _origin(url: str | None) -> str | None:
    if url is None:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
