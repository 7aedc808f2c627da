"""Operator commands across a fleet: ``exec`` (one command on many hosts) and ``logs``.

Hosts are worked on concurrently up to the environment's ``parallel`` limit; each host's result
is kept whole, so output can be shown grouped per host rather than interleaved.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from rollout.config import Runbook
from rollout.errors import BadInput, HostError
from rollout.runtimes import make_runtime
from rollout.runtimes.base import Target

T = TypeVar("T")


@dataclass(frozen=True)
class HostOutput:
    host: str
    exit_status: int | None  # None: the host could not be reached
    output: str
    seconds: float


def select(
    runbook: Runbook, env_name: str, targets: dict[str, Target], role: str | None
) -> list[Target]:
    """The targets with ``role`` (all when None); an unknown role is bad input."""
    if role is None:
        return list(targets.values())
    specs = runbook.environment(env_name).hosts
    chosen = [targets[s.name] for s in specs if role in s.roles]
    if not chosen:
        roles = sorted({r for s in specs for r in s.roles})
        raise BadInput(
            f"no host of {env_name} has role {role!r}",
            hint=f"roles there: {', '.join(roles) or 'none'}",
        )
    return chosen


async def bounded(
    items: Sequence[Target], limit: int, work: Callable[[Target], Awaitable[T]]
) -> list[T]:
    """``work`` on every item, at most ``limit`` at once, results in input order."""
    gate = asyncio.Semaphore(limit)

    async def one(item: Target) -> T:
        async with gate:
            return await work(item)

    return list(await asyncio.gather(*(one(i) for i in items)))


async def run_everywhere(
    targets: Sequence[Target], argv: Sequence[str], *, parallel: int
) -> list[HostOutput]:
    async def one(target: Target) -> HostOutput:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            result = await target.host.run(argv, check=False)
        except HostError as exc:
            return HostOutput(target.name, None, exc.message, loop.time() - started)
        return HostOutput(target.name, result.exit_status, result.output, loop.time() - started)

    return await bounded(targets, parallel, one)


async def follow_logs(
    runbook: Runbook, targets: Sequence[Target], *, service: str | None, tail: int, follow: bool
) -> AsyncIterator[tuple[str, str]]:
    """(host, line) pairs from every host's app log; merged as they arrive when following."""
    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()

    async def pump(target: Target) -> None:
        try:
            async for line in target.host.stream(
                runtime.logs_argv(target, service=service, tail=tail, follow=follow)
            ):
                await queue.put((target.name, line))
        except HostError as exc:
            await queue.put((target.name, f"[{exc.message}]"))
        finally:
            await queue.put(None)

    tasks = [asyncio.create_task(pump(t)) for t in targets]
    running = len(tasks)
    try:
        while running:
            item = await queue.get()
            if item is None:
                running -= 1
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
