"""The deploy's migration steps: plan and gate at pre-flight, apply before the first switch.

Pre-flight ("migrations") reads the pending migrations, lints and classes them, and stops the
deploy on a lint error or a contract migration that was not allowed; when one was allowed, it
says that rolling this release back means a database restore. The deploy step ("migrate")
applies exactly the plan pre-flight approved, after every host has the release installed and
before any host switches: expand migrations first, so the running release keeps working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from rollout.config import Runbook
from rollout.errors import GateFailed

if TYPE_CHECKING:
    from rollout.database.migrate import MigrationPlan
    from rollout.engine.runner import Runner


def migration_actions(
    runbook: Runbook, env: str, runner: Runner, *, allow_contract: bool
) -> dict[str, Callable[[], Awaitable[str]]]:
    from rollout.database import migrate
    from rollout.engine.events import Note

    target = migrate.MigrationTarget.of(runbook, env)
    allowed = allow_contract or target.settings.allow_contract
    approved: list[MigrationPlan] = []

    async def gate() -> str:
        plan = await asyncio.to_thread(migrate.plan_migrations, target, allow_contract=allowed)
        pending = ", ".join(f"{m.id} ({m.kind.value})" for m in plan.pending) or "none"
        if not plan.ok:
            problems = [f"{f.rule}: {f.message}" for f in plan.errors]
            problems += [
                f"migration {m.id} ({m.name}) is a contract migration" for m in plan.refused
            ]
            problems += [f"{name} changed after it was applied" for name in plan.modified]
            raise GateFailed(
                f"migrations refused: {'; '.join(problems)}",
                hint="see `rollout db plan ENV`; contract migrations need --allow-contract",
            )
        approved.append(plan)
        if plan.verdict.rollback_needs_restore:
            runner.events.emit(Note(message=f"migrations: {plan.verdict.summary}", level="warn"))
        return f"pending: {pending}; {plan.verdict.summary}"

    async def apply() -> str:
        assert approved, "the migrations gate runs at pre-flight, before this step"
        plan = approved[0]
        if not plan.pending:
            return "no pending migration"
        result = await asyncio.to_thread(
            migrate.apply_migrations, target, plan, allow_contract=allowed
        )
        tries = len(result.steps)
        return f"{result.before or 'empty'} -> {result.head}: applied {', '.join(result.applied)} ({tries} tries)"

    return {"migrations": gate, "migrate": apply}
