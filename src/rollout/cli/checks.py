"""``rollout check`` (the pre-flight suite) and ``rollout verify`` (the verification suite):
one table of every check with its value and threshold; exit 1 when any fails."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load, print_json

if TYPE_CHECKING:
    from rollout.model import CheckResult


def register(app: typer.Typer) -> None:
    app.command("check")(check_command)
    app.command("verify")(verify_command)


_STYLE = {"pass": "green", "warn": "yellow", "fail": "red", "skip": "dim"}


def show(title: str, checks: list[CheckResult], as_json: bool) -> None:
    if as_json:
        print_json(
            {
                "ok": not any(c.failed for c in checks),
                "checks": [
                    {
                        "id": c.id,
                        "host": c.host,
                        "status": c.status.value,
                        "value": c.value,
                        "threshold": c.threshold,
                        "evidence": c.evidence,
                        "remedy": c.remedy,
                    }
                    for c in checks
                ],
            }
        )
        return
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("check", "host", "status"):
        table.add_column(column, no_wrap=True)
    table.add_column("value", overflow="fold", min_width=14)
    table.add_column("threshold", overflow="fold", min_width=16)
    table.add_column("evidence / remedy", overflow="ellipsis", no_wrap=True, max_width=44)
    # The environment's checks first, then host by host.
    for c in sorted(checks, key=lambda c: (c.host is not None, c.host or "")):
        note = c.remedy if c.failed and c.remedy else c.evidence
        style = _STYLE[c.status.value]
        table.add_row(
            escape(c.id),
            c.host or "-",
            f"[{style}]{c.status.value}[/]",
            escape(c.value),
            escape(c.threshold),
            escape(note),
        )
    out = console()
    out.print(table)
    failed = sum(c.failed for c in checks)
    out.print(
        f"{len(checks)} checks, [red]{failed} failed[/]"
        if failed
        else f"{len(checks)} checks, none failed"
    )


def _run(env: str, phase_name: str, tag: str | None, config: ConfigOption, as_json: bool) -> None:
    from rollout.cli.deploy import run_cancellable
    from rollout.engine.operations import run_checks
    from rollout.model import Phase

    runbook = load(config)
    phase = Phase(phase_name)
    plan, result = run_cancellable(run_checks(runbook, env, phase, tag=tag))
    what = f" for {plan.tag}" if plan.tag else ""
    show(f"{phase_name} checks of {runbook.app} / {env}{what}", result.checks, as_json)
    if result.infrastructure:
        raise typer.Exit(3)
    if any(c.failed for c in result.checks) or result.reason:
        raise typer.Exit(1)


def check_command(
    env: Annotated[str, typer.Argument(help="Environment from rollout.yml.")],
    tag: Annotated[
        str | None, typer.Option("--tag", help="Also check this release's artifact and staging.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """The pre-flight gate on its own: every runbook check on the environment and its hosts.

    Example: rollout check production --tag v2024.01.15-a1b2c3d
    """
    _run(env, "preflight", tag, config, as_json)


def verify_command(
    env: Annotated[str, typer.Argument(help="Environment from rollout.yml.")],
    tag: Annotated[
        str | None,
        typer.Option("--tag", help="The release that should answer (default: what runs)."),
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """The verification suite on its own: endpoints, version, and the configured graders.

    Example: rollout verify production
    """
    _run(env, "verify", tag, config, as_json)
