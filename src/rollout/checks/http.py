"""HTTP checks: an endpoint against its conditions, the version a host reports, production health."""

from __future__ import annotations

import json
import time

import httpx

from rollout.checks.conditions import Response, evaluate
from rollout.config import Endpoint, VersionCheck
from rollout.model import CheckResult, CheckStatus


async def fetch(client: httpx.AsyncClient, method: str, url: str, timeout: float) -> Response:
    """One request, timed to the last byte of the body (what a user waits for)."""
    started = time.perf_counter()
    response = await client.request(method, url, timeout=timeout)
    body = response.text
    return Response(response.status_code, body, (time.perf_counter() - started) * 1000)


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
    client: httpx.AsyncClient, base_url: str, spec: VersionCheck, expected: str, host: str
) -> CheckResult:
    url = base_url.rstrip("/") + spec.path
    threshold = f".{spec.field} == {expected}"
    try:
        response = await fetch(client, "GET", url, 10.0)
        reported = json.loads(response.body).get(spec.field) if response.status == 200 else None
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        return CheckResult(
            "version", CheckStatus.FAIL, "unreadable", threshold, f"GET {url}: {exc}", "", host
        )
    ok = reported == expected
    return CheckResult(
        "version",
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        str(reported),
        threshold,
        f"GET {url}: HTTP {response.status}, {spec.field}={reported!r}",
        "" if ok else "the host serves another release than the one deployed",
        host,
    )


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
