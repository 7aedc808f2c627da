"""``rollout kpi``: DORA KPIs and SLOs, each beside its target and its DORA tier."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from rollout.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    kpi_scope,
    load,
    print_json,
)

if TYPE_CHECKING:
    from rollout.kpi import Figure, Report


def register(app: typer.Typer) -> None:
    app.command("kpi")(kpi_command)


def kpi_command(
    env: Annotated[
        str | None, typer.Option("--env", help="Environment (default: production).")
    ] = None,
    since: Annotated[str, typer.Option("--since", help="Window, back from now: 90d, 4w.")] = "90d",
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Deployment frequency, lead time, change failure rate, recovery time, SLOs.

    Example: rollout kpi --env production --since 30d
    """
    from rollout.kpi import for_runbook
    from rollout.model import utcnow
    from rollout.store import open_store

    runbook = load(config)
    name, window = kpi_scope(runbook, env, since)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        report = for_runbook(store.engine, runbook, name, window, utcnow())
    if as_json:
        print_json(report.to_json())
        return
    _print(report)


def _print(report: Report) -> None:
    from rich.table import Table

    table = Table("figure", "value", "target", "", "DORA 2023", "DORA 2024", title=_title(report))
    for f in report.figures:
        table.add_row(
            f.label,
            _value(f),
            f.target or "",
            {True: "[green]met[/]", False: "[red]missed[/]", None: ""}[f.met],
            f.tiers.get("2023") or "",
            f.tiers.get("2024") or "",
        )
    out = console()
    out.print(table)
    for f in report.figures:
        if f.note:
            out.print(f"[dim]{f.label}: {f.note}[/]")


def _title(report: Report) -> str:
    return f"KPIs of {report.env}, {report.since} to {report.until}"


def _value(figure: Figure) -> str:
    if figure.value is None:
        return "-"
    unit = figure.unit
    return f"{figure.value:.3g}{unit if unit.startswith(('/', '%')) else ' ' + unit}"
