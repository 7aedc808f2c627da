"""Where the monitoring window's measurements come from: the probe, Prometheus, the hosts.

Each ``Source`` turns one interval into timestamped ``Sample``s. A source that cannot read
something says so with an error sample (``value`` None, ``error`` saying why), never with a
zero and never by raising: the judge decides what missing data means, and an unreadable
metric must not look healthy.

    ProbeSource        GET every path on every host: latency_seconds, latency_phase_seconds
                       (connect, tls, first_byte, transfer), http_error, health
    PrometheusSource   one instant query per configured metric: one sample per series
    HostStatsSource    one command per host: cpu_percent, memory_percent, load1
    DatabaseSource     a timed `SELECT 1` on the app's database: db_query_seconds
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import httpx

from rollout.checks.http import fetch
from rollout.checks.resources import cpu_readings, cpu_spent, meminfo_fields
from rollout.errors import RolloutError
from rollout.hosts.base import Host
from rollout.model import DB_QUERY_METRIC, utcnow
from rollout.runtimes.base import Target


@dataclass(frozen=True)
class Sample:
    """One measurement, or the reason there is none (``value`` None, ``error`` set)."""

    metric: str  # "latency_seconds", "http_error", "health", "cpu_percent", a Prometheus name...
    source: str  # "probe" | "prometheus" | "host"
    at: datetime  # aware UTC
    value: float | None
    host: str | None = None
    error: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.value is not None


class Source(Protocol):
    """Something the monitoring window reads once per interval."""

    name: str

    async def collect(self) -> list[Sample]:
        """This interval's samples; read failures become error samples, never exceptions."""
        ...


def _error_text(exc: BaseException) -> str:
    detail = str(exc).strip()
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


# --- the probe --------------------------------------------------------------------------------

# checks.http.fetch names its phases as blackbox_exporter does; samples use label-safe names.
_PHASE_LABELS = {
    "connect": "connect",
    "tls": "tls",
    "first byte": "first_byte",
    "transfer": "transfer",
}


class ProbeSource:
    """The built-in probe: every path on every host, once per interval, all at once.

    ``latency_seconds`` is the time to the last byte of the body; ``latency_phase_seconds``
    splits it (connect and tls appear only when a new connection was opened). ``http_error``
    is 1.0 for a status >= 500 or no response at all, whose latency is then an error sample.
    ``health`` (1.0 up, 0.0 down) comes from ``health_path``: down is a measurement, so a host
    that does not answer it is 0.0, not an error.
    """

    name = "probe"

    def __init__(
        self,
        client: httpx.AsyncClient,
        hosts: Sequence[tuple[str, str]],
        paths: Sequence[str],
        *,
        health_path: str | None = "/api/health",
        timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.hosts = list(hosts)
        self.paths = list(paths)
        if health_path is not None and health_path not in self.paths:
            self.paths.append(health_path)
        self.health_path = health_path
        self.timeout = timeout

    async def collect(self) -> list[Sample]:
        probes = [self._probe(host, base, path) for host, base in self.hosts for path in self.paths]
        return [sample for samples in await asyncio.gather(*probes) for sample in samples]

    async def _probe(self, host: str, base_url: str, path: str) -> list[Sample]:
        url = base_url.rstrip("/") + path
        at = utcnow()
        try:
            response = await fetch(self.client, "GET", url, self.timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            labels = {"path": path}
            error = f"GET {url}: {_error_text(exc)}"
            samples = [
                Sample("latency_seconds", self.name, at, None, host, error, labels),
                Sample("http_error", self.name, at, 1.0, host, labels=labels),
            ]
            if path == self.health_path:
                samples.append(Sample("health", self.name, at, 0.0, host, labels=labels))
            return samples
        labels = {"path": path, "status": str(response.status)}
        samples = [
            Sample(
                "latency_seconds", self.name, at, response.elapsed_ms / 1000, host, None, labels
            ),
            Sample("http_error", self.name, at, float(response.status >= 500), host, None, labels),
        ]
        samples += [
            Sample(
                "latency_phase_seconds",
                self.name,
                at,
                ms / 1000,
                host,
                labels={**labels, "phase": _PHASE_LABELS.get(phase, phase)},
            )
            for phase, ms in response.phases.items()
        ]
        if path == self.health_path:
            up = float(200 <= response.status < 300)
            samples.append(Sample("health", self.name, at, up, host, labels=labels))
        return samples


# --- Prometheus -------------------------------------------------------------------------------


class PrometheusSource:
    """One instant query (``/api/v1/query``) per configured metric, all at once.

    A scalar gives one sample; a vector one sample per series, labelled as the series is. An
    empty vector is an error sample "no data" (inconclusive, never healthy); NaN and infinities
    (a ratio over no traffic) are error samples too, as are HTTP failures, timeouts and
    Prometheus's own error answers (a bad query).
    """

    name = "prometheus"

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        queries: Mapping[str, str],
        *,
        timeout: float = 5.0,
    ) -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.queries = dict(queries)
        self.timeout = timeout

    async def collect(self) -> list[Sample]:
        answers = [self._query(metric, promql) for metric, promql in self.queries.items()]
        return [sample for samples in await asyncio.gather(*answers) for sample in samples]

    async def _query(self, metric: str, promql: str) -> list[Sample]:
        at = utcnow()
        try:
            response = await self.client.get(
                f"{self.base_url}/api/v1/query",
                params={"query": promql, "timeout": f"{self.timeout:g}s"},
                timeout=self.timeout,
            )
            body = response.json()
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            return [self._error(metric, at, f"Prometheus unreachable: {_error_text(exc)}")]
        except ValueError:
            return [self._error(metric, at, f"HTTP {response.status_code}, not JSON")]
        if not isinstance(body, dict) or body.get("status") != "success":
            return [self._error(metric, at, _prometheus_error(response.status_code, body))]
        return self._samples(metric, at, body.get("data"))

    def _samples(self, metric: str, at: datetime, data: object) -> list[Sample]:
        if not isinstance(data, dict):
            return [self._error(metric, at, "answer without data")]
        kind, result = data.get("resultType"), data.get("result")
        if kind == "scalar" and isinstance(result, list):
            return [self._sample(metric, at, result, {})]
        if kind == "vector" and isinstance(result, list):
            if not result:
                return [self._error(metric, at, "no data")]
            return [
                self._sample(metric, at, series.get("value"), series.get("metric") or {})
                for series in result
                if isinstance(series, dict)
            ]
        if kind == "matrix":
            return [self._error(metric, at, "a range vector: wrap it in rate() or *_over_time()")]
        return [self._error(metric, at, f"unexpected {kind} result")]

    def _sample(
        self, metric: str, at: datetime, point: object, labels: Mapping[str, str]
    ) -> Sample:
        labels = {str(k): str(v) for k, v in labels.items()}
        try:
            if not isinstance(point, list) or len(point) != 2:
                raise ValueError
            when, value = datetime.fromtimestamp(float(point[0]), UTC), float(point[1])
        except (TypeError, ValueError, OverflowError):
            return self._error(metric, at, f"unreadable value {point!r}", labels)
        if math.isnan(value) or math.isinf(value):
            why = "NaN (0/0: no traffic in the window?)" if math.isnan(value) else f"{value}"
            return self._error(metric, when, why, labels)
        return Sample(metric, self.name, when, value, labels=labels)

    def _error(
        self, metric: str, at: datetime, why: str, labels: Mapping[str, str] | None = None
    ) -> Sample:
        return Sample(metric, self.name, at, None, error=f"{metric}: {why}", labels=labels or {})


def _prometheus_error(status: int, body: object) -> str:
    if isinstance(body, dict) and body.get("status") == "error":
        return f"Prometheus said {body.get('errorType', 'error')}: {body.get('error', '')}"
    return f"HTTP {status}, not a Prometheus answer"


# --- host stats -------------------------------------------------------------------------------

_HOST_METRICS = ("cpu_percent", "memory_percent", "load1")
# The first interval has no earlier /proc/stat reading, so its one command takes two this far
# apart; later intervals compare with the reading the previous interval kept.
FIRST_CPU_SAMPLE_SECONDS = 0.5
# /proc/loadavg first, so its line is always the first line of the output.
_READ = "cat /proc/loadavg; head -n 1 /proc/stat; cat /proc/meminfo"
_READ_FIRST = (
    f"cat /proc/loadavg; head -n 1 /proc/stat; sleep {FIRST_CPU_SAMPLE_SECONDS:g}; "
    "head -n 1 /proc/stat; cat /proc/meminfo"
)


# --- the app's database --------------------------------------------------------------------

DB_QUERY = DB_QUERY_METRIC


class DatabaseSource:
    """The app's database, asked as the pre-flight check asks it: a connection and a timed
    ``SELECT 1`` per interval. The sample ``db_query_seconds`` is the round trip of the query;
    an error sample (the reason, never the URL's password) is the ``database down`` symptom.
    The samples are what the database query time KPI is computed from."""

    name = "database"

    def __init__(self, url: str, config_dir: Path, *, timeout: float = 5.0) -> None:
        self.url = url
        self.config_dir = config_dir
        self.timeout = timeout

    async def collect(self) -> list[Sample]:
        from rollout.checks.database import DatabaseDown, ask

        at = utcnow()
        try:
            answer = await ask(self.url, timeout=self.timeout, config_dir=self.config_dir)
        except DatabaseDown as down:
            return [Sample(DB_QUERY, self.name, at, None, error=down.reason)]
        return [Sample(DB_QUERY, self.name, at, answer.query_ms / 1000)]


class HostStatsSource:
    """CPU %, memory % and the 1-minute load of each host, one command per host per interval.

    CPU % is the busy share of the jiffies spent since the previous interval's /proc/stat
    reading, kept per host. A host that cannot be read gives an error sample per metric.
    """

    name = "host"

    def __init__(self, hosts: Sequence[Host | Target], *, timeout: float = 10.0) -> None:
        self.hosts = [h.host if isinstance(h, Target) else h for h in hosts]
        self.timeout = timeout
        self._previous: dict[str, list[int]] = {}

    async def collect(self) -> list[Sample]:
        reads = [self._read(host) for host in self.hosts]
        return [sample for samples in await asyncio.gather(*reads) for sample in samples]

    async def _read(self, host: Host) -> list[Sample]:
        previous = self._previous.get(host.name)
        script = _READ if previous is not None else _READ_FIRST
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                result = await host.run(["sh", "-c", script], timeout=self.timeout, check=False)
        except (RolloutError, OSError, TimeoutError) as exc:
            why = _error_text(exc)
            if isinstance(exc, TimeoutError):
                why = f"no answer in {time.monotonic() - started:.0f} s"
            return [self._error(m, host.name, utcnow(), why) for m in _HOST_METRICS]
        at = utcnow()
        if not result.ok:
            why = f"`{script}` exited {result.exit_status}: {result.output[-300:]}"
            return [self._error(m, host.name, at, why) for m in _HOST_METRICS]
        return [
            self._cpu(host.name, at, previous, cpu_readings(result.stdout)),
            self._memory(host.name, at, meminfo_fields(result.stdout)),
            self._load(host.name, at, result.stdout),
        ]

    def _cpu(
        self, host: str, at: datetime, previous: list[int] | None, readings: list[list[int]]
    ) -> Sample:
        if not readings:
            return self._error("cpu_percent", host, at, "no cpu line in /proc/stat")
        before = previous if previous is not None else readings[0]
        after = readings[-1]
        self._previous[host] = after
        total, idle = cpu_spent(before, after)
        if total <= 0:
            why = "no CPU time passed since the last reading (or the host restarted)"
            return self._error("cpu_percent", host, at, why)
        return Sample("cpu_percent", self.name, at, 100 * (total - idle) / total, host)

    def _memory(self, host: str, at: datetime, fields: Mapping[str, int]) -> Sample:
        total, available = fields.get("MemTotal"), fields.get("MemAvailable")
        if not total or available is None:
            return self._error(
                "memory_percent", host, at, "no MemTotal/MemAvailable in /proc/meminfo"
            )
        return Sample("memory_percent", self.name, at, 100 * (total - available) / total, host)

    def _load(self, host: str, at: datetime, stdout: str) -> Sample:
        first = stdout.split("\n", 1)[0].split()
        try:
            return Sample("load1", self.name, at, float(first[0]), host)
        except (IndexError, ValueError):
            return self._error("load1", host, at, f"unreadable /proc/loadavg: {' '.join(first)!r}")

    def _error(self, metric: str, host: str, at: datetime, why: str) -> Sample:
        return Sample(metric, self.name, at, None, host, why)
