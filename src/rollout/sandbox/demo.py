"""``rollout demo``: v1 and v2 through the whole runbook, a database rollback, a bad v3 stopped."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rollout.cli.console import ConsoleSink, human_seconds, outcome_text
from rollout.config import Runbook, load_runbook
from rollout.engine.operations import Options, Report, declare_incident, deploy, rollback
from rollout.engine.targets import open_targets
from rollout.model import Outcome
from rollout.runtimes import make_runtime
from rollout.sandbox.build import build_artifacts, demo_releases, write_runbook
from rollout.sandbox.history import build_repo

# (environment, release, how it must end), in the order a careful team ships: staging first.
# Customers add vehicles on v1. v2 ships (its backup phase backs production's database up and
# verifies it at L3), then damages the data: the database rollback restores the pre-v2 data
# and runs v1 again, keeping the damaged database aside. v3 answers HTTP 500: verification
# catches it on staging, which rolls it back; production then refuses it at pre-flight,
# because staging does not run it (the runbook's staging validation).
DB_ROLLBACK = "v1 + database"
SCRIPT = [
    ("staging", "v1", Outcome.SUCCEEDED),
    ("production", "v1", Outcome.SUCCEEDED),
    ("staging", "v2", Outcome.SUCCEEDED),
    ("production", "v2", Outcome.SUCCEEDED),
    ("production", DB_ROLLBACK, Outcome.SUCCEEDED),
    ("staging", "v3", Outcome.ROLLED_BACK),
    ("production", "v3", Outcome.FAILED),
]
CUSTOMERS = [("Volvo", "240", 1990), ("Saab", "900", 1991), ("Scania", "R500", 2014)]


def run_demo(directory: Path | None, *, keep_running: bool, console: Console) -> bool:
    """Run the demo; True when every deployment ended as the story says it should."""
    root = Path(tempfile.mkdtemp(prefix="rollout-demo-")) if directory is None else directory
    root.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    releases = {r.name: r for r in demo_releases()}
    console.print(f"[bold]rollout demo[/] in {root}", highlight=False)
    config = write_runbook(root)
    build_artifacts(root, list(releases.values()))
    # The releases' commits, so each deployment records the changes it ships (lead times).
    repo = build_repo(root, list(releases.values()), datetime.now(UTC))
    options = Options(repo=repo) if repo is not None else None
    runbook = load_runbook(config)
    production_db = root / "data" / "production.db"
    results: list[tuple[str, str, Report]] = []
    sinks = [ConsoleSink(console, runbook.redactor)]
    try:
        for env, name, _ in SCRIPT:
            console.rule(f"{name} → {env}")
            if name == DB_ROLLBACK:
                damaged = _damage(production_db, console)
                # Customers notice before any monitor: a person declares the incident, and
                # the rollback that follows mitigates it (recovery time, post-mortem).
                incident = asyncio.run(
                    declare_incident(
                        runbook,
                        env,
                        level=2,
                        title="customers report damaged vehicles after v2",
                        since=datetime.now(UTC) - damaged,
                        actor="support",
                    )
                )
                console.print(f"incident #{incident} declared (level 2)", highlight=False)
                report = asyncio.run(
                    rollback(
                        runbook, env, database=True, reason="v2 damaged the vehicles", sinks=sinks
                    )
                )
                console.print(f"vehicles now: {_vehicles(production_db)}", highlight=False)
            else:
                report = asyncio.run(
                    deploy(runbook, env, releases[name].tag, sinks=sinks, options=options)
                )
                if (env, name) == ("production", "v1"):
                    _customers_write(production_db, console)
            results.append((env, name, report))
    finally:
        if not keep_running:
            asyncio.run(stop_apps(runbook))
    ok = len(results) == len(SCRIPT) and all(
        report.outcome is expected
        for (_, _, report), (_, _, expected) in zip(results, SCRIPT, strict=True)
    )
    _summary(console, results, root, config, time.monotonic() - started, keep_running)
    return ok


def _customers_write(database: Path, console: Console) -> None:
    with sqlite3.connect(database) as conn:
        conn.executemany(
            "INSERT INTO vehicles (make, model, year, created_at) VALUES (?, ?, ?, datetime('now'))",
            CUSTOMERS,
        )
    console.print(f"customers added vehicles: {_vehicles(database)}", highlight=False)


def _damage(database: Path, console: Console) -> datetime:
    """v2's bug at work; when it struck."""
    struck = datetime.now(UTC)
    with sqlite3.connect(database) as conn:
        conn.execute("DELETE FROM vehicles WHERE make <> 'Volvo'")
        conn.execute("UPDATE vehicles SET model = '???', year = 0")
    console.print(
        f"[red]v2 damaged the data[/]: vehicles now: {_vehicles(database)}", highlight=False
    )
    return struck


def _vehicles(database: Path) -> str:
    with sqlite3.connect(database) as conn:
        rows = conn.execute("SELECT make, model, year FROM vehicles ORDER BY id").fetchall()
    return ", ".join(f"{make} {model} ({year})" for make, model, year in rows) or "none"


async def stop_apps(runbook: Runbook) -> None:
    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    for env_name in runbook.environments:
        targets = open_targets(runbook, env_name)
        stop = getattr(runtime, "stop", None)
        if stop is not None:
            await asyncio.gather(*(stop(t, "-") for t in targets.values()))


def _summary(
    console: Console,
    results: list[tuple[str, str, Report]],
    root: Path,
    config: Path,
    seconds: float,
    keep_running: bool,
) -> None:
    table = Table(title="demo deployments", title_justify="left")
    for column in ("#", "release", "tag", "environment", "result", "duration"):
        table.add_column(column)
    for env, name, report in results:
        result = report.result
        assert result is not None
        table.add_row(
            str(report.deployment_id),
            name,
            report.plan.tag,
            env,
            outcome_text(result.outcome),
            human_seconds(result.seconds),
        )
    console.rule("summary")
    console.print(table)
    console.print(f"demo finished in {human_seconds(seconds)}", highlight=False)
    console.print(
        f"records: {root / '.rollout' / 'rollout.db'} (event logs in {root / '.rollout' / 'events'})",
        highlight=False,
    )
    console.print("try next:", highlight=False)
    rollout = _how_invoked()
    for command in (
        f"{rollout} history --config {config}",
        f"{rollout} status production --config {config}",
        f"{rollout} deploy production {results[0][2].plan.tag} --dry-run --config {config}",
        f"{rollout} audit verify --config {config}",
        f"{rollout} kpi --config {config}",
        f"{rollout} report --kpi --out {root / 'kpi.html'} --config {config}",
        f"{rollout} followups production --config {config}",
        f"{rollout} web --config {config}   (the dashboard, at http://127.0.0.1:8000/)",
    ):
        console.print(f"  {command}", highlight=False, markup=False)
    if not keep_running:
        console.print(
            "(the demo apps were stopped; pass --keep-running to keep them up)", highlight=False
        )


def _how_invoked() -> str:
    """The command as the user can type it: `.venv/bin/rollout` when make ran it from the venv."""
    argv0 = Path(sys.argv[0])
    if argv0.name == "rollout" and argv0.parent != Path():
        return str(argv0)
    return "rollout"
