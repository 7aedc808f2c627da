"""Database connectivity and query latency, like `pg_isready` plus one `SELECT 1`."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

from rollout.model import CheckResult, CheckStatus

# A gate, not a benchmark: one round trip on a fresh connection should be far below this.
SLOW_QUERY_MS = 100.0


async def check_database(
    url: str,
    *,
    timeout: float = 5.0,
    slow_ms: float = SLOW_QUERY_MS,
    config_dir: Path | None = None,
) -> CheckResult:
    """Connect with psycopg and run `SELECT 1`; a refused connection fails with the reason.
    An sqlite:/// URL: the file must exist and answer `SELECT 1` (relative to ``config_dir``)."""
    if url.split(":", 1)[0].split("+", 1)[0] == "sqlite":
        return await asyncio.to_thread(_check_sqlite, url, config_dir or Path.cwd(), slow_ms)
    import psycopg  # only environments with a database pay for the driver's import

    threshold = f"connects, SELECT 1 < {slow_ms:g} ms"

    def probe() -> tuple[float, float, str]:
        started = time.perf_counter()
        with psycopg.connect(url, connect_timeout=max(1, int(timeout))) as conn:
            connected = time.perf_counter()
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            query_started = time.perf_counter()
            conn.execute("SELECT 1").fetchone()
            return (
                (connected - started) * 1000,
                (time.perf_counter() - query_started) * 1000,
                version,
            )

    try:
        connect_ms, query_ms, version = await asyncio.wait_for(
            asyncio.to_thread(probe), timeout + 1
        )
    except (psycopg.Error, OSError, TimeoutError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return CheckResult(
            "database",
            CheckStatus.FAIL,
            "unreachable",
            threshold,
            reason,
            "is the database up and the URL right? (the password is never shown)",
        )
    status = CheckStatus.PASS if query_ms < slow_ms else CheckStatus.WARN
    return CheckResult(
        "database",
        status,
        f"SELECT 1 in {query_ms:.1f} ms (connect {connect_ms:.0f} ms)",
        threshold,
        f"PostgreSQL {version}",
        "" if status is CheckStatus.PASS else "the database answers slowly",
    )


def _check_sqlite(url: str, config_dir: Path, slow_ms: float) -> CheckResult:
    from rollout.database.sqlite import SqliteDatabase

    threshold = f"file exists, SELECT 1 < {slow_ms:g} ms"
    path = SqliteDatabase.from_url(url, config_dir).path
    if not path.is_file():
        return CheckResult(
            "database", CheckStatus.FAIL, "missing", threshold, f"{path} does not exist",
            "create the database (or fix database.url) before deploying",
        )  # fmt: skip
    started = time.perf_counter()
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            conn.execute("SELECT 1").fetchone()
    except sqlite3.Error as exc:
        return CheckResult("database", CheckStatus.FAIL, "unreadable", threshold, str(exc), "")
    query_ms = (time.perf_counter() - started) * 1000
    status = CheckStatus.PASS if query_ms < slow_ms else CheckStatus.WARN
    return CheckResult(
        "database",
        status,
        f"SELECT 1 in {query_ms:.1f} ms",
        threshold,
        f"SQLite {sqlite3.sqlite_version}, {path.name}",
        "",
    )
