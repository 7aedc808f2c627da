"""The KPIs week by week: one ``rollout.kpi.compute`` per week of the window.

Each week's figures come from the same public KPI computation as ``rollout kpi``, so a week's
change failure rate or recovery time means exactly what the KPI table means (each deployment
counted once, incidents by their impact start, percentiles interpolated) with no second
definition in SQL to drift from it. It costs one KPI computation per week: 13 for 90 days,
each a handful of aggregate queries over indexed ranges.

Weeks are counted back from the window's end, 7 days each; the oldest one is cut at the
window's start when the window is not a whole number of weeks, and says so by its length.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rollout.config import KpiTargets
from rollout.kpi import Report, Window, compute

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Week:
    since: datetime
    until: datetime
    report: Report

    @property
    def days(self) -> float:
        return (self.until - self.since).total_seconds() / 86400

    def value(self, key: str) -> float | None:
        """A figure's value this week; None when there was nothing to measure."""
        found = [f for f in self.report.figures if f.key == key]
        return found[0].value if found else None


def weeks(window: Window) -> list[tuple[datetime, datetime]]:
    """The window's weeks, oldest first, back from its end."""
    spans = []
    until = window.until
    while until > window.since:
        since = max(until - WEEK, window.since)
        spans.append((since, until))
        until = since
    return spans[::-1]


def weekly(
    engine: Engine,
    window: Window,
    targets: KpiTargets | None = None,
    respond_within: Mapping[int, float] | None = None,
) -> list[Week]:
    return [
        Week(
            since, until, compute(engine, Window(window.env, since, until), targets, respond_within)
        )
        for since, until in weeks(window)
    ]
