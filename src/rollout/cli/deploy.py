"""``rollout deploy`` and ``rollout rollback``."""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load, print_json

if TYPE_CHECKING:
    from rollout.engine.operations import Report

T = TypeVar("T")


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_command)
    app.command("rollback")(rollback_command)


def run_cancellable(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` that also turns SIGTERM into a cancellation, like Ctrl-C, so the lock
    and the hosts are released and put back the same way whichever signal stops a run."""

    import asyncio
    import signal

    async def main() -> T:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        if task is not None:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        return await coro

    return asyncio.run(main())


def _finish(report: Report, as_json: bool) -> None:

    if as_json:
        print_json(report_json(report))
    if report.result is not None and report.result.exit_code:
        raise typer.Exit(report.result.exit_code)


def report_json(report: Report) -> dict[str, Any]:
    data: dict[str, Any] = {"plan": report.plan.describe(), "deployment_id": report.deployment_id}
    if report.result is not None:
        r = report.result
        data |= {
            "outcome": r.outcome.value,
            "seconds": round(r.seconds, 3),
            "reason": r.reason,
            "failed_host": r.failed_host,
            "failed_step": r.failed_step,
            "previous_tag": r.previous_tag,
            "skipped_hosts": r.skipped_hosts,
            "checks": [
                {
                    "id": c.id,
                    "host": c.host,
                    "status": c.status.value,
                    "value": c.value,
                    "threshold": c.threshold,
                    "evidence": c.evidence,
                }
                for c in r.checks
            ],
            "event_log": str(report.event_log),
        }
    return data


def _sinks(as_json: bool, redactor: Any) -> list[Any]:
    if as_json:
        return []
    from rollout.cli.console import ConsoleSink

    return [ConsoleSink(console(), redactor)]


def _print_plan(report: Report) -> None:
    out = console()
    out.print("[bold]dry run[/]: nothing will be touched", highlight=False)
    for line in report.plan.describe():
        out.print(line, highlight=False, markup=False)


def deploy_command(
    env: Annotated[str, typer.Argument(help="Environment from rollout.yml, e.g. production.")],
    tag: Annotated[str, typer.Argument(help="Release tag, e.g. v2024.01.15-a1b2c3d.")],
    config: ConfigOption = DEFAULT_CONFIG,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; touch nothing.")
    ] = False,
    message: Annotated[str, typer.Option("--message", "-m", help="Why; kept with the lock.")] = "",
    commit: Annotated[str | None, typer.Option(help="Commit SHA of the release.")] = None,
    committed_at: Annotated[
        datetime | None, typer.Option(help="When the change was committed.")
    ] = None,
    merged_at: Annotated[datetime | None, typer.Option(help="When the change was merged.")] = None,
    repo: Annotated[
        Path | None,
        typer.Option(
            "--repo",
            help="The app's git checkout: record every commit since the last deployment.",
        ),
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option("--keep-going", help="Leave out hosts whose install fails; deploy the rest."),
    ] = False,
    allow_contract: Annotated[
        bool,
        typer.Option(
            "--allow-contract",
            help="Run contract migrations too (rolling back then means a database restore).",
        ),
    ] = False,
    monitor: Annotated[
        str | None,
        typer.Option("--monitor", help="Watch for this long after the release (e.g. 2m)."),
    ] = None,
    no_monitor: Annotated[
        bool, typer.Option("--no-monitor", help="No monitoring window (recorded as unwatched).")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Deploy TAG to ENV: pre-flight, install, switch in batches, verify; roll back on failure.

    Example: rollout deploy production v2024.01.15-a1b2c3d
    """
    from rollout.engine.operations import Options, deploy

    runbook = load(config)
    options = Options(
        monitor_for=_monitor_for(monitor, no_monitor),
        message=message,
        commit_sha=commit,
        committed_at=committed_at,
        merged_at=merged_at,
        repo=repo,
        keep_going=keep_going,
        allow_contract=allow_contract,
    )
    report = run_cancellable(
        deploy(
            runbook,
            env,
            tag,
            sinks=_sinks(as_json, runbook.redactor),
            options=options,
            dry_run=dry_run,
        )
    )
    if dry_run and not as_json:
        _print_plan(report)
    _finish(report, as_json)


def _monitor_for(monitor: str | None, no_monitor: bool) -> timedelta | None:
    from rollout.config import parse_duration
    from rollout.errors import BadInput

    if no_monitor and monitor is not None:
        raise BadInput("--monitor and --no-monitor contradict each other", hint="choose one")
    if no_monitor:
        return timedelta(0)
    if monitor is None:
        return None
    try:
        return parse_duration(monitor)
    except ValueError as exc:
        raise BadInput(f"--monitor {monitor!r}: expected a duration like 2m or 30s") from exc


def rollback_command(
    env: Annotated[str, typer.Argument(help="Environment from rollout.yml.")],
    to: Annotated[
        str | None, typer.Option("--to", help="Release to go back to (default: previous).")
    ] = None,
    reason: Annotated[str | None, typer.Option("--reason", help="Why; kept in the record.")] = None,
    database: Annotated[
        bool,
        typer.Option(
            "--database",
            help="Also restore the pre-deploy backup of the deployment rolled back"
            " (the live database is kept aside, with a safety backup).",
        ),
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; touch nothing.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Quick rollback: switch every host of ENV back (the target must exist on every host first).

    Example: rollout rollback production --reason "checkout errors"
             rollout rollback production --database --reason "corrupted orders"
    """
    from rollout.engine.operations import rollback

    runbook = load(config)
    report = run_cancellable(
        rollback(
            runbook,
            env,
            to=to,
            reason=reason,
            database=database,
            sinks=_sinks(as_json, runbook.redactor),
            dry_run=dry_run,
        )
    )
    if dry_run and not as_json:
        _print_plan(report)
    _finish(report, as_json)
