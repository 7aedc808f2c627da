"""The KPI page: every figure beside its target and DORA tiers, and its trend week by week."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from rollout.config import KpiTargets, Runbook
from rollout.kpi import Report, Window, compute, respond_within
from rollout.kpi.dora import frequency_target
from rollout.report import charts, html
from rollout.report.charts import Chart, ChartKind, Series
from rollout.report.formats import figure_value, verdict
from rollout.report.trend import Week, weekly


@dataclass(frozen=True)
class Trend:
    key: str
    title: str
    unit: str
    kind: ChartKind
    figures: tuple[tuple[str, str], ...]  # (figure key, series label)
    caption: str


TRENDS = (
    Trend("deployments", "deployments per week", "/week", "bar",
          (("deployment_frequency", "deployments"),),
          "production deployments in each week (a shorter first week is counted per 7 days)"),
    Trend("lead_time", "lead time for changes, median", "min", "line",
          (("lead_time_commit", "commit to production"), ("lead_time_merge", "merge to production")),
          "median minutes from commit (and from merge) to production of the week's changes"),
    Trend("change_failure_rate", "change failure rate", "%", "line",
          (("change_failure_rate", "change failure rate"), ("rollback_rate", "rollback rate")),
          "share of the week's deployments rolled back, hotfixed or with an incident"),
    Trend("recovery_time", "failed deployment recovery time, median", "min", "line",
          (("recovery_time", "impact start to mitigated"),),
          "median minutes to mitigate the week's incidents from deployments"),
    Trend("availability", "availability", "%", "line",
          (("availability", "good probe requests"),),
          "share of the week's probe requests answered well"),
    Trend("error_budget", "error budget left", "%", "line",
          (("error_budget_left", "budget left"),),
          "the week's error budget under the availability target (below 0: spent)"),
    Trend("response_time_p95", "response time p95", "s", "line",
          (("response_time_p95", "p95"),),
          "95th percentile of the week's probe latencies"),
    Trend("error_rate", "error rate", "%", "line",
          (("error_rate", "errors"),),
          "share of the week's probe requests that failed"),
    Trend("db_query_time", "database query time p95", "ms", "line",
          (("db_query_time", "p95"),),
          "95th percentile of the week's timed queries on the app's database"),
)  # fmt: skip


@dataclass(frozen=True)
class KpiPage:
    app: str
    report: Report  # the whole window
    weeks: tuple[Week, ...]
    charts: tuple[Chart, ...]

    @property
    def title(self) -> str:
        return f"KPIs of {self.app} / {self.report.env}"

    @property
    def span(self) -> str:
        window = self.report.facts.window
        return f"{window.since:%Y-%m-%d %H:%M} to {window.until:%Y-%m-%d %H:%M} UTC"


def build(engine: Engine, runbook: Runbook, env: str, since: timedelta, until: datetime) -> KpiPage:
    """The window's report and its weekly trend, read through the public KPI API."""
    window = Window(env=env, since=until - since, until=until)
    targets = runbook.kpi.targets
    limits = respond_within(runbook)
    report = compute(engine, window, targets, limits)
    weeks = tuple(weekly(engine, window, targets, limits))
    return KpiPage(runbook.app, report, weeks, trend_charts(weeks, targets))


def trend_charts(weeks: Sequence[Week], targets: KpiTargets) -> tuple[Chart, ...]:
    goals = _targets(targets)
    between = (weeks[0].since, weeks[-1].until) if weeks else None
    middles = [w.since + (w.until - w.since) / 2 for w in weeks]
    found = []
    for t in TRENDS:
        series = tuple(
            Series(label, middles, [w.value(key) for w in weeks]) for key, label in t.figures
        )
        chart = Chart(t.key, t.title, t.unit, series, t.kind, goals.get(t.key), between=between)
        found.append(chart)
    return tuple(found)


def _targets(targets: KpiTargets) -> dict[str, float]:
    return {
        "deployments": frequency_target(targets.deployment_frequency),
        "lead_time": targets.lead_time.total_seconds() / 60,
        "change_failure_rate": targets.change_failure_rate,
        "recovery_time": targets.recovery_time.total_seconds() / 60,
        "availability": targets.availability,
        "error_budget": 0.0,
        "response_time_p95": targets.response_time_p95.total_seconds(),
        "error_rate": targets.error_rate,
        "db_query_time": targets.db_query_time.total_seconds() * 1000,
    }


def render(page: KpiPage) -> str:
    r = page.report
    captions = {t.key: t.caption for t in TRENDS}
    figures = "".join(html.figure(charts.svg(c), captions.get(c.key, c.title)) for c in page.charts)
    return html.page(
        page.title,
        f"{page.span}, {len(page.weeks)} weeks",
        [
            html.section("Figures", _figure_table(r)),
            html.section(
                "Trend per week",
                html.Safe(f'<div class="charts">\n{figures}</div>\n'),
                _weekly_table(page.weeks),
            ),
        ],
    )


def _figure_table(report: Report) -> html.Safe:
    rows = [
        (
            f.label,
            figure_value(f),
            f.target or "",
            html.span(verdict(f.met), verdict(f.met)),
            f.tiers.get("2023") or "",
            f.tiers.get("2024") or "",
            f.note,
        )
        for f in report.figures
    ]
    headers = ("figure", "value", "target", "", "DORA 2023", "DORA 2024", "how")
    return html.table(headers, rows, numeric={1})


_WEEK_COLUMNS = (
    ("deployment_frequency", "deployments /week"),
    ("lead_time_commit", "lead time min"),
    ("change_failure_rate", "CFR %"),
    ("recovery_time", "recovery min"),
    ("availability", "availability %"),
    ("response_time_p95", "p95 s"),
    ("error_rate", "error rate %"),
)


def _weekly_table(weeks: Sequence[Week]) -> html.Safe:
    rows = [
        [f"{w.since:%Y-%m-%d} to {w.until:%Y-%m-%d}"]
        + [_number(w.value(key)) for key, _ in _WEEK_COLUMNS]
        for w in weeks
    ]
    headers = ("week", *(label for _, label in _WEEK_COLUMNS))
    table = html.table(headers, rows, numeric=set(range(1, len(headers))))
    return html.Safe(
        f"<details>\n<summary>the numbers behind the charts</summary>\n{table}</details>\n"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def write_png(page: KpiPage, path: Path) -> None:
    charts.png(page.charts, path, f"{page.title}: {page.span}")
