"""A running deployment, followed: Server-Sent Events read from the store.

The runner writes each step to the store as it starts and ends (engine -> store sink), so the
stream polls the store, not the runner: it works for a deploy started anywhere that shares the
store. Every new or changed step is one ``step`` event; the deployment's end is one
``finished`` event, after which the stream ends (static/live.js then closes its EventSource,
which would otherwise reconnect).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from rollout.model import Outcome
from rollout.report.formats import moment, offset, seconds
from rollout.store import StepRecord, Store
from rollout.store.records import DeploymentRecord

KEEPALIVE = 15.0  # seconds: a comment line, so a dead client or proxy is noticed


async def events(store: Store, deployment_id: int, poll: float) -> AsyncIterator[str]:
    seen: dict[int, tuple[str, datetime | None]] = {}
    quiet = 0.0
    while True:
        d, steps = await run_in_threadpool(_read, store, deployment_id)
        for s in steps:
            now = (s.status.value, s.finished_at)
            if seen.get(s.id) != now:
                seen[s.id] = now
                quiet = 0.0
                yield message("step", step(s, d.started_at))
        if d.status is not Outcome.RUNNING:
            yield message("finished", finished(d))
            return
        if quiet >= KEEPALIVE:
            quiet = 0.0
            yield ": keep-alive\n\n"
        await asyncio.sleep(poll)
        quiet += poll


def _read(store: Store, deployment_id: int) -> tuple[DeploymentRecord, list[StepRecord]]:
    # The deployment first: when it reads finished, the steps read after it are all there.
    return store.deployment(deployment_id), store.steps(deployment_id)


def message(event: str, data: dict[str, Any]) -> str:
    # json.dumps escapes newlines, so the data is one `data:` line whatever the records hold.
    return f"event: {event}\ndata: {json.dumps(data)}\n\n"


def step(s: StepRecord, start: datetime) -> dict[str, Any]:
    return {
        "id": s.id,
        "phase": s.phase,
        "name": s.name,
        "host": s.host or "",
        "status": s.status.value,
        "started": offset(s.started_at, start),
        "took": seconds(s.duration) if s.finished_at else "",
    }


def finished(d: DeploymentRecord) -> dict[str, Any]:
    return {
        "status": d.status.value,
        "finished_at": moment(d.finished_at),
        "reason": d.reason or "",
    }
