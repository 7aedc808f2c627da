"""The KPIs' inputs, read from the store by a few aggregate queries (see dora.py for meanings).

Counts are aggregates (COUNT, SUM over CASE, IN lists built once) and never rows read into
Python. Percentiles are ``percentile_cont`` on PostgreSQL. SQLite has none, and its window
functions cost more than the values: there a percentile of lead times reads one number per
change (the only place rows leave the database), and the p95 of samples walks the covering
(env, metric, value, at) index to its rank. Timestamps become seconds by ``julianday`` on
SQLite and ``extract(epoch)`` on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Integer,
    Select,
    and_,
    case,
    cast,
    extract,
    func,
    literal,
    or_,
    select,
    union_all,
)

from rollout.kpi import dora
from rollout.kpi.slo import Requests
from rollout.store import schema

REACHED_PRODUCTION = ("succeeded", "rolled_back")
QUANTILES = (0.5, 0.9)
# Response times the runbook's levels give when rollout.yml leaves a level out (DESIGN.md).
DEFAULT_RESPOND_WITHIN = {1: 15 * 60.0, 2: 10 * 60.0, 3: 5 * 60.0}


@dataclass(frozen=True)
class Window:
    env: str
    since: datetime
    until: datetime

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()


@dataclass(frozen=True)
class Spread:
    """How many values, their interpolated median and p90 (seconds)."""

    count: int = 0
    p50: float | None = None
    p90: float | None = None


@dataclass(frozen=True)
class Delivery:
    deployments: int
    failed: int  # at least one of the causes below, counted once
    rolled_back: int
    with_incident: int
    hotfixed: int
    deployment_days: tuple[int, ...]  # day numbers (UTC days since 1970-01-01)
    changes: int
    lead_from_commit: Spread
    lead_from_merge: Spread
    lead_skipped: int  # changes with a clock that ran backwards (deployed before committed)


@dataclass(frozen=True)
class Level:
    level: int
    incidents: int
    from_deployments: int
    respond_within: float
    acknowledged: int
    acknowledged_in_time: int
    to_acknowledge: Spread
    recovery: Spread


@dataclass(frozen=True)
class Samples:
    window: Requests
    last_1h: Requests
    last_6h: Requests
    latencies: int
    latency_p95: float | None


@dataclass(frozen=True)
class Facts:
    window: Window
    delivery: Delivery
    levels: tuple[Level, ...]
    recovery: Spread  # every level together
    samples: Samples


def load(
    conn: Connection, window: Window, respond_within: Mapping[int, float] | None = None
) -> Facts:
    """Every KPI input for one environment and window, in about ten aggregate queries."""
    limits = {**DEFAULT_RESPOND_WITHIN, **(respond_within or {})}
    if conn.dialect.name == "postgresql":  # sorts of 100 000 changes stay in memory
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
    levels, recovery = _incidents(conn, window, limits)
    return Facts(
        window=window,
        delivery=_delivery(conn, window),
        levels=levels,
        recovery=recovery,
        samples=_samples(conn, window),
    )


# --- timestamps as numbers ---------------------------------------------------------------------


def _seconds(conn: Connection, column: Any) -> ColumnElement[float]:
    """Seconds since 1970 of a stored timestamp, in SQL."""
    if conn.dialect.name == "sqlite":  # stored as UTC text; julianday reads it
        return (func.julianday(column) - 2440587.5) * 86400.0
    return cast(extract("epoch", column), Float)


def _day(conn: Connection, column: Any) -> ColumnElement[int]:
    days = _seconds(conn, column) / 86400.0
    if conn.dialect.name == "sqlite":  # CAST truncates, which is floor for times after 1970
        return cast(days, Integer)
    return cast(func.floor(days), Integer)


# --- percentiles ------------------------------------------------------------------------------


def _spreads(conn: Connection, values: Select[Any]) -> dict[tuple[Any, ...], Spread]:
    """Median and p90 of column ``x`` per group of the other columns of ``values``.

    PostgreSQL computes them (``percentile_cont``, one aggregate per group). SQLite has no
    percentile function, and its window functions (ROW_NUMBER over the sorted values) cost
    more than the values themselves: there the one column of values is read and sorted here.
    """
    sub = values.subquery()
    keys = [c for c in sub.c if c.name != "x"]
    if conn.dialect.name != "sqlite":
        quantiles = [func.percentile_cont(q).within_group(sub.c.x) for q in QUANTILES]
        rows = conn.execute(select(*keys, func.count(sub.c.x), *quantiles).group_by(*keys))
        return {
            tuple(row[: len(keys)]): Spread(int(row[len(keys)]), *map(_ms, row[len(keys) + 1 :]))
            for row in rows
        }
    found: dict[tuple[Any, ...], list[float]] = {}
    for row in conn.execute(select(sub)):
        found.setdefault(tuple(row[:-1]), []).append(float(row[-1]))
    return {key: _spread(xs) for key, xs in found.items()}


def _ms(seconds: Any) -> float | None:
    """Seconds to the millisecond: timestamps as numbers carry float noise below that."""
    return None if seconds is None else round(float(seconds), 3)


# --- deployments and changes ------------------------------------------------------------------


def _production(window: Window, *, in_window: bool = True) -> list[ColumnElement[bool]]:
    d = schema.deployments
    where = [d.c.env == window.env, d.c.kind == "deploy", d.c.status.in_(REACHED_PRODUCTION)]
    if in_window:
        where += [d.c.finished_at >= window.since, d.c.finished_at < window.until]
    return where


def _delivery(conn: Connection, window: Window) -> Delivery:
    d = schema.deployments
    prod = select(d.c.id, d.c.status).where(*_production(window)).subquery()
    undone = select(d.c.rollback_of).where(d.c.rollback_of.is_not(None))
    linked = select(schema.incidents.c.deployment_id).where(
        schema.incidents.c.deployment_id.is_not(None)
    )
    rolled = or_(prod.c.status == "rolled_back", prod.c.id.in_(undone))
    incident = prod.c.id.in_(linked)
    # Named once (MATERIALIZED): the list is used twice and costs a scan of the deployments.
    replaced = _hotfixed(window).cte("hotfixed").prefix_with("MATERIALIZED")
    hotfix = prod.c.id.in_(select(replaced.c[0]))
    row = conn.execute(
        select(
            func.count(),
            func.sum(case((rolled, 1), else_=0)),
            func.sum(case((incident, 1), else_=0)),
            func.sum(case((hotfix, 1), else_=0)),
            func.sum(case((or_(rolled, incident, hotfix), 1), else_=0)),
        )
    ).one()
    days = select(_day(conn, d.c.finished_at).label("day")).where(*_production(window)).distinct()
    changes, lead_commit, lead_merge, skipped = _lead_times(conn, window)
    return Delivery(
        deployments=int(row[0]),
        rolled_back=int(row[1] or 0),
        with_incident=int(row[2] or 0),
        hotfixed=int(row[3] or 0),
        failed=int(row[4] or 0),
        deployment_days=tuple(sorted(int(r.day) for r in conn.execute(days))),
        changes=changes,
        lead_from_commit=lead_commit,
        lead_from_merge=lead_merge,
        lead_skipped=skipped,
    )


def _hotfixed(window: Window) -> Select[Any]:
    """The production deployments that a hotfix replaced: for each deploy whose tag or reason
    says "hotfix", the production deployment before it (by start: deploys of an environment
    take its lock in turn), found through the (env, started_at) index."""
    d = schema.deployments
    fix = d.alias("fix")
    says_hotfix = or_(
        func.lower(fix.c.tag).contains("hotfix"),
        func.lower(func.coalesce(fix.c.reason, "")).contains("hotfix"),
    )
    before = (
        select(d.c.id)
        .where(*_production(window, in_window=False), d.c.started_at < fix.c.started_at)
        .order_by(d.c.started_at.desc(), d.c.id.desc())
        .limit(1)
        .correlate(fix)
        .scalar_subquery()
    )
    reached = [fix.c.env == window.env, fix.c.kind == "deploy"]
    reached.append(fix.c.status.in_(REACHED_PRODUCTION))
    return select(before.label("id")).where(
        *reached, says_hotfix, fix.c.finished_at >= window.since
    )


def _lead_times(conn: Connection, window: Window) -> tuple[int, Spread, Spread, int]:
    d = schema.deployments
    # Each change (commit) once, at the first production deployment that shipped it, ever;
    # counted in the window where that first deployment finished.
    first = (
        select(
            func.min(d.c.finished_at).label("deployed"),
            func.min(d.c.committed_at).label("committed"),
            func.min(d.c.merged_at).label("merged"),
        )
        .where(*_production(window, in_window=False), d.c.commit_sha.is_not(None))
        .group_by(d.c.commit_sha)
        .having(
            and_(
                func.min(d.c.finished_at) >= window.since, func.min(d.c.finished_at) < window.until
            )
        )
        .subquery()
    )
    start = case(
        (and_(first.c.merged.is_not(None), first.c.merged < first.c.committed), first.c.merged),
        else_=first.c.committed,
    )
    deployed = _seconds(conn, first.c.deployed)
    from_commit = deployed - _seconds(conn, start)
    from_merge = deployed - _seconds(conn, first.c.merged)
    if conn.dialect.name == "sqlite":  # no percentile_cont: one row per change, sorted here
        rows = conn.execute(select(from_commit, from_merge)).all()
        commits = [c for c, _ in rows if c is not None and c >= 0]
        merges = [m for _, m in rows if m is not None and m >= 0]
        late = sum(1 for c, m in rows if (c is not None and c < 0) or (m is not None and m < 0))
        return len(rows), _spread(commits), _spread(merges), late

    # Each span computed once per change (the aggregates below read it six times).
    spans = select(from_commit.label("c"), from_merge.label("m")).cte("spans")
    spans = spans.prefix_with("MATERIALIZED")

    def spread(x: ColumnElement[float]) -> list[ColumnElement[Any]]:
        kept = x >= 0
        quantiles = [func.percentile_cont(q).within_group(x).filter(kept) for q in QUANTILES]
        return [func.count(x).filter(kept), *quantiles]

    row = conn.execute(
        select(
            func.count(),
            func.count().filter(or_(spans.c.c < 0, spans.c.m < 0)),
            *spread(spans.c.c),
            *spread(spans.c.m),
        )
    ).one()
    return (
        int(row[0]),
        Spread(int(row[2]), _ms(row[3]), _ms(row[4])),
        Spread(int(row[5]), _ms(row[6]), _ms(row[7])),
        int(row[1]),
    )


def _spread(values: Sequence[float]) -> Spread:
    return Spread(len(values), *(_ms(dora.percentile(values, q)) for q in QUANTILES))


# --- incidents --------------------------------------------------------------------------------


def _incidents(
    conn: Connection, window: Window, limits: Mapping[int, float]
) -> tuple[tuple[Level, ...], Spread]:
    i = schema.incidents
    in_window = [i.c.env == window.env, i.c.detected_at >= window.since]
    in_window.append(i.c.detected_at < window.until)
    took_to_ack = _seconds(conn, i.c.acknowledged_at) - _seconds(conn, i.c.detected_at)
    limit = case(*((i.c.level == lv, s) for lv, s in sorted(limits.items())), else_=None)
    counts = conn.execute(
        select(
            i.c.level,
            func.count(),
            func.count(i.c.deployment_id),
            func.count(i.c.acknowledged_at),
            func.sum(case((took_to_ack <= limit, 1), else_=0)),
        )
        .where(*in_window)
        .group_by(i.c.level)
    ).all()
    end = func.coalesce(i.c.mitigated_at, i.c.resolved_at)
    recovered = _seconds(conn, end) - _seconds(
        conn, func.coalesce(i.c.impact_start, i.c.detected_at)
    )
    from_deploys = [*in_window, i.c.deployment_id.is_not(None), end.is_not(None)]
    values = union_all(
        select(
            literal("recovery").label("what"), i.c.level.label("level"), recovered.label("x")
        ).where(*from_deploys),
        select(
            literal("recovery").label("what"), literal(0).label("level"), recovered.label("x")
        ).where(*from_deploys),
        select(
            literal("ack").label("what"), i.c.level.label("level"), took_to_ack.label("x")
        ).where(*in_window, i.c.acknowledged_at.is_not(None)),
    )
    spreads = _spreads(conn, select(values.subquery()))
    levels = tuple(
        Level(
            level=int(level),
            incidents=int(total),
            from_deployments=int(linked),
            respond_within=limits.get(int(level), 0.0),
            acknowledged=int(acked),
            acknowledged_in_time=int(in_time or 0),
            to_acknowledge=spreads.get(("ack", level), Spread()),
            recovery=spreads.get(("recovery", level), Spread()),
        )
        for level, total, linked, acked, in_time in sorted(counts)
    )
    return levels, spreads.get(("recovery", 0), Spread())


# --- samples ----------------------------------------------------------------------------------


def _samples(conn: Connection, window: Window) -> Samples:
    latencies, p95 = _p95(conn, window)
    return Samples(
        window=_requests(conn, window),
        last_1h=_recent(conn, window, hours=1),
        last_6h=_recent(conn, window, hours=6),
        latencies=latencies,
        latency_p95=p95,
    )


def _requests(conn: Connection, window: Window) -> Requests:
    """Probe requests in the window and the failed ones: two counts over the value index (the
    failed ones are its short tail), cheaper than one pass testing every value."""
    s = schema.samples
    where = _sampled(conn, window, "http_error")
    total = conn.execute(select(func.count()).where(*where)).scalar_one()
    bad = conn.execute(select(func.count()).where(*where, s.c.value > 0)).scalar_one()
    return Requests(int(total), int(bad))


def _recent(conn: Connection, window: Window, *, hours: int) -> Requests:
    """Probe requests in the window's last hours (a short range of the (env, metric, at) index)."""
    s = schema.samples
    where = [s.c.env == window.env, s.c.metric == "http_error", s.c.value.is_not(None)]
    where += [s.c.at >= window.until - timedelta(hours=hours), s.c.at < window.until]
    total, bad = conn.execute(
        select(func.count(), func.sum(case((s.c.value > 0, 1), else_=0))).where(*where)
    ).one()
    return Requests(int(total), int(bad or 0))


def _sampled(conn: Connection, window: Window, metric: str) -> Sequence[ColumnElement[bool]]:
    """The samples of one metric in the window.

    The time range is compared through ``coalesce(at, at)``, which no index can serve: else
    SQLite's planner takes (env, metric, at) for the range and reads half a million table rows
    for their values (and sorts them for a p95), where (env, metric, value, at) has it all,
    in value order. PostgreSQL's planner chooses by cost either way.
    """
    s = schema.samples
    at = func.coalesce(s.c.at, s.c.at) if conn.dialect.name == "sqlite" else s.c.at
    return (
        s.c.env == window.env,
        s.c.metric == metric,
        s.c.value.is_not(None),
        at >= window.since,
        at < window.until,
    )


def _p95(conn: Connection, window: Window) -> tuple[int, float | None]:
    """The count and interpolated p95 of latency_seconds: ``percentile_cont`` on PostgreSQL;
    on SQLite a count, then the two ranks around the p95 in value order (the index on (env,
    metric, value, at) serves both without a sort)."""
    s = schema.samples
    where = _sampled(conn, window, "latency_seconds")
    if conn.dialect.name != "sqlite":
        p95 = func.percentile_cont(0.95).within_group(s.c.value)
        count, value = conn.execute(select(func.count(), p95).where(*where)).one()
        return int(count), _ms(value)
    n = int(conn.execute(select(func.count()).where(*where)).scalar_one())
    if n == 0:
        return 0, None
    low = int(0.95 * (n - 1))
    query = select(s.c.value).where(*where).order_by(s.c.value).offset(low).limit(2)
    values = [float(v) for v in conn.execute(query).scalars()]
    return n, dora.interpolate(list(enumerate(values, start=low)), n, 0.95)
