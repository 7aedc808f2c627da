"""HTTP checks: an endpoint against its conditions, the version a host reports, production health."""

from __future__ import annotations

import asyncio
import json
import time

import httpx

from rollout.checks.conditions import Response, evaluate
from rollout.config import Endpoint, VersionCheck
from rollout.model import CheckResult, CheckStatus

# blackbox_exporter's phases, from httpcore's trace events (start and end of each).
_PHASES = {
    "connect": ("connection.connect_tcp.started", "connection.connect_tcp.complete"),
    "tls": ("connection.start_tls.started", "connection.start_tls.complete"),
    "first byte": (
        "http11.send_request_headers.started",
        "http11.receive_response_headers.complete",
    ),
    "transfer": (
        "http11.receive_response_headers.complete",
        "http11.receive_response_body.complete",
    ),
}


async def fetch(client: httpx.AsyncClient, method: str, url: str, timeout: float) -> Response:
    """One request, timed to the last byte of the body (what a user waits for), with its phases."""
    marks: dict[str, float] = {}

    async def trace(event: str, info: dict[str, object]) -> None:
        marks[event] = time.perf_counter()

    started = time.perf_counter()
    response = await client.request(method, url, timeout=timeout, extensions={"trace": trace})
    body = response.text
    elapsed = (time.perf_counter() - started) * 1000
    headers = {name.lower(): value for name, value in response.headers.items()}
    phases = {
        name: (marks[end] - marks[begin]) * 1000
        for name, (begin, end) in _PHASES.items()
        if begin in marks and end in marks
    }
    return Response(response.status_code, body, elapsed, headers, phases)


def describe_phases(response: Response) -> str:
    return ", ".join(f"{name} {ms:.1f} ms" for name, ms in response.phases.items())


async def check_endpoint(
    client: httpx.AsyncClient, base_url: str, endpoint: Endpoint, host: str
) -> CheckResult:
    url = base_url.rstrip("/") + endpoint.path
    check_id = f"endpoint {endpoint.path}"
    threshold = " and ".join(endpoint.conditions)
    try:
        response = await fetch(client, endpoint.method, url, endpoint.timeout.total_seconds())
    except httpx.HTTPError as exc:
        return CheckResult(
            check_id,
            CheckStatus.FAIL,
            "no response",
            threshold,
            f"{endpoint.method} {url}: {type(exc).__name__} {exc}".strip(),
            "is the app running and listening? see `rollout logs` / the app log",
            host,
        )
    verdicts = [evaluate(c, response) for c in endpoint.conditions]
    failed = [v for v in verdicts if not v.ok]
    evidence = f"{endpoint.method} {url}: " + "; ".join(v.explanation for v in verdicts)
    if response.phases:
        evidence += f" ({describe_phases(response)})"
    return CheckResult(
        check_id,
        CheckStatus.FAIL if failed else CheckStatus.PASS,
        f"HTTP {response.status} in {response.elapsed_ms:.0f} ms",
        threshold,
        evidence,
        "the new release answers wrongly; it is rolled back" if failed else "",
        host,
    )


async def check_version(
    client: httpx.AsyncClient,
    base_url: str,
    spec: VersionCheck,
    expected: str,
    host: str,
    *,
    settle: float = 0.0,
    streak: int = 1,
) -> CheckResult:
    """The host reports ``expected`` ``streak`` times in a row, each on a fresh connection (so
    every replica behind a balancer gets its say), within ``settle`` seconds (V2)."""
    url = base_url.rstrip("/") + spec.path
    threshold = f".{spec.field} == {expected}" + (
        f", {streak} times in a row" if streak > 1 else ""
    )
    deadline = time.monotonic() + settle
    seen: list[str] = []
    in_a_row = attempts = 0
    while True:
        attempts += 1
        reported = await _reported_version(url, spec.field)
        seen.append(reported)
        in_a_row = in_a_row + 1 if reported == expected else 0
        if in_a_row >= streak:
            return CheckResult(
                "version",
                CheckStatus.PASS,
                expected,
                threshold,
                f"GET {url}: {attempts} attempt(s), last {streak} matched",
                "",
                host,
            )
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.5 if reported != expected else 0.0)
    others = sorted({s for s in seen if s != expected})
    return CheckResult(
        "version",
        CheckStatus.FAIL,
        seen[-1],
        threshold,
        f"GET {url}: {attempts} attempt(s) in {settle:g}s; also saw: {', '.join(others) or 'nothing else'}",
        "the host serves another release than the one deployed",
        host,
    )


async def _reported_version(url: str, field: str) -> str:
    """One read on a fresh connection; what it says, or why it said nothing."""
    try:
        async with httpx.AsyncClient(timeout=10.0) as fresh:
            response = await fresh.get(url)
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        return str(json.loads(response.text).get(field))
    except httpx.HTTPError as exc:
        return type(exc).__name__
    except (ValueError, AttributeError):
        return "not JSON"


async def check_health(
    client: httpx.AsyncClient, url: str | None, host: str, running: str | None
) -> CheckResult:
    """The release running before the deploy must be healthy: deploying onto a sick host hides causes."""
    if running is None:
        return CheckResult(
            "production-health",
            CheckStatus.SKIP,
            "",
            "2xx",
            "no release running yet (first deployment)",
            "",
            host,
        )
    if url is None:
        return CheckResult(
            "production-health",
            CheckStatus.SKIP,
            "",
            "2xx",
            "no runtime.health_url configured",
            "set runtime.health_url",
            host,
        )
    try:
        response = await fetch(client, "GET", url, 10.0)
    except httpx.HTTPError as exc:
        return CheckResult(
            "production-health",
            CheckStatus.FAIL,
            "no response",
            "2xx",
            f"GET {url}: {type(exc).__name__} {exc}".strip(),
            f"{running} is not answering; fix or roll back production first",
            host,
        )
    ok = 200 <= response.status < 300
    return CheckResult(
        "production-health",
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        f"HTTP {response.status} in {response.elapsed_ms:.0f} ms",
        "2xx",
        f"GET {url} ({running})",
        "" if ok else f"{running} is unhealthy; fix or roll back production first",
        host,
    )


async def check_ready(client: httpx.AsyncClient, url: str) -> CheckResult:
    """Monitoring must be up before a deploy: a release nobody can watch is not shipped."""
    try:
        response = await fetch(client, "GET", url, 5.0)
    except httpx.HTTPError as exc:
        return CheckResult(
            "monitoring",
            CheckStatus.FAIL,
            "no response",
            "2xx",
            f"GET {url}: {type(exc).__name__} {exc}".strip(),
            "start monitoring (e.g. Prometheus) or fix checks.monitoring_url",
        )
    ok = 200 <= response.status < 300
    return CheckResult(
        "monitoring",
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        f"HTTP {response.status} in {response.elapsed_ms:.0f} ms",
        "2xx",
        f"GET {url}",
        "" if ok else "monitoring answers but is not ready",
    )
