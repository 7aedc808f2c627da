"""Opening the database: URL handling, SQLite settings, migrations, and error translation."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from rollout.errors import StoreError

MIGRATIONS = Path(__file__).parent / "migrations"

# The newest migration's revision. Opening a store that is already there skips Alembic (about
# a second of imports and script loading per command); a test pins this to Alembic's head.
HEAD_REVISION = "0005"

# Execution option that marks a connection as about to write (see ``_begin``).
WRITE = "rollout_write"

# Any fixed number: every rollout process takes this advisory lock to migrate one at a time.
_MIGRATION_LOCK = 0x726F6C6C

_BUSY_TIMEOUT_S = 30

# What a failed database call can raise on its way out of SQLAlchemy (which wraps the
# driver's errors, psycopg's included, so psycopg is imported only for PostgreSQL) (Alembic's
# own errors are translated in ``migrate``, which imports Alembic only when it has work).
DATABASE_ERRORS = (SQLAlchemyError, sqlite3.Error)


def parse_url(url: str) -> URL:
    """The SQLAlchemy URL for a store URL, with PostgreSQL pinned to the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"store URL {url!r} cannot be parsed", hint=_URL_HINT) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "postgresql+psycopg"):
        return parsed
    raise StoreError(f"store URL scheme {parsed.drivername!r} is not supported", hint=_URL_HINT)


_URL_HINT = "use sqlite:////absolute/path/rollout.db or postgresql://user@host/db"


def create(url: URL) -> Engine:
    """An engine for ``url``; for SQLite, the file's folder is created and the file tuned."""
    if url.get_backend_name() != "sqlite":
        # hide_parameters keeps values (already redacted, but still) out of error messages.
        return create_engine(url, hide_parameters=True, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        folder = Path(url.database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store's folder {folder}: {exc.strerror}") from exc
    engine = create_engine(url, hide_parameters=True, connect_args={"timeout": _BUSY_TIMEOUT_S})
    event.listen(engine, "connect", _tune_sqlite)
    event.listen(engine, "begin", _begin)
    return engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    # Several rollout processes share one file: WAL lets readers run beside a writer, the busy
    # timeout makes writers queue instead of failing, and foreign keys are off by default.
    # pysqlite's own transaction handling is switched off so that ``_begin`` decides the mode.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_S * 1000}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def _begin(connection: Connection) -> None:
    # A writer takes the write lock up front (IMMEDIATE): upgrading a read transaction to a
    # write later can fail at once with "database is locked", ignoring the busy timeout.
    # It also serialises audit appends and lock acquisition across processes.
    write = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def current_revision(engine: Engine) -> str | None:
    """The schema's revision, or None for a new (or foreign) database."""
    with engine.connect() as connection:
        try:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            return None


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; concurrent callers take turns."""
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    with engine.connect() as connection:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            try:
                command.upgrade(config, "head")
            except CommandError as exc:
                raise StoreError(f"cannot migrate rollout's records: {exc}") from exc


@contextmanager
def translated_errors(url: URL) -> Iterator[None]:
    """Turn any database error into a StoreError naming the store, never its password."""
    try:
        yield
    except DATABASE_ERRORS as exc:
        raise StoreError(describe(exc, url)) from exc


def describe(exc: BaseException, url: URL) -> str:
    # The driver's own message is the useful part; SQLAlchemy's wrapper adds the SQL text.
    cause = getattr(exc, "orig", None) or exc
    detail = str(cause).strip() or type(cause).__name__
    message = f"store {url.render_as_string(hide_password=True)}: {detail}"
    if url.password:
        message = message.replace(str(url.password), "***")
    return message
