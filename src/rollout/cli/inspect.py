"""``rollout status`` and ``rollout history``: what runs where, and what happened."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load, print_json


def register(app: typer.Typer) -> None:
    app.command("status")(status_command)
    app.command("history")(history_command)


def _yes_no(value: bool | None) -> str:
    return {True: "[green]yes[/]", False: "[red]no[/]", None: "[dim]?[/]"}[value]


def status_command(
    env: Annotated[str, typer.Argument(help="Environment from rollout.yml.")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Per host: current and previous release, running, healthy; the lock; the last deployment.

    Example: rollout status production
    """
    from rich.table import Table

    from rollout.cli.deploy import run_cancellable
    from rollout.engine.operations import status

    runbook = load(config)
    st = run_cancellable(status(runbook, env))
    if as_json:
        print_json(
            {
                "env": st.env,
                "drift": st.drift,
                "hosts": [
                    {
                        "host": h.host,
                        "current": h.current,
                        "runs": h.link,
                        "previous": h.previous,
                        "running": h.running,
                        "healthy": h.healthy,
                        "releases": list(h.releases),
                    }
                    for h in st.hosts
                ],
                "lock": None
                if st.lock is None
                else {
                    "holder": st.lock.holder,
                    "pid": st.lock.pid,
                    "since": st.lock.acquired_at,
                    "tag": st.lock.tag,
                },
                "last": None
                if st.last is None
                else {"id": st.last.id, "tag": st.last.tag, "status": st.last.status},
            }
        )
        return
    out = console()
    table = Table(title=f"{runbook.app} / {env}", title_justify="left")
    for column in ("host", "current", "runs", "previous", "running", "healthy", "releases"):
        table.add_column(column)
    for h in st.hosts:
        runs = h.link or "-"
        table.add_row(
            h.host,
            h.current or "-",
            runs if h.link in (None, h.current) else f"[red]{runs}[/]",
            h.previous or "-",
            _yes_no(h.running),
            _yes_no(h.healthy),
            str(len(h.releases)),
        )
    out.print(table)
    if st.drift:
        out.print(
            "[yellow]drift: hosts run different releases, or not the one their version file names[/]"
        )
    lock = (
        "free"
        if st.lock is None
        else f"held by {st.lock.holder} (pid {st.lock.pid}) since {st.lock.acquired_at:%Y-%m-%d %H:%M:%S} UTC"
    )
    out.print(f"lock: {lock}", highlight=False)
    if st.last is not None:
        out.print(
            f"last deployment: #{st.last.id} {st.last.kind} {st.last.tag} {st.last.status}",
            highlight=False,
        )


def history_json(records: list[Any]) -> list[dict[str, Any]]:
    from rollout.store.records import deployment_summary

    return [deployment_summary(r) for r in records]


def history_command(
    env: Annotated[str | None, typer.Option("--env", help="Only this environment.")] = None,
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Deployments and rollbacks, newest first, with outcome and duration.

    Example: rollout history --env production --json
    """
    from rich.table import Table

    from rollout.cli.console import human_seconds
    from rollout.engine.operations import history

    records = history(load(config), env=env, limit=limit)
    if as_json:
        print_json(history_json(records))
        return
    table = Table(title="deployments", title_justify="left")
    for column in ("#", "env", "kind", "tag", "from", "result", "took", "started (UTC)", "reason"):
        table.add_column(column)
    for r in records:
        took = "-" if r.duration is None else human_seconds(r.duration.total_seconds())
        table.add_row(
            str(r.id),
            r.env,
            r.kind,
            r.tag,
            r.previous_tag or "-",
            r.status,
            took,
            f"{r.started_at:%Y-%m-%d %H:%M:%S}",
            (r.reason or "")[:60],
        )
    console().print(table)
