"""``rollout approve`` and ``rollout readiness``: the release readiness review, on the record."""

from __future__ import annotations

from typing import Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load


def register(app: typer.Typer) -> None:
    app.command("approve")(approve_command)
    app.command("readiness")(readiness_command)


def approve_command(
    env: Annotated[str, typer.Argument(help="Environment the release goes to.")],
    tag: Annotated[str, typer.Argument(help="The release.")],
    role: Annotated[
        str | None, typer.Option("--as", help="The role you sign off as, e.g. product-owner.")
    ] = None,
    item: Annotated[
        str | None, typer.Option("--item", help="A checklist item instead, e.g. ci-passed.")
    ] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Who (default: you, user@machine).")
    ] = None,
    note: Annotated[str, typer.Option("--note", help="Why, or what was reviewed.")] = "",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Record a sign-off (who, role, when) or a checklist item for a release.

    Example: rollout approve production v2024.01.15-a1b2c3d --as product-owner --note "demoed"
    """
    from rollout.engine.lock import whoami
    from rollout.errors import BadInput
    from rollout.model import Release
    from rollout.store import open_store

    runbook = load(config)
    runbook.environment(env)
    Release.parse(tag, runbook.release.tag_pattern)
    if (role is None) == (item is None):
        raise BadInput("give --as ROLE (a sign-off) or --item ITEM (a checklist item), one of them")
    person = by or whoami()
    kind = "sign-off" if item is None else item
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        store.add_approval(env=env, tag=tag, person=person, role=role or "", note=note, kind=kind)
        store.append_audit(
            actor=person,
            action="readiness.recorded",
            subject=f"{env}:{tag}",
            details={"kind": kind, "role": role, "note": note},
        )
    what = f"sign-off as {role}" if item is None else f"item {item}"
    console().print(f"recorded {what} by {person} for {tag} on {env}", highlight=False)


def readiness_command(
    env: Annotated[str, typer.Argument(help="Environment the release goes to.")],
    tag: Annotated[str, typer.Argument(help="The release.")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """What the readiness review has, and what it still misses (exit 1 when something is missing).

    Example: rollout readiness production v2024.01.15-a1b2c3d
    """
    from rollout.checks.readiness import review
    from rollout.cli.checks import show
    from rollout.model import Release, utcnow
    from rollout.store import open_store

    runbook = load(config)
    runbook.environment(env)
    Release.parse(tag, runbook.release.tag_pattern)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        records = store.approvals(env, tag)
    results = review(runbook.readiness, runbook.people, runbook.notify, records, utcnow())
    show(f"readiness of {tag} for {env}", results, as_json)
    if any(r.failed for r in results):
        raise typer.Exit(1)
