"""The FastAPI application factory."""

from __future__ import annotations

import datetime as dt
import html
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from sqlalchemy import Engine, RowMapping, insert, select
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from united_cars import auth
from united_cars.db import create_schema, make_engine, ping, vehicles
from united_cars.middleware import (
    FaultInjectionMiddleware,
    Metrics,
    MetricsMiddleware,
    SecurityHeadersMiddleware,
)
from united_cars.release import FaultConfig, ReleaseInfo, load_faults, load_release
from united_cars.settings import Settings

logger = logging.getLogger(__name__)

STYLESHEET = """\
body { font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; padding: 0 1rem; }
header { border-bottom: 1px solid #ccc; margin-bottom: 1.5rem; }
.version { color: #555; font-family: monospace; }
.error { color: #b00020; }
label { display: block; margin: .5rem 0; }
"""

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class VehicleIn(BaseModel):
    # strict: "2020" is not a year and an unknown field is a client bug, both worth a 422.
    model_config = ConfigDict(strict=True, extra="forbid")

    make: Name
    model: Name
    year: int = Field(ge=1886)  # the first production car

    @field_validator("year")
    @classmethod
    def _not_in_future(cls, year: int) -> int:
        # Manufacturers sell next year's models from mid-year on.
        if year > dt.datetime.now(dt.UTC).year + 1:
            raise ValueError("year is in the future")
        return year


class VehicleOut(BaseModel):
    id: int
    make: str
    model: str
    year: int
    created_at: dt.datetime


class Database:
    """The engine plus whether the schema exists yet.

    The app starts even when the database is down, so that /api/health can report it; the
    schema is then created on first use once the database is back.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()
        self._schema_ready = False

    def ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._lock:  # two first requests must not both issue CREATE TABLE
            if not self._schema_ready:
                create_schema(self.engine)
                self._schema_ready = True


def _page(title: str, body: str) -> str:
    # No inline script or style anywhere: the Content-Security-Policy forbids both.
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        '<link rel="stylesheet" href="/static/style.css">\n'
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _signin_page(error: str | None = None) -> str:
    message = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return _page(
        "Sign in - United Cars",
        "<h1>Sign in</h1>\n"
        f"{message}\n"
        '<form method="post" action="/auth/signin">\n'
        '<label>Username <input name="username" autocomplete="username" required></label>\n'
        '<label>Password <input name="password" type="password" '
        'autocomplete="current-password" required></label>\n'
        '<button type="submit">Sign in</button>\n</form>',
    )


def _short_error(exc: Exception) -> str:
    # First line only, bounded: the health body is public and driver errors can be long.
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    text = f"{type(exc).__name__}: {detail[0]}" if detail else type(exc).__name__
    return text[:160]


def _request_user(request: Request) -> str | None:
    key: bytes = request.app.state.settings.signing_key
    authorization = request.headers.get("authorization", "")
    scheme, _, credentials = authorization.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return auth.verify_token(credentials.strip(), key)
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    return auth.verify_token(cookie, key) if cookie else None


def require_user(request: Request) -> str:
    user = _request_user(request)
    if user is None:
        raise HTTPException(
            status_code=401,
            detail="authentication required",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return user


def _db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app; the environment is read only when no settings are given."""
    settings = settings or Settings.from_env()
    release: ReleaseInfo = load_release(settings.release_file)
    faults: FaultConfig = load_faults(settings)
    metrics = Metrics(release)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database_url)
        db = Database(engine)
        try:
            await run_in_threadpool(db.ensure_schema)
        except SQLAlchemyError as exc:
            logger.warning("database not ready at startup: %s", _short_error(exc))
        app.state.db = db
        if faults.active:
            logger.warning("fault injection active: %s", faults)
        try:
            yield
        finally:
            engine.dispose()

    # The interactive docs load scripts from a CDN, which the Content-Security-Policy blocks.
    app = FastAPI(
        title="United Cars",
        version=release.version,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.settings = settings
    app.state.release = release
    app.state.faults = faults
    app.state.metrics = metrics

    # add_middleware prepends, so the last added is the outermost: security headers wrap
    # everything, metrics count injected faults, faults act before any route runs.
    app.add_middleware(FaultInjectionMiddleware, faults=faults)
    app.add_middleware(MetricsMiddleware, metrics=metrics, routes=app.router.routes)
    app.add_middleware(SecurityHeadersMiddleware)

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> JSONResponse:
        logger.error("database error on %s: %s", request.url.path, _short_error(exc))
        return JSONResponse({"error": "database unavailable"}, status_code=503)

    @app.get("/", response_class=HTMLResponse)
    def index(request: Request) -> HTMLResponse:
        user = _request_user(request)
        who = (
            f"<p>Signed in as {html.escape(user)}.</p>"
            if user
            else '<p><a href="/auth/signin">Sign in</a></p>'
        )
        body = (
            "<header><h1>United Cars</h1>"
            f'<p class="version">version {html.escape(release.version)}</p></header>\n'
            f'{who}\n<p><a href="/api/vehicles">Vehicles (JSON)</a></p>'
        )
        return HTMLResponse(_page("United Cars", body))

    @app.get("/static/style.css")
    def stylesheet() -> Response:
        return Response(STYLESHEET, media_type="text/css")

    @app.get("/api/health")
    def health(db: Annotated[Database, Depends(_db)]) -> JSONResponse:
        try:
            ping(db.engine)
            database = "ok"
        except Exception as exc:  # any failure to answer SELECT 1 means "not healthy"
            database = f"error: {_short_error(exc)}"
        healthy = database == "ok" and not faults.health_down
        body = {
            "status": "ok" if healthy else "down",
            "version": release.version,
            "database": database,
        }
        return JSONResponse(body, status_code=200 if healthy else 503)

    @app.get("/api/version")
    def version() -> dict[str, str | None]:
        return {"version": release.version, "commit": release.commit, "built_at": release.built_at}

    @app.get("/auth/signin", response_class=HTMLResponse)
    def signin_form() -> HTMLResponse:
        return HTMLResponse(_signin_page())

    @app.post("/auth/signin", response_model=None)
    async def signin(request: Request) -> Response:
        # Parsed by hand: FastAPI's Form() needs python-multipart, which is not a dependency,
        # and an HTML form posts application/x-www-form-urlencoded anyway.
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded":
            return JSONResponse(
                {"error": "expected application/x-www-form-urlencoded"}, status_code=415
            )
        form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=10)
        username = form.get("username", [""])[0]
        password = form.get("password", [""])[0]
        user_ok = auth.check_password(username, settings.demo_user)
        password_ok = auth.check_password(password, settings.demo_password)
        if not (user_ok and password_ok):
            return HTMLResponse(_signin_page("Wrong username or password."), status_code=401)
        response = RedirectResponse("/", status_code=302)
        response.set_cookie(
            auth.SESSION_COOKIE,
            auth.make_token(username, settings.signing_key),
            httponly=True,
            secure=True,
            samesite="lax",
            path="/",
        )
        return response

    @app.get("/api/vehicles")
    def list_vehicles(db: Annotated[Database, Depends(_db)]) -> list[VehicleOut]:
        db.ensure_schema()
        with db.engine.connect() as conn:
            rows = conn.execute(select(vehicles).order_by(vehicles.c.id).limit(1000)).mappings()
            return [_vehicle_out(row) for row in rows]

    @app.get("/api/vehicles/{vehicle_id}")
    def get_vehicle(vehicle_id: int, db: Annotated[Database, Depends(_db)]) -> VehicleOut:
        db.ensure_schema()
        with db.engine.connect() as conn:
            row = (
                conn.execute(select(vehicles).where(vehicles.c.id == vehicle_id))
                .mappings()
                .one_or_none()
            )
        if row is None:
            raise HTTPException(status_code=404, detail="vehicle not found")
        return _vehicle_out(row)

    @app.post("/api/vehicles", status_code=201)
    def create_vehicle(
        vehicle: VehicleIn,
        db: Annotated[Database, Depends(_db)],
        user: Annotated[str, Depends(require_user)],
    ) -> VehicleOut:
        db.ensure_schema()
        values = vehicle.model_dump() | {"created_at": dt.datetime.now(dt.UTC)}
        with db.engine.begin() as conn:
            row = (
                conn.execute(insert(vehicles).values(**values).returning(*vehicles.c))
                .mappings()
                .one()
            )
        logger.info("vehicle %s created by %s", row["id"], user)
        return _vehicle_out(row)

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


def _vehicle_out(row: RowMapping) -> VehicleOut:
    created_at: dt.datetime = row["created_at"]
    # SQLite hands back naive datetimes; every timestamp this app writes is UTC.
    if created_at.tzinfo is None:
        created_at = created_at.replace(tzinfo=dt.UTC)
    return VehicleOut(
        id=row["id"], make=row["make"], model=row["model"], year=row["year"], created_at=created_at
    )
