"""The database: SQLAlchemy Core, one table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    create_engine,
    func,
    text,
)

from united_cars.settings import normalize_database_url

metadata = MetaData()

vehicles = Table(
    "vehicles",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("make", String(64), nullable=False),
    Column("model", String(64), nullable=False),
    Column("year", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)


def make_engine(url: str) -> Engine:
    url = normalize_database_url(url)
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Sync endpoints run in a thread pool, so a pooled connection may be used by a thread
        # other than the one that opened it.
        connect_args["check_same_thread"] = False
    elif url.startswith("postgresql"):
        # A health probe must answer within its timeout even when the server is unreachable.
        connect_args["connect_timeout"] = 3
    # pool_pre_ping: after a database restart (or a restore during a rollback) the pool would
    # otherwise hand out dead connections and fail the first requests.
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args)


def create_schema(engine: Engine) -> None:
    # TODO(migrations): a later issue moves schema changes to Alembic migrations, which rollout
    # runs and can roll back; until then the app creates its single table when it is missing.
    metadata.create_all(engine, checkfirst=True)


def ping(engine: Engine) -> None:
    """Raise if the database cannot run ``SELECT 1``."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
