"""KPI snapshot: the DORA and SLO report of the environment, kept with the follow-up, so how
the deployment's week looked stays on the record when later weeks have moved the figures."""

from __future__ import annotations

from datetime import datetime, timedelta

from rollout.config import Runbook
from rollout.followups.finding import Finding
from rollout.kpi import for_runbook
from rollout.store import Store

SPAN = timedelta(weeks=4)  # DORA's figures are per week: four whole weeks up to the snapshot


def snapshot(runbook: Runbook, store: Store, env: str, until: datetime) -> Finding:
    report = for_runbook(store.engine, runbook, env, SPAN, until)
    missed = [f.label for f in report.figures if f.met is False]
    judged = [f for f in report.figures if f.met is not None]
    summary = f"{len(judged) - len(missed)} of {len(judged)} targets met over {SPAN.days} days" + (
        f"; missed: {', '.join(missed)}" if missed else ""
    )
    return Finding("missed" if missed else "ok", summary, {"report": report.to_json()})
