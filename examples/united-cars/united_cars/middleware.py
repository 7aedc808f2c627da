"""ASGI middleware: security headers, request metrics and fault injection.

Written as plain ASGI (not BaseHTTPMiddleware) so that they see the real scope, add no extra
task per request, and wrap every response, including error responses.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.datastructures import MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from united_cars.release import FaultConfig, ReleaseInfo

logger = logging.getLogger(__name__)

SECURITY_HEADERS: dict[str, str] = {
    # Two years: long enough for HSTS preload lists and the verifier's 180-day minimum.
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    # The app uses none of these powerful features; deny them to any embedded content.
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}

# Label values must stay a small fixed set: one series per arbitrary method or raw path would
# let any client grow the metrics without bound.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"


async def _send_json(send: Send, status: int, body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class SecurityHeadersMiddleware:
    """Add the security headers to every response, and turn crashes into a JSON 500.

    It is the outermost user middleware: Starlette's own error handler sits outside it and would
    answer a crash without these headers, so unhandled errors are answered here instead.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:
                raise
            await _send_json(send_with_headers, 500, {"error": "internal server error"})


class Metrics:
    """The app's Prometheus metrics, in a registry of its own so apps never share series."""

    def __init__(self, release: ReleaseInfo) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "http_requests_total",
            "HTTP requests by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "HTTP request duration in seconds by method and route template.",
            ["method", "route"],
            registry=self.registry,
        )
        build_info = Gauge(
            "united_cars_build_info",
            "Always 1; labels say which release is running.",
            ["version", "commit"],
            registry=self.registry,
        )
        build_info.labels(version=release.version, commit=release.commit).set(1)


def route_template(routes: list[BaseRoute], scope: Scope) -> str:
    """The template of the route that will serve this request ("/api/vehicles"), not the path."""
    for route in routes:
        match, _ = route.matches(scope)
        # PARTIAL means the path matched but not the method (a 405): still that route.
        if match is not Match.NONE:
            return str(getattr(route, "path", UNMATCHED_ROUTE))
    return UNMATCHED_ROUTE


class MetricsMiddleware:
    """Count and time every request, labelled by route template.

    The template is resolved here, before the request goes further, so that responses that
    never reach the router (injected faults) are still counted under their route.
    """

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: list[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in _KNOWN_METHODS else "OTHER"
        route = route_template(self.routes, scope)
        status = 500  # what the client sees if the app raises before starting a response
        start = time.perf_counter()

        async def send_capturing_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_capturing_status)
        finally:
            self.metrics.duration.labels(method=method, route=route).observe(
                time.perf_counter() - start
            )
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()


class FaultInjectionMiddleware:
    """Add latency and random 500s as configured, so demos and tests cause real incidents."""

    def __init__(self, app: ASGIApp, *, faults: FaultConfig) -> None:
        self.app = app
        self.faults = faults
        # A private generator: tests and other code seeding the global one do not change it.
        self.random = random.Random()
        self.started = time.monotonic()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        waiting = time.monotonic() - self.started < self.faults.after_s
        if scope["type"] != "http" or waiting or not self.faults.applies_to(scope["path"]):
            await self.app(scope, receive, send)
            return
        if self.faults.latency_ms > 0:
            await asyncio.sleep(self.faults.latency_ms / 1000)
        # random() is in [0, 1): error_rate 1.0 always fails, 0.0 never does.
        if self.random.random() < self.faults.error_rate:
            await _send_json(
                send, 500, {"error": "internal server error", "detail": "injected fault"}
            )
            return
        await self.app(scope, receive, send)
