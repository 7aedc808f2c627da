"""Waiting for an app to answer healthy, with a deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from rollout.errors import NotHealthy

# Poll fast at first (a small app is up in well under a second), then back off a little:
# each poll costs the app one request, and every 0.1 s of latency here is deploy time.
_FIRST_POLL = 0.05
_MAX_POLL = 0.1


async def wait_healthy(
    host: str,
    url: str,
    *,
    timeout: float,
    still_starting: Callable[[], Awaitable[str | None]] | None = None,
) -> str:
    """Poll ``url`` until it answers 2xx; return evidence, or raise ``NotHealthy`` at the deadline.

    ``still_starting`` lets the runtime stop waiting early when the process has already died,
    returning why (for example the tail of its log).
    """
    import httpx  # here, not at the top: `rollout exec` and `logs` never poll and skip its import

    deadline = time.monotonic() + timeout
    delay = _FIRST_POLL
    last = "no answer yet"
    async with httpx.AsyncClient(timeout=min(5.0, timeout)) as client:
        while True:
            started = time.monotonic()
            try:
                response = await client.get(url)
                last = f"HTTP {response.status_code}"
                if response.is_success:
                    elapsed_ms = (time.monotonic() - started) * 1000
                    return f"GET {url}: HTTP {response.status_code} in {elapsed_ms:.0f} ms"
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if still_starting is not None:
                died = await still_starting()
                if died is not None:
                    raise NotHealthy(host, f"app exited before {url} was healthy\n{died}")
            if time.monotonic() + delay > deadline:
                raise NotHealthy(
                    host,
                    f"{url} not healthy within {timeout:.0f}s (last: {last})",
                    hint="check the app's log and runtime.health_url / health_timeout",
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_POLL)
