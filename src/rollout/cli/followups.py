"""``rollout followups``: the post-deployment activities, what is due, doing the automatic ones."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load, print_json

if TYPE_CHECKING:
    from datetime import datetime

    from rollout.config import Runbook
    from rollout.followups import Done
    from rollout.store import FollowUpRecord


class _ListByDefault(TyperGroup):
    """``rollout followups [ENV]`` lists; ``run`` and ``done`` are the group's other commands."""

    # ctx: typer's vendored click Context, whose type typer keeps private.
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["list", *args]
        return super().parse_args(ctx, args)


followups_app = typer.Typer(
    cls=_ListByDefault,
    help="Post-deployment follow-ups (+1h, +24h, +1w): list, run the automatic ones, close.",
)

EnvArgument = Annotated[
    str | None, typer.Argument(help="Only this environment (default: every one).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(followups_app, name="followups")


@followups_app.command("list")
def list_command(
    env: EnvArgument = None,
    due_only: Annotated[bool, typer.Option("--due", help="Only the ones due now.")] = False,
    with_done: Annotated[bool, typer.Option("--done", help="Also the ones done.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Follow-ups still open (with --done, all), soonest due first, with kind and owner.

    Example: rollout followups production --due
    """
    from rollout.model import utcnow
    from rollout.store import open_store

    runbook = load(config)
    _known(runbook, env)
    now = utcnow()
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        records = store.follow_ups(
            env=env,
            status=None if with_done else ("pending", "failed"),
            due_by=now if due_only else None,
        )
    if as_json:
        print_json([_as_json(r, now) for r in records])
        return
    _print(records, now)


@followups_app.command("run")
def run_command(
    env: EnvArgument = None,
    early: Annotated[
        bool, typer.Option("--all", help="Also the automatic ones not due yet.")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Do the automatic follow-ups that are due: performance analysis, error review, KPI
    snapshot. Each result is recorded; #deployments is told. Exit 1 if one needs a look.

    Example: rollout followups run production
    """
    import asyncio

    from rollout.followups import announce, run_due
    from rollout.model import utcnow
    from rollout.store import open_store

    runbook = load(config)
    _known(runbook, env)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        done = run_due(runbook, store, now=utcnow(), env=env, early=early)
    failures = asyncio.run(announce(runbook, done))
    if as_json:
        print_json([_done_json(d) for d in done])
    else:
        _print_done(done)
    for failure in failures:
        console(stderr=True).print(f"warning: {failure}")
    if any(d.finding is None or d.finding.needs_attention for d in done):
        raise typer.Exit(1)


@followups_app.command("done")
def done_command(
    follow_up: Annotated[int, typer.Argument(help="The follow-up's id (rollout followups).")],
    note: Annotated[str, typer.Option("--note", help="What was done or found.")],
    who: Annotated[str | None, typer.Option("--as", help="Who did it (default: you).")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Close a follow-up people did (user feedback, retrospective, runbook update...).

    Example: rollout followups done 7 --note "retro held, 3 actions in JIRA-123"
    """
    from rollout.engine.lock import whoami
    from rollout.followups import mark_done
    from rollout.model import utcnow
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        changed = mark_done(store, follow_up, note=note, by=who or whoami(), now=utcnow())
        record = store.follow_up(follow_up)
    said = "done" if changed else f"was already {record.status}"
    console().print(f"follow-up {follow_up} ({record.activity}, {record.env} {record.tag}) {said}")


def _known(runbook: Runbook, env: str | None) -> None:
    if env is not None:
        runbook.environment(env)  # an unknown name is bad input, with the known ones


def _result(record: FollowUpRecord) -> dict[str, Any] | None:
    if record.result is None:
        return None
    try:
        found = json.loads(record.result)
    except ValueError:
        return {"note": record.result}
    return found if isinstance(found, dict) else {"note": record.result}


def _as_json(record: FollowUpRecord, now: datetime) -> dict[str, Any]:
    from rollout.followups import kind_of

    return {
        "id": record.id,
        "deployment_id": record.deployment_id,
        "env": record.env,
        "tag": record.tag,
        "activity": record.activity,
        "kind": kind_of(record.activity),
        "owner": record.owner,
        "due_at": record.due_at.isoformat(),
        "due": record.due_at <= now,
        "status": record.status,
        "done_at": record.done_at.isoformat() if record.done_at else None,
        "result": _result(record),
    }


def _print(records: list[FollowUpRecord], now: datetime) -> None:
    from rich.table import Table

    from rollout.followups import kind_of

    table = Table("id", "env", "release", "activity", "kind", "owner", "due", "status", "result")
    for r in records:
        due = r.due_at.strftime("%Y-%m-%d %H:%M UTC")
        result = _result(r) or {}
        table.add_row(
            str(r.id),
            r.env,
            r.tag,
            r.activity,
            kind_of(r.activity),
            r.owner or "-",
            f"[bold]{due} (due)[/]" if r.status != "done" and r.due_at <= now else due,
            r.status,
            str(result.get("verdict") or result.get("note") or result.get("error") or ""),
        )
    console().print(table if records else "no follow-ups")


def _done_json(done: Done) -> dict[str, Any]:
    finding = done.finding
    return {
        "id": done.record.id,
        "activity": done.record.activity,
        "env": done.record.env,
        "tag": done.record.tag,
        "verdict": finding.verdict if finding else "failed",
        "summary": finding.summary if finding else done.error,
    }


def _print_done(done: list[Done]) -> None:
    out = console()
    if not done:
        out.print("no automatic follow-up is due")
    for d in done:
        head = f"#{d.record.id} {d.record.activity} ({d.record.env} {d.record.tag})"
        if d.finding is None:
            out.print(f"[red]{head}: failed[/]: {d.error}")
        else:
            colour = "yellow" if d.finding.needs_attention else "green"
            out.print(f"{head}: [{colour}]{d.finding.verdict}[/]: {d.finding.summary}")
