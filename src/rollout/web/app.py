"""The app factory: routes, the static script, security headers on every answer, and the one
place errors become HTTP answers (an HTML page, or JSON under /api/)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rollout.config import Runbook
from rollout.errors import BadInput, InfrastructureError, RolloutError
from rollout.web import pages, routes
from rollout.web.site import Site

STATIC = Path(__file__).parent / "static"

# Nothing from another origin, no inline script: the one script is /static/live.js, and it
# talks only to this server (its event stream). Inline styles are how the pages are styled.
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")


def create_app(
    runbook: Runbook,
    *,
    poll: float = 0.5,
    hosts: Collection[str] | None = LOOPBACK_NAMES,
) -> FastAPI:
    """The dashboard of ``runbook``'s store; the store is opened on the first request and
    closed when the server shuts down. ``poll``: seconds between reads of a running deploy.
    ``hosts``: the names a request's Host header may give (None: any, for ``--public``)."""
    site = Site(runbook, poll)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            site.close()

    app = FastAPI(
        title=f"rollout: {runbook.app}",
        docs_url=None,  # the API docs pages load their scripts from a CDN
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
    )
    if hosts is not None:
        app.add_middleware(KnownHost, names=frozenset(hosts))
    app.add_middleware(SecurityHeaders)  # added last, so outermost: the refusal gets them too
    app.add_exception_handler(RolloutError, _rollout_error(site))
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _bad_query)
    app.add_exception_handler(Exception, _crash)
    app.include_router(routes.router(site))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class SecurityHeaders:
    """Adds ``HEADERS`` to every answer, errors and the event stream included (plain ASGI, so
    a streamed answer passes through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, sending)


class KnownHost:
    """Answers only requests whose Host header names this server. A page on another site can
    point its own name at 127.0.0.1 (DNS rebinding) and then read this loopback dashboard as
    its own origin; its requests still carry its name in Host, so they are refused here."""

    def __init__(self, app: ASGIApp, names: frozenset[str]) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _host_name(scope) not in self.names:
            refused = PlainTextResponse(
                "unknown Host header: open the dashboard by its address\n", 400
            )
            await refused(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _host_name(scope: Scope) -> str:
    """The Host header's name, without the port; an IPv6 address without its brackets."""
    host = Headers(scope=scope).get("host", "")
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _rollout_error(site: Site) -> Callable[[Request, Exception], Awaitable[Response]]:
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RolloutError)
        code = (
            404
            if isinstance(exc, routes.NotFound)
            else 400
            if isinstance(exc, BadInput)
            else 503
            if isinstance(exc, InfrastructureError)
            else 500
        )
        # Errors quote what they met; a secret the runbook knows never reaches the page.
        redact = site.runbook.redactor.redact
        message = redact(exc.message)
        hint = None if exc.hint is None else redact(exc.hint)
        return _answer(request, code, message, hint)

    return handle


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = f"no page at {request.url.path}" if exc.status_code == 404 else str(exc.detail)
    return _answer(request, exc.status_code, message, "the overview is at /")


async def _bad_query(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    where = ", ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
        for e in exc.errors()
    )
    return _answer(request, 400, f"bad request: {where}", "see README.md for the routes")


async def _crash(request: Request, exc: Exception) -> Response:
    # A bug: the traceback goes to the server's log (Starlette re-raises it after this answer),
    # never to the page, where it could quote anything.
    return _answer(request, 500, "the dashboard could not build this page", "see the server's log")


def _answer(request: Request, code: int, message: str, hint: str | None) -> Response:
    # The headers are set here too: an unexpected error is answered outside the middleware.
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": message, "hint": hint}, status_code=code, headers=HEADERS)
    title = "not found" if code == 404 else f"error {code}"
    return HTMLResponse(pages.problem(title, message, hint), status_code=code, headers=HEADERS)
