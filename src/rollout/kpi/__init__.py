"""DORA KPIs and SLOs from rollout's own records (``rollout kpi``).

``compute(engine, window, kpi_targets, respond_within)`` reads the inputs with a few aggregate
queries (queries.py) and builds the report (report.py); the definitions, the DORA tier tables
and what is done differently from Four Keys and DevLake are in dora.py, the SLO arithmetic in
slo.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rollout.config import KpiTargets, Runbook
from rollout.kpi.queries import Facts, Window, load
from rollout.kpi.report import Figure, Report, build

__all__ = ["Facts", "Figure", "Report", "Window", "compute", "for_runbook", "respond_within"]


def compute(
    engine: Engine,
    window: Window,
    targets: KpiTargets | None = None,
    respond_within: Mapping[int, float] | None = None,
) -> Report:
    """The KPI report for one environment and window, read in one transaction."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            # One snapshot for every query (SQLite's read transaction is one already): a
            # count and the values ranked by it must see the same rows.
            conn.execution_options(isolation_level="REPEATABLE READ")
        with conn.begin():
            facts = load(conn, window, respond_within)
    return build(facts, targets or KpiTargets())


def respond_within(runbook: Runbook) -> dict[int, float]:
    """Seconds each configured incident level allows before acknowledgement."""
    found = {}
    for number in (1, 2, 3):
        level = getattr(runbook.incidents, f"level{number}")
        if level is not None:
            found[number] = level.respond_within.total_seconds()
    return found


def for_runbook(
    engine: Engine, runbook: Runbook, env: str, since: timedelta, until: datetime
) -> Report:
    """``compute`` with the runbook's targets and response times, over ``since`` to ``until``."""
    window = Window(env=env, since=until - since, until=until)
    return compute(engine, window, runbook.kpi.targets, respond_within(runbook))
