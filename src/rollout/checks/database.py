"""Database connectivity and query latency, like `pg_isready` plus one `SELECT 1`."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from rollout.database.base import url_scheme
from rollout.model import CheckResult, CheckStatus

# A gate, not a benchmark: one round trip on a fresh connection should be far below this.
SLOW_QUERY_MS = 100.0


@dataclass(frozen=True)
class Answer:
    """One timed round trip: the connection, then ``SELECT 1`` on it."""

    connect_ms: float
    query_ms: float
    server: str  # "PostgreSQL 15.4", "SQLite 3.40.1, app.db"


class DatabaseDown(Exception):
    """The database did not answer; ``reason`` is one line, without the password."""

    def __init__(self, reason: str, value: str = "unreachable", remedy: str = "") -> None:
        super().__init__(reason)
        self.reason, self.value, self.remedy = reason, value, remedy


async def ask(url: str, *, timeout: float = 5.0, config_dir: Path | None = None) -> Answer:
    """Connect and run ``SELECT 1``, timed; raise ``DatabaseDown`` saying why it could not.

    An sqlite:/// URL: the file must exist and answer (relative to ``config_dir``). Shared by the
    pre-flight check and the monitoring window's database source, so both measure the same.
    """
    if url_scheme(url) == "sqlite":
        return await asyncio.to_thread(_ask_sqlite, url, config_dir or Path.cwd())
    import psycopg  # only environments with a database pay for the driver's import

    def probe() -> Answer:
        started = time.perf_counter()
        with psycopg.connect(url, connect_timeout=max(1, int(timeout))) as conn:
            connected = time.perf_counter()
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            query_started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            return Answer(
                (connected - started) * 1000,
                (time.perf_counter() - query_started) * 1000,
                f"PostgreSQL {version}",
            )

    try:
        return await asyncio.wait_for(asyncio.to_thread(probe), timeout + 1)
    except (psycopg.Error, OSError, TimeoutError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DatabaseDown(
            reason, remedy="is the database up and the URL right? (the password is never shown)"
        ) from None


def _ask_sqlite(url: str, config_dir: Path) -> Answer:
    from rollout.database.sqlite import SqliteDatabase

    path = SqliteDatabase.from_url(url, config_dir).path
    if not path.is_file():
        raise DatabaseDown(
            f"{path} does not exist",
            "missing",
            "create the database (or fix database.url) before deploying",
        )
    started = time.perf_counter()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            connected = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
    except sqlite3.Error as exc:
        raise DatabaseDown(str(exc), "unreadable") from None
    return Answer(
        (connected - started) * 1000,
        (time.perf_counter() - connected) * 1000,
        f"SQLite {sqlite3.sqlite_version}, {path.name}",
    )


async def check_database(
    url: str,
    *,
    timeout: float = 5.0,
    slow_ms: float = SLOW_QUERY_MS,
    config_dir: Path | None = None,
) -> CheckResult:
    """Connectivity and one ``SELECT 1`` under ``slow_ms``; a refused connection fails with the
    reason."""
    sqlite = url_scheme(url) == "sqlite"
    threshold = f"{'file exists' if sqlite else 'connects'}, SELECT 1 < {slow_ms:g} ms"
    try:
        answer = await ask(url, timeout=timeout, config_dir=config_dir)
    except DatabaseDown as down:
        return CheckResult(
            "database", CheckStatus.FAIL, down.value, threshold, down.reason, down.remedy
        )
    status = CheckStatus.PASS if answer.query_ms < slow_ms else CheckStatus.WARN
    value = f"SELECT 1 in {answer.query_ms:.1f} ms"
    return CheckResult(
        "database",
        status,
        value if sqlite else f"{value} (connect {answer.connect_ms:.0f} ms)",
        threshold,
        answer.server,
        "" if status is CheckStatus.PASS else "the database answers slowly",
    )
