"""``rollout monitor``: watch an environment for a while, without deploying."""

from __future__ import annotations

from typing import Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, console, load


def register(app: typer.Typer) -> None:
    app.command("monitor")(monitor_command)


def monitor_command(
    env: Annotated[str, typer.Argument(help="Environment to watch.")],
    for_: Annotated[str, typer.Option("--for", help="How long (e.g. 30m).")] = "30m",
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Watch ENV: sample, judge, classify incidents by level and record them. Exit 0 when the
    window passed, 1 when it would have rolled back, 3 when it could not judge.

    Example: rollout monitor production --for 30m
    """
    from rollout.cli.deploy import run_cancellable
    from rollout.config import parse_duration
    from rollout.errors import BadInput
    from rollout.monitor.session import watch_environment
    from rollout.monitor.window import Outcome

    runbook = load(config)
    try:
        duration = parse_duration(for_)
    except ValueError as exc:
        raise BadInput(f"--for {for_!r}: expected a duration like 30m") from exc
    out = console()
    styles = {"warn": "yellow", "error": "red"}

    def say(message: str, level: str) -> None:
        out.print(f"[{styles.get(level, 'dim')}]{message}[/]", highlight=False)

    result = run_cancellable(watch_environment(runbook, env, duration, say))
    colour = {Outcome.PASSED: "green", Outcome.ROLLBACK: "red", Outcome.INCONCLUSIVE: "yellow"}
    verdict = "would roll back" if result.outcome is Outcome.ROLLBACK else result.outcome.value
    out.print(f"[bold {colour[result.outcome]}]{verdict}[/]: {result.reason}", highlight=False)
    raise typer.Exit(
        {Outcome.PASSED: 0, Outcome.ROLLBACK: 1, Outcome.INCONCLUSIVE: 3}[result.outcome]
    )
