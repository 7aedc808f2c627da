"""``rollout postmortem``: a Markdown post-mortem draft for an incident, from the records."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, console, load


def register(app: typer.Typer) -> None:
    app.command("postmortem")(postmortem_command)


def postmortem_command(
    incident: Annotated[int, typer.Argument(help="The incident's number (rollout incidents).")],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Where to write it; '-' prints it"
            " (default: .rollout/postmortems/incident-N.md beside rollout.yml).",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Draft one for a level 1 incident too.")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="Write over an existing draft.")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Draft the post-mortem of a level 2 or 3 incident: summary, impact, detection and
    timeline from the records; root cause and action items left for people.

    Example: rollout postmortem 12 --out docs/postmortems/2026-11-29-checkout.md
    """
    from rollout.model import utcnow
    from rollout.notify.postmortem import default_path, draft, write
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        text = draft(store, incident, now=utcnow(), runbook=runbook, force=force)
    if out == Path("-"):
        typer.echo(text, nl=False)
        return
    path = write(out or default_path(runbook, incident), text, replace=replace)
    console().print(f"post-mortem draft of incident {incident}: {path}")
