"""V4 concurrent_load: a small load run with exact percentiles and k6-style thresholds.

``await run(url, requests=200, concurrency=10, thresholds=["p(95)<2000", "rate<0.01"])`` sends
``requests`` requests over ``concurrency`` keep-alive connections and returns a ``LoadReport``:
counts, wall time, requests per second, latency percentiles, status and error distributions, a
histogram, and one verdict per threshold (reference/verification.md, V4).

Decisions (where the spec proposes, this is what rollout does):

- **Latency** is request start to body fully read (hey), so the first request on each
  connection includes its connect. It is recorded over *all* requests, transport errors
  included as the time until the error (vegeta), and over successes only (hey). Latency
  thresholds are judged on *all* requests, so a 20 s timeout counts against ``p(95)``; but if no
  request got any HTTP response at all, a latency threshold FAILs ("no responses") instead of
  passing on the microseconds a refused connection takes (fail-closed, as the spec asks).
- **Errors** are transport errors plus statuses outside ``expected_status`` (default 200-399, as
  k6's ``http_req_failed`` and vegeta). Redirects are not followed, so a 3xx is a status like any
  other (it is in the default range, which is only meaningful when redirects are not followed).
- **Percentiles** are exact: sort, then linear interpolation at ``pct * (n - 1)`` (k6's
  ``metrics/sink.go``; the same as ``statistics.quantiles(method="inclusive")``). ``med`` is
  ``p(50)``.
- **Below 20 requests** a threshold that holds is a WARN "insufficient samples", not a PASS: so
  few samples cannot show that it holds. A threshold that is *broken* stays FAIL (with the same
  note): every error and slow response seen really happened, and a run of 5 refused connections
  must not exit 0. (The spec says "WARN below 20"; this keeps WARN for everything but a breach.)
- **No thresholds configured**: one check, ``rate==0`` (no errors allowed), so a load run
  against a broken server never passes silently. k6 passes a run without thresholds; rollout's
  grade exits 1 on a failed check, and "no budget given" is read as "no errors allowed".
- **A rate value outside 0..1** is refused: ``rate<1`` is legal k6 but ``rate<5`` almost
  certainly meant 5 %, which is ``rate<0.05``.

The client. Measured on the 2-CPU dev box against the example app (uvicorn, one worker,
``/api/health``, concurrency 10): wrk 572-582 req/s; one ``httpx.AsyncClient`` with
``max_connections=concurrency``, keep-alive and 10 workers 234-282 req/s (0.40-0.48 of wrk);
raw ``asyncio`` streams speaking HTTP/1.1 keep-alive 538 req/s (0.92). The client and the
server share the CPUs, so client CPU per request is server throughput lost; cProfile of the
httpx run shows most of the time in httpcore's pool bookkeeping (``_assign_requests_to_
connections``, ``has_expired`` on every connection, per-request lock objects) and a failing
``import`` attempt per request inside ``current_async_library``. So plain ``http://`` URLs use
the lean path below (one connection per worker, one pre-built request, a minimal response
parser: Content-Length, chunked, read-to-close, HEAD/1xx/204/304), and ``https://`` URLs, or any
URL a proxy from the environment applies to, use httpx, which does TLS and proxies properly.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from rollout.errors import BadInput
from rollout.model import CheckResult, CheckStatus

if TYPE_CHECKING:
    import httpx  # imported lazily at run time: only https and proxied URLs need it

MIN_SAMPLES = 20
DEFAULT_THRESHOLD = "rate==0"
HISTOGRAM_BUCKETS = 10
_USER_AGENT = "rollout-load"
_HEADER_LIMIT = 1 << 20  # StreamReader limit: the longest header block accepted

# --------------------------------------------------------------------------------------------
# Thresholds: `<aggregation> <op> <value>` in k6's notation.

_LATENCY_AGGREGATIONS = ("avg", "min", "max", "med")
_OPERATORS = ("<=", ">=", "==", "!=", "<", ">")  # two-character ones first
_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


@dataclass(frozen=True)
class Threshold:
    """One parsed threshold. ``aggregation`` is ``p(N)``, ``avg``, ``min``, ``max``, ``med``
    (latency in ms) or ``rate`` (the error rate, a fraction)."""

    aggregation: str
    percentile: float | None  # N of p(N), else None
    operator: str
    value: float
    text: str  # canonical form without spaces, e.g. "p(95)<2000"

    @property
    def on_latency(self) -> bool:
        return self.aggregation != "rate"

    def holds(self, measured: float) -> bool:
        v = self.value
        match self.operator:
            case "<":
                return measured < v
            case "<=":
                return measured <= v
            case ">":
                return measured > v
            case ">=":
                return measured >= v
            case "==":
                return measured == v
            case _:
                return measured != v

    def __str__(self) -> str:
        return self.text


class _Scanner:
    """A cursor over one expression, with errors that say where it went wrong."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def take(self, literal: str) -> bool:
        self.skip_spaces()
        if self.text.startswith(literal, self.pos):
            self.pos += len(literal)
            return True
        return False

    def number(self) -> str | None:
        self.skip_spaces()
        match = _NUMBER.match(self.text, self.pos)
        if match is None:
            return None
        self.pos = match.end()
        return match.group()

    def fail(self, what: str) -> BadInput:
        return BadInput(
            f"threshold {self.text!r}: {what} at column {self.pos + 1}",
            hint="k6 syntax: 'p(95)<2000', 'avg<=500', 'med<300', 'max<4000' (latency in ms) "
            "or 'rate<0.01' (error rate, a fraction); operators < <= > >= == !=",
        )


def parse_threshold(text: str) -> Threshold:
    """Parse one k6 threshold or raise ``BadInput`` naming it (the config loader calls this too,
    to report the expression with its line)."""
    s = _Scanner(text)
    percentile: float | None = None
    if s.take("p("):
        n = s.number()
        if n is None:
            raise s.fail("expected a percentile 0-100 after 'p('")
        percentile = float(n)
        if not 0.0 <= percentile <= 100.0:
            raise s.fail(f"percentile {n} is not within 0-100")
        if not s.take(")"):
            raise s.fail("expected ')'")
        aggregation = f"p({n})"
    else:
        for name in (*_LATENCY_AGGREGATIONS, "rate"):
            if s.take(name):
                aggregation = name
                break
        else:
            raise s.fail("expected p(N), avg, min, max, med or rate")
    s.skip_spaces()
    for operator in _OPERATORS:
        if s.take(operator):
            break
    else:
        raise s.fail("expected an operator < <= > >= == !=")
    number = s.number()
    if number is None:
        raise s.fail("expected a number (no units: latency is in ms, rate is a fraction)")
    s.skip_spaces()
    if s.pos != len(s.text):
        raise s.fail(f"unexpected {s.text[s.pos :]!r}")
    value = float(number)
    if aggregation == "rate" and value > 1.0:
        raise BadInput(
            f"threshold {text!r}: the error rate is a fraction between 0 and 1",
            hint=f"for {number} % write 'rate{operator}{value / 100:g}'",
        )
    return Threshold(aggregation, percentile, operator, value, f"{aggregation}{operator}{number}")


# --------------------------------------------------------------------------------------------
# Statistics


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile (0-100) of already sorted values, by linear interpolation at
    ``pct/100 * (n - 1)`` (k6; ``statistics.quantiles(method="inclusive")``)."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile {pct} is not within 0-100")
    rank = pct / 100.0 * (len(sorted_values) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True)
class LatencyStats:
    """Latency figures in milliseconds over one set of requests."""

    count: int
    min: float
    max: float
    avg: float
    p50: float
    p90: float
    p95: float
    p99: float
    sorted_ms: tuple[float, ...] = field(repr=False, compare=False)

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> LatencyStats | None:
        if not values_ms:
            return None
        ordered = tuple(sorted(values_ms))
        return cls(
            count=len(ordered),
            min=ordered[0],
            max=ordered[-1],
            avg=math.fsum(ordered) / len(ordered),
            p50=percentile(ordered, 50),
            p90=percentile(ordered, 90),
            p95=percentile(ordered, 95),
            p99=percentile(ordered, 99),
            sorted_ms=ordered,
        )

    def aggregate(self, threshold: Threshold) -> float:
        if threshold.percentile is not None:
            return percentile(self.sorted_ms, threshold.percentile)
        match threshold.aggregation:
            case "avg":
                return self.avg
            case "min":
                return self.min
            case "max":
                return self.max
            case _:
                return self.p50

    def to_json(self) -> dict[str, object]:
        return {
            "count": self.count,
            "min": self.min,
            "max": self.max,
            "avg": self.avg,
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
        }


def histogram(
    sorted_ms: Sequence[float], buckets: int = HISTOGRAM_BUCKETS
) -> list[tuple[float, int]]:
    """hey's histogram: ``buckets`` equal-width bins from min to max, as (upper bound, count)."""
    if not sorted_ms:
        return []
    low, high = sorted_ms[0], sorted_ms[-1]
    if high == low:
        return [(high, len(sorted_ms))]
    width = (high - low) / buckets
    counts = [0] * buckets
    for value in sorted_ms:
        counts[min(int((value - low) / width), buckets - 1)] += 1
    return [(low + width * (i + 1), count) for i, count in enumerate(counts)]


# --------------------------------------------------------------------------------------------
# The report


@dataclass(frozen=True)
class ThresholdVerdict:
    threshold: Threshold
    measured: float | None  # None: nothing to measure (no responses)
    holds: bool


@dataclass(frozen=True)
class LoadReport:
    url: str
    method: str
    requests: int
    concurrency: int
    ok: int  # responses with an expected status
    unexpected_status: int  # responses with a status outside expected_status
    transport_errors: int  # no response: refused, reset, timed out, ...
    duration_s: float  # wall time of the whole run
    rps: float
    error_rate: float
    latency: LatencyStats | None  # over all requests (vegeta)
    latency_ok: LatencyStats | None  # over successes only (hey)
    statuses: Mapping[int, int]
    errors: Mapping[str, int]  # exception type name -> count
    histogram: tuple[tuple[float, int], ...]
    verdicts: tuple[ThresholdVerdict, ...]
    expected_status: range
    client: str  # "asyncio" (lean HTTP/1.1) or "httpx"

    @property
    def failures(self) -> int:
        return self.unexpected_status + self.transport_errors

    @property
    def responses(self) -> int:
        return self.ok + self.unexpected_status

    def evidence(self) -> str:
        parts = [
            f"{self.method} {self.url}: {self.requests} requests, concurrency {self.concurrency},"
            f" {self.ok} ok, {self.failures} errors"
            f" ({self.unexpected_status} unexpected status, {self.transport_errors} transport)"
        ]
        if self.statuses:
            parts.append(
                "statuses " + ", ".join(f"{s}x{n}" for s, n in sorted(self.statuses.items()))
            )
        if self.errors:
            parts.append("errors " + ", ".join(f"{e}x{n}" for e, n in sorted(self.errors.items())))
        parts.append(f"{self.rps:.1f} req/s over {self.duration_s:.2f} s")
        return "; ".join(parts)

    def _measured_text(self, verdict: ThresholdVerdict) -> str:
        t = verdict.threshold
        if verdict.measured is None:
            return "no responses"
        if t.on_latency:
            return f"{t.aggregation}={verdict.measured:.1f} ms"
        return f"rate={verdict.measured:.4f} ({self.failures}/{self.requests})"

    def checks(self) -> list[CheckResult]:
        """One check per threshold, id ``load <threshold>``."""
        results = []
        evidence = self.evidence()
        few = self.requests < MIN_SAMPLES
        for verdict in self.verdicts:
            t = verdict.threshold
            value = self._measured_text(verdict)
            if not verdict.holds:
                status = CheckStatus.FAIL
                if verdict.measured is None:
                    remedy = "no request got an HTTP response: is the app up and the URL right?"
                elif t.on_latency:
                    remedy = "too slow under load: profile the endpoint, add workers, or relax it"
                else:
                    remedy = "requests fail under load: see the status and error counts"
            elif few:
                status, remedy = CheckStatus.WARN, f"use at least {MIN_SAMPLES} requests"
            else:
                status, remedy = CheckStatus.PASS, ""
            note = f"insufficient samples ({self.requests} < {MIN_SAMPLES}); " if few else ""
            results.append(
                CheckResult(f"load {t.text}", status, value, t.text, note + evidence, remedy)
            )
        return results

    def lines(self) -> list[str]:
        """A summary in the manner of hey's."""
        out = [
            f"Load: {self.method} {self.url}",
            f"  {self.requests} requests, concurrency {self.concurrency}, client {self.client}",
            "",
            "Summary:",
            f"  Total:         {self.duration_s:.4f} s",
            f"  Requests/sec:  {self.rps:.2f}",
            f"  Error rate:    {self.error_rate:.4f} ({self.failures} of {self.requests})",
            "",
            "Latency (ms):          min     avg     p50     p90     p95     p99     max",
        ]
        for title, stats in (("all", self.latency), ("successes", self.latency_ok)):
            label = f"  {title} ({0 if stats is None else stats.count})"
            if stats is None:
                out.append(f"{label:18}  none")
                continue
            figures = (stats.min, stats.avg, stats.p50, stats.p90, stats.p95, stats.p99, stats.max)
            out.append(f"{label:18}" + "".join(f"{v:8.2f}" for v in figures))
        if self.histogram:
            out += ["", "Response time histogram (ms, all requests):"]
            top = max(count for _, count in self.histogram) or 1
            for upper, count in self.histogram:
                bar = "■" * max(1 if count else 0, round(40 * count / top))
                out.append(f"  {upper:10.2f} [{count}]\t|{bar}")
        out += ["", "Status code distribution:"]
        out += [f"  [{s}] {n} responses" for s, n in sorted(self.statuses.items())] or ["  none"]
        if self.errors:
            out += ["", "Error distribution:"]
            out += [f"  [{n}] {e}" for e, n in sorted(self.errors.items(), key=lambda i: -i[1])]
        out += ["", "Thresholds:"]
        for check in self.checks():
            out.append(f"  {check.status.upper():4} {check.threshold}  ({check.value})")
        return out

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "method": self.method,
            "client": self.client,
            "requests": self.requests,
            "concurrency": self.concurrency,
            "ok": self.ok,
            "unexpected_status": self.unexpected_status,
            "transport_errors": self.transport_errors,
            "expected_status": [self.expected_status.start, self.expected_status.stop - 1],
            "duration_s": self.duration_s,
            "rps": self.rps,
            "error_rate": self.error_rate,
            "latency_ms": None if self.latency is None else self.latency.to_json(),
            "latency_ok_ms": None if self.latency_ok is None else self.latency_ok.to_json(),
            "statuses": {str(s): n for s, n in sorted(self.statuses.items())},
            "errors": dict(sorted(self.errors.items())),
            "histogram_ms": [{"le": upper, "count": n} for upper, n in self.histogram],
            "thresholds": [
                {
                    "threshold": v.threshold.text,
                    "measured": v.measured,
                    "holds": v.holds,
                }
                for v in self.verdicts
            ],
            "checks": [
                {
                    "id": c.id,
                    "status": str(c.status),
                    "value": c.value,
                    "threshold": c.threshold,
                    "evidence": c.evidence,
                }
                for c in self.checks()
            ],
        }


# --------------------------------------------------------------------------------------------
# The clients. Each worker returns nothing; results go into a shared _Tally.


class _Tally:
    """Per-request outcomes, appended by the workers (one event loop: no locks needed)."""

    def __init__(self, total: int) -> None:
        self.remaining = total
        self.latency_ms: list[float] = []
        self.ok_ms: list[float] = []
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()

    def claim(self) -> bool:
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


class _ProtocolError(Exception):
    """The server's answer is not HTTP/1.x this parser understands."""


class _Connection:
    """One keep-alive HTTP/1.1 connection of the lean client."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def close(self) -> None:
        writer, self.reader, self.writer = self.writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):  # already gone
                await writer.wait_closed()

    async def exchange(self, request: bytes, head_only: bool) -> int:
        """Send the request and read the whole response; return its status."""
        reused = self.reader is not None
        try:
            return await self._exchange(request, head_only)
        except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
            # A kept-alive connection the server closed while idle fails before any byte of the
            # answer: send again once on a new connection (as httpcore does).
            partial = getattr(exc, "partial", b"")
            await self.close()
            if not reused or partial:
                raise
            return await self._exchange(request, head_only)

    async def _exchange(self, request: bytes, head_only: bool) -> int:
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, limit=_HEADER_LIMIT
            )
        reader, writer = self.reader, self.writer
        writer.write(request)
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            status_line, _, header_block = head.partition(b"\r\n")
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise _ProtocolError(f"bad status line {status_line[:80]!r}")
            status = int(parts[1])
            if status >= 200 or status == 101:
                break
            # 1xx informational (e.g. 100 Continue): a real answer follows.
        length: int | None = None
        chunked = False
        close = parts[0] == b"HTTP/1.0"
        for line in header_block.split(b"\r\n"):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                token = value.strip().lower()
                close = token == b"close" or (close and token != b"keep-alive")
        if head_only or status in (204, 304) or 100 <= status < 200:
            pass
        elif chunked:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip(), 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                await reader.readexactly(size + 2)
        elif length is not None:
            await reader.readexactly(length)
        else:
            await reader.read()  # no length: the body runs to the end of the connection
            close = True
        if close:
            await self.close()
        return status


def _request_bytes(parts: SplitResult, method: str) -> bytes:
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    netloc = parts.netloc.rpartition("@")[2]  # never send userinfo in Host
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {netloc}",
        f"User-Agent: {_USER_AGENT}",
        "Accept: */*",
    ]
    if method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _asyncio_worker(
    tally: _Tally, parts: SplitResult, method: str, timeout: float, expected: range
) -> None:
    host = parts.hostname or "localhost"
    conn = _Connection(host, parts.port or 80)
    request = _request_bytes(parts, method)
    head_only = method == "HEAD"
    clock = time.perf_counter
    try:
        while tally.claim():
            started = clock()
            try:
                async with asyncio.timeout(timeout):
                    status = await conn.exchange(request, head_only)
            except (OSError, EOFError, TimeoutError, ValueError, _ProtocolError) as exc:
                # OSError: refused/reset/unreachable; EOFError: IncompleteReadError;
                # ValueError: LimitOverrunError, bad Content-Length/chunk size.
                tally.latency_ms.append((clock() - started) * 1000)
                tally.errors[type(exc).__name__] += 1
                await conn.close()
                continue
            elapsed = (clock() - started) * 1000
            tally.latency_ms.append(elapsed)
            tally.statuses[status] += 1
            if status in expected:
                tally.ok_ms.append(elapsed)
    finally:
        await conn.close()


async def _httpx_worker(
    tally: _Tally, client: httpx.AsyncClient, url: str, method: str, timeout: float, expected: range
) -> None:
    import httpx

    clock = time.perf_counter
    while tally.claim():
        started = clock()
        try:
            response = await client.request(method, url, timeout=timeout)  # reads the body
        except httpx.HTTPError as exc:
            tally.latency_ms.append((clock() - started) * 1000)
            tally.errors[type(exc).__name__] += 1
            continue
        elapsed = (clock() - started) * 1000
        tally.latency_ms.append(elapsed)
        tally.statuses[response.status_code] += 1
        if response.status_code in expected:
            tally.ok_ms.append(elapsed)


def _lean_path_applies(parts: SplitResult) -> bool:
    """Plain http, and no proxy from the environment for this host (httpx honours those)."""
    if parts.scheme != "http":
        return False
    proxies = urllib.request.getproxies()
    if not ("http" in proxies or "all" in proxies):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname or ""))


# --------------------------------------------------------------------------------------------


async def run(
    url: str,
    *,
    requests: int,
    concurrency: int,
    thresholds: list[str],
    timeout: float = 20.0,
    method: str = "GET",
    expected_status: range = range(200, 400),
) -> LoadReport:
    """Send ``requests`` requests to ``url``, ``concurrency`` at a time, and judge them.

    Raises ``BadInput`` for a threshold that does not parse, a URL that is not http(s), or
    non-positive counts, before any request is sent.
    """
    parsed = [parse_threshold(t) for t in thresholds] or [parse_threshold(DEFAULT_THRESHOLD)]
    if requests < 1 or concurrency < 1:
        raise BadInput(
            f"requests ({requests}) and concurrency ({concurrency}) must be at least 1",
            hint="e.g. -n 200 -c 10",
        )
    if timeout <= 0:
        raise BadInput(f"timeout {timeout} must be positive")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(
            f"{url!r} is not an http:// or https:// URL",
            hint="e.g. http://127.0.0.1:8000/api/health",
        )
    try:
        parts.port  # noqa: B018 (validates the port)
    except ValueError as exc:
        raise BadInput(f"{url!r}: {exc}") from exc
    method = method.upper()
    concurrency = min(concurrency, requests)
    tally = _Tally(requests)

    started = time.perf_counter()
    if _lean_path_applies(parts):
        client_name = "asyncio"
        async with asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(_asyncio_worker(tally, parts, method, timeout, expected_status))
    else:
        import httpx

        client_name = "httpx"
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        headers = {"User-Agent": _USER_AGENT}
        client = httpx.AsyncClient(limits=limits, headers=headers, follow_redirects=False)
        async with client, asyncio.TaskGroup() as group:
            for _ in range(concurrency):
                group.create_task(
                    _httpx_worker(tally, client, url, method, timeout, expected_status)
                )
    duration = time.perf_counter() - started

    latency = LatencyStats.of(tally.latency_ms)
    latency_ok = LatencyStats.of(tally.ok_ms)
    transport_errors = sum(tally.errors.values())
    responses = sum(tally.statuses.values())
    ok = len(tally.ok_ms)
    failures = transport_errors + responses - ok
    error_rate = failures / requests
    verdicts = []
    for t in parsed:
        measured: float | None
        if not t.on_latency:
            measured = error_rate
        elif latency is None or responses == 0:
            measured = None  # fail-closed: no response is not a fast response
        else:
            measured = latency.aggregate(t)
        verdicts.append(ThresholdVerdict(t, measured, measured is not None and t.holds(measured)))
    return LoadReport(
        url=url,
        method=method,
        requests=requests,
        concurrency=concurrency,
        ok=ok,
        unexpected_status=responses - ok,
        transport_errors=transport_errors,
        duration_s=duration,
        rps=requests / duration if duration > 0 else 0.0,
        error_rate=error_rate,
        latency=latency,
        latency_ok=latency_ok,
        statuses=dict(tally.statuses),
        errors=dict(tally.errors),
        histogram=tuple(histogram(latency.sorted_ms if latency else ())),
        verdicts=tuple(verdicts),
        expected_status=expected_status,
        client=client_name,
    )
