"""``rollout incidents`` and ``rollout ack``: incidents and their timelines."""

from __future__ import annotations

from typing import Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load, print_json


def register(app: typer.Typer) -> None:
    app.command("incidents")(incidents_command)
    app.command("declare")(declare_command)
    app.command("ack")(ack_command)
    app.command("resolve")(resolve_command)


def incidents_command(
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    open_only: Annotated[bool, typer.Option("--open", help="Only the ones not resolved.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Incidents, newest first, with their timelines.

    Example: rollout incidents --env production --open
    """
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        records = store.incidents(env=env, open_only=open_only)
    if as_json:
        print_json([r.__dict__ for r in records])
        return
    from rich.table import Table

    table = Table("#", "env", "level", "status", "detected", "acknowledged", "mitigated", "what")
    for r in records:
        table.add_row(
            str(r.id),
            r.env,
            str(r.level),
            r.status,
            r.detected_at.isoformat(timespec="seconds"),
            r.acknowledged_at.isoformat(timespec="seconds") if r.acknowledged_at else "-",
            r.mitigated_at.isoformat(timespec="seconds") if r.mitigated_at else "-",
            r.symptoms,
        )
    console().print(table)


def declare_command(
    env: Annotated[str, typer.Argument(help="Environment the incident is in.")],
    title: Annotated[str, typer.Option("--title", "-t", help="What is wrong, in a line.")],
    level: Annotated[int, typer.Option("--level", help="1 minor, 2 major, 3 critical.")] = 2,
    since: Annotated[
        str | None, typer.Option("--since", help="How long ago the impact began (e.g. 20m).")
    ] = None,
    deployment: Annotated[
        int | None, typer.Option("--deployment", help="The deployment at fault (default: running).")
    ] = None,
    who: Annotated[str | None, typer.Option("--as", help="Who declares (default: you).")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Declare an incident a person found (the monitoring did not): recorded, acknowledged by
    you, told to #incidents; the next `rollout rollback` of ENV mitigates it.

    Example: rollout declare production --level 2 --since 20m --title "orders lost their totals"
    """
    from rollout.cli.deploy import run_cancellable
    from rollout.config import parse_duration
    from rollout.engine.operations import declare_incident
    from rollout.errors import BadInput

    runbook = load(config)
    try:
        began = parse_duration(since) if since is not None else None
    except ValueError as exc:
        raise BadInput(f"--since {since!r}: {exc}", hint="e.g. --since 20m") from exc
    number = run_cancellable(
        declare_incident(
            runbook,
            env,
            level=level,
            title=title,
            since=began,
            deployment_id=deployment,
            actor=who,
        )
    )
    console().print(
        f"incident {number} declared in {env} (level {level});"
        f" `rollout rollback {env}` mitigates it, `rollout resolve {number}` closes it",
        highlight=False,
    )


def ack_command(
    incident: Annotated[int, typer.Argument(help="The incident's number (rollout incidents).")],
    who: Annotated[
        str | None, typer.Option("--as", help="Who acknowledges (default: you).")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Acknowledge an incident: its response clock stops and escalation ends.

    Example: rollout ack 12 --as alice
    """
    from rollout.engine.lock import whoami
    from rollout.errors import BadInput, StoreError
    from rollout.model import utcnow
    from rollout.store import open_store

    runbook = load(config)
    person = who or whoami()
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        try:
            record = store.incident(incident)
        except StoreError as exc:
            raise BadInput(f"no incident {incident}", hint="see `rollout incidents`") from exc
        if record.acknowledged_at is not None:
            console().print(
                f"incident {incident} was acknowledged by {record.acknowledged_by} at"
                f" {record.acknowledged_at.isoformat(timespec='seconds')}",
                highlight=False,
            )
            return
        now = utcnow()
        store.update_incident(incident, acknowledged_at=now, acknowledged_by=person)
        store.append_audit(
            actor=person, action="incident.acknowledged", subject=f"incident:{incident}", details={}
        )
    took = (now - record.detected_at).total_seconds()
    console().print(f"incident {incident} acknowledged by {person}, {took:.0f} s after detection")


def resolve_command(
    incident: Annotated[int, typer.Argument(help="The incident's number (rollout incidents).")],
    note: Annotated[str, typer.Option("--note", help="What fixed it.")] = "",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Mark an incident resolved: the cause is fixed, not only mitigated.

    Example: rollout resolve 12 --note "bad index dropped in v2026.11.29"
    """
    from rollout.engine.lock import whoami
    from rollout.errors import BadInput, StoreError
    from rollout.model import utcnow
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        try:
            record = store.incident(incident)
        except StoreError as exc:
            raise BadInput(f"no incident {incident}", hint="see `rollout incidents`") from exc
        if record.resolved_at is not None:
            console().print(f"incident {incident} is already resolved", highlight=False)
            return
        store.update_incident(incident, resolved_at=utcnow(), status="resolved")
        store.append_audit(
            actor=whoami(),
            action="incident.resolved",
            subject=f"incident:{incident}",
            details={"note": note},
        )
    console().print(f"incident {incident} resolved", highlight=False)
