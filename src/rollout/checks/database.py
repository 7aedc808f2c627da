"""Database connectivity and query latency, like `pg_isready` plus one `SELECT 1`."""

from __future__ import annotations

import asyncio
import time

from rollout.model import CheckResult, CheckStatus

# A gate, not a benchmark: one round trip on a fresh connection should be far below this.
SLOW_QUERY_MS = 100.0


async def check_database(
    url: str, *, timeout: float = 5.0, slow_ms: float = SLOW_QUERY_MS
) -> CheckResult:
    """Connect with psycopg and run `SELECT 1`; a refused connection fails with the reason."""
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
