"""The KPIs' inputs, read from the store by a few aggregate queries (see dora.py for meanings).

Each input is read where the store keeps it cheapest to read (benchmarks/kpi.py: 100 000
deployments and 1 000 000 samples, in well under a second on either backend):

- Production deployments of the window: a count over the (env, finished_at, kind, status)
  index, no table rows. Their deployment days: a loose index scan, one probe per day with a
  deployment (the first deployment from the midnight after the previous one's).
- Failed ones: listed from their causes (a rollback record, an incident, a hotfix after them:
  a few per hundred deployments), each looking its deployment up; each counted once. Hotfixes
  are read from the partial index of deployments whose tag or reason says so.
- Where the environment's records start: its first deployment of any kind, by the (env,
  started_at) index.
- Lead times: ``lead_times`` holds each change (a commit a deployment recorded in
  ``changes``) once with its lead times, kept right by triggers on every write (migrations
  0004, 0005); read through its (env, deployed_at) index.
- Probe requests, latencies and database query times: whole hours are summed in
  ``sample_hours`` (kept by triggers too), the partial hours at the window's ends counted in
  ``samples``.

Percentiles are interpolated (``percentile_cont``). PostgreSQL computes those of lead times and
incident times. SQLite has no percentile function, and its window functions cost more than the
values: there incident times are read and sorted here, and a lead time's percentile is read
from the index on it, walked to the rank. The latency and database query p95s are read that
way on both: two values, from the top of the (env, metric, value, at) index, given the count.
Timestamps become seconds by ``julianday`` on SQLite and ``date_part('epoch')`` on PostgreSQL.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    FromClause,
    Select,
    and_,
    case,
    distinct,
    func,
    literal,
    literal_column,
    or_,
    select,
    union_all,
)

from rollout.errors import StoreError
from rollout.kpi import dora
from rollout.kpi.slo import Requests
from rollout.model import DB_QUERY_METRIC
from rollout.store import schema

REACHED_PRODUCTION = ("succeeded", "rolled_back")
QUANTILES = (0.5, 0.9)
# Response times the runbook's levels give when rollout.yml leaves a level out (DESIGN.md).
DEFAULT_RESPOND_WITHIN = {1: 15 * 60.0, 2: 10 * 60.0, 3: 5 * 60.0}
PROBE = "http_error"  # one sample per probe request: 0 good, above 0 failed
LATENCY = "latency_seconds"
DB_QUERY = DB_QUERY_METRIC  # a timed SELECT 1 (rollout.monitor.sources.DatabaseSource)
HOUR = timedelta(hours=1)


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
    records_start: datetime | None  # the environment's first deployment of any kind, if any
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
    db_queries: int  # timed queries (samples with a value)
    db_query_p95: float | None
    db_query_failed: int  # the database did not answer (samples without a value)


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
    """Every KPI input for one environment and window, in about twenty small queries."""
    limits = {**DEFAULT_RESPOND_WITHIN, **(respond_within or {})}
    if conn.dialect.name == "postgresql":
        # Sorts of 100 000 lead times stay in memory; and no JIT compiling: it costs more
        # (some 50 ms a query) than these short queries take.
        conn.exec_driver_sql("SET LOCAL work_mem = '64MB'")
        conn.exec_driver_sql("SET LOCAL jit = off")
    levels, recovery = _incidents(conn, window, limits)
    return Facts(
        window=window,
        delivery=_delivery(conn, window),
        levels=levels,
        recovery=recovery,
        samples=_samples(conn, window),
    )


# --- timestamps -------------------------------------------------------------------------------


def _seconds(conn: Connection, column: Any) -> ColumnElement[float]:
    """Seconds since 1970 of a stored timestamp, in SQL."""
    if conn.dialect.name == "sqlite":  # stored as UTC text; julianday reads it
        return (func.julianday(column) - 2440587.5) * 86400.0
    return func.date_part("epoch", column)  # a float; extract() is a slower numeric


def _next_day(conn: Connection, column: Any) -> ColumnElement[Any]:
    """The UTC midnight after a stored timestamp, in SQL."""
    if conn.dialect.name == "sqlite":  # in the text form the times are stored in
        return func.strftime("%Y-%m-%d 00:00:00.000000", column, "+1 day")
    day = func.date_trunc("day", func.timezone("UTC", column))
    return func.timezone("UTC", day + literal_column("interval '1 day'"))


def _hours(since: datetime, until: datetime) -> tuple[datetime, datetime]:
    """The first and the last UTC hour boundary inside [since, until]."""
    since, until = since.astimezone(UTC), until.astimezone(UTC)
    first = since.replace(minute=0, second=0, microsecond=0)
    if first < since:
        first += HOUR
    return first, until.replace(minute=0, second=0, microsecond=0)


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


def _spread(values: Sequence[float]) -> Spread:
    return Spread(len(values), *(_ms(dora.percentile(values, q)) for q in QUANTILES))


def _ms(seconds: Any) -> float | None:
    """Seconds to the millisecond: timestamps as numbers carry float noise below that."""
    return None if seconds is None else round(float(seconds), 3)


def _quantile(
    conn: Connection, value: Any, where: Sequence[ColumnElement[bool]], n: int, q: float
) -> float | None:
    """The interpolated q-quantile of the ``n`` values of ``value`` where ``where`` holds.

    Only the two values around rank q(n - 1) are read, in the order of an index on
    ``value``, from its nearer end: a p95 walks the top 5 % of the index, no sort.
    """
    if n <= 0:
        return None
    low = math.floor(q * (n - 1))
    high = min(low + 1, n - 1)
    query = select(value).where(*where).limit(high - low + 1)
    if low <= n - 1 - high:
        found = list(conn.execute(query.order_by(value).offset(low)).scalars())
    else:
        found = list(conn.execute(query.order_by(value.desc()).offset(n - 1 - high)).scalars())
        found.reverse()
    if len(found) != high - low + 1:  # a derived count disagrees with the rows
        raise StoreError(
            f"{n} values were counted for a percentile but only {low + len(found)} found",
            hint="lead_times and sample_hours are kept by triggers (migration 0004): "
            "were they dropped, or a table rebuilt without them?",
        )
    return dora.interpolate(list(enumerate(map(float, found), start=low)), n, q)


# --- deployments and changes ------------------------------------------------------------------


def _production(
    table: FromClause, window: Window, *, in_window: bool = True
) -> list[ColumnElement[bool]]:
    t = table.c
    where = [t.env == window.env, t.kind == "deploy", t.status.in_(REACHED_PRODUCTION)]
    if in_window:
        where += [t.finished_at >= window.since, t.finished_at < window.until]
    return where


def _delivery(conn: Connection, window: Window) -> Delivery:
    d = schema.deployments
    deployments, rolled_back = conn.execute(
        select(func.count(), func.count().filter(d.c.status == "rolled_back")).where(
            *_production(d, window)
        )
    ).one()
    also_failed, also_rolled_back, with_incident, hotfixed = _named_by_causes(conn, window)
    changes, lead_commit, lead_merge, skipped = _lead_times(conn, window)
    first = select(func.min(d.c.started_at)).where(d.c.env == window.env)
    return Delivery(
        deployments=int(deployments),
        failed=int(rolled_back) + also_failed,
        rolled_back=int(rolled_back) + also_rolled_back,
        with_incident=with_incident,
        hotfixed=hotfixed,
        deployment_days=_deployment_days(conn, window),
        records_start=conn.execute(first).scalar(),
        changes=changes,
        lead_from_commit=lead_commit,
        lead_from_merge=lead_merge,
        lead_skipped=skipped,
    )


def _named_by_causes(conn: Connection, window: Window) -> tuple[int, int, int, int]:
    """Production deployments of the window that a cause names, each counted once: those
    that did not roll back by themselves (status ``rolled_back``, counted apart), and of
    those the ones a rollback record undid; those with an incident; those a hotfix replaced.

    The causes are few (a few per hundred deployments), so they are listed first and each
    looks its deployment up by id, in a correlated subquery: as a join, PostgreSQL's planner
    would rather hash every production deployment of the window, a pass over the table
    that costs more than the lookups.
    """
    d, i = schema.deployments, schema.incidents
    causes = union_all(
        select(d.c.rollback_of.label("id"), literal("rollback").label("cause")).where(
            d.c.rollback_of.is_not(None)
        ),
        select(i.c.deployment_id, literal("incident")).where(i.c.deployment_id.is_not(None)),
        _hotfixed(conn, window),
    ).subquery("causes")
    status = (
        select(d.c.status).where(d.c.id == causes.c.id, *_production(d, window)).scalar_subquery()
    )
    # MATERIALIZED: each lookup once, though the status is read three times below.
    named = select(causes.c.id, causes.c.cause, status.label("status")).cte("named")
    named = named.prefix_with("MATERIALIZED")
    not_by_itself = named.c.status != "rolled_back"

    def distinct_ids(*when: ColumnElement[bool]) -> ColumnElement[int]:
        return func.count(distinct(case((and_(*when), named.c.id))))

    row = conn.execute(
        select(
            distinct_ids(not_by_itself),
            distinct_ids(not_by_itself, named.c.cause == "rollback"),
            distinct_ids(named.c.cause == "incident"),
            distinct_ids(named.c.cause == "hotfix"),
        ).where(named.c.status.is_not(None))  # a production deployment of the window
    ).one()
    failed, rolled_back, with_incident, hotfixed = (int(n) for n in row)
    return failed, rolled_back, with_incident, hotfixed


def _hotfixed(conn: Connection, window: Window) -> Select[Any]:
    """(id, "hotfix") of the deployments a hotfix replaced: for each production deploy whose
    tag or reason says "hotfix" (found through the partial index of those), the production
    deployment before it by start (deploys of an environment take its lock in turn)."""
    d = schema.deployments
    fix = d.alias("fix")
    before = (
        select(d.c.id)
        .where(*_production(d, window, in_window=False), d.c.started_at < fix.c.started_at)
        .order_by(d.c.started_at.desc(), d.c.id.desc())
        .limit(1)
        .correlate(fix)
        .scalar_subquery()
    )
    # Its finish is compared unindexed, so that SQLite's planner takes the partial index of
    # hotfixes, not every production deployment since the window's start.
    since = _unindexed_range(conn, fix.c.finished_at, window)[0]
    return select(before.label("id"), literal("hotfix").label("cause")).where(
        *_production(fix, window, in_window=False), schema.says_hotfix(fix), since
    )


def _deployment_days(conn: Connection, window: Window) -> tuple[int, ...]:
    """The UTC days (since 1970-01-01) with a production deployment in the window.

    A loose index scan: a recursive query whose every step finds, through the (env,
    finished_at, kind, status) index, the first deployment from the midnight after the
    previous one: one probe per day with a deployment, not a pass over the deployments.
    """
    d = schema.deployments

    def first(table: FromClause, since: Any) -> Select[Any]:
        at = table.c.finished_at
        where = [*_production(table, window, in_window=False), at >= since, at < window.until]
        return select(at).where(*where).order_by(at).limit(1)

    days = select(first(d, window.since).scalar_subquery().label("at"))
    days_cte = days.cte("days", recursive=True)
    later = first(d.alias("later"), _next_day(conn, days_cte.c.at)).scalar_subquery()
    days_cte = days_cte.union_all(select(later).where(days_cte.c.at.is_not(None)))
    found = conn.execute(select(days_cte.c.at).where(days_cte.c.at.is_not(None))).scalars()
    return tuple(int(at.timestamp() // dora.DAY) for at in found)


def _lead_times(conn: Connection, window: Window) -> tuple[int, Spread, Spread, int]:
    """Changes whose first production deployment is in the window, their lead times from
    commit and from merge, and how many had a clock that ran backwards (a negative span)."""
    lt = schema.lead_times
    commit, merge = lt.c.from_commit, lt.c.from_merge
    where = [lt.c.env == window.env, lt.c.deployed_at >= window.since]
    where.append(lt.c.deployed_at < window.until)
    if conn.dialect.name != "sqlite":
        kept = [commit >= 0, merge >= 0]
        quantiles = [
            func.percentile_cont(q).within_group(x).filter(ok)
            for x, ok in zip((commit, merge), kept, strict=True)
            for q in QUANTILES
        ]
        counts = [func.count().filter(ok) for ok in kept]
        changes, late, *found = conn.execute(
            select(func.count(), func.count().filter(or_(commit < 0, merge < 0)), *counts)
            .add_columns(*quantiles)
            .where(*where)
        ).one()
        commits, merges, *spans = found
        return (
            int(changes),
            Spread(int(commits), _ms(spans[0]), _ms(spans[1])),
            Spread(int(merges), _ms(spans[2]), _ms(spans[3])),
            int(late),
        )
    # SQLite: counts through the (env, deployed_at, ...) index, then each percentile from
    # the index on its lead time (no percentile function, and reading every lead time into
    # Python costs more than walking the index to the rank).
    late = or_(commit < 0, merge < 0)
    changes, skipped, commits, merges = conn.execute(
        select(
            func.count(),
            func.sum(case((late, 1), else_=0)),
            func.sum(case((commit >= 0, 1), else_=0)),
            func.sum(case((merge >= 0, 1), else_=0)),
        ).where(*where)
    ).one()

    def spread(x: Any, n: int) -> Spread:
        by_value = [
            lt.c.env == window.env,
            x >= 0,
            *_unindexed_range(conn, lt.c.deployed_at, window),
        ]
        return Spread(n, *(_ms(_quantile(conn, x, by_value, n, q)) for q in QUANTILES))

    return (
        int(changes),
        spread(commit, int(commits or 0)),
        spread(merge, int(merges or 0)),
        int(skipped or 0),
    )


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
    env, since, until = window.env, window.since, window.until
    counts = _counts(conn, env, since, until, (PROBE, LATENCY, DB_QUERY))
    s = schema.samples

    def p95(metric: str) -> float | None:
        where = [*_sampled(conn, env, since, until), s.c.metric == metric]
        return _quantile(conn, s.c.value, where, counts[metric][0], 0.95)

    failed = select(func.count()).where(
        s.c.env == env, s.c.metric == DB_QUERY, s.c.value.is_(None), s.c.at >= since, s.c.at < until
    )
    return Samples(
        window=Requests(*counts[PROBE]),
        last_1h=Requests(*_counts(conn, env, until - HOUR, until, (PROBE,))[PROBE]),
        last_6h=Requests(*_counts(conn, env, until - 6 * HOUR, until, (PROBE,))[PROBE]),
        latencies=counts[LATENCY][0],
        latency_p95=p95(LATENCY),
        db_queries=counts[DB_QUERY][0],
        db_query_p95=p95(DB_QUERY),
        db_query_failed=int(conn.execute(failed).scalar_one()),
    )


def _counts(
    conn: Connection, env: str, since: datetime, until: datetime, metrics: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Per metric, its samples in [since, until) with a value, and those above 0 (for probe
    requests: all, failed). Whole hours are summed in ``sample_hours``; the partial hours at
    either end (at most two hours of samples) are counted in ``samples``."""
    h, s = schema.sample_hours, schema.samples
    found = {metric: [0, 0] for metric in metrics}  # samples, above 0
    first, last = _hours(since, until)
    spans = [(since, until)]
    queries = []
    if first < last:
        spans = [(since, first), (last, until)]
        queries.append(
            select(h.c.metric, func.sum(h.c.samples), func.sum(h.c.above_zero))
            .where(h.c.env == env, h.c.metric.in_(metrics), h.c.hour >= first, h.c.hour < last)
            .group_by(h.c.metric)
        )
    above_zero = func.sum(case((s.c.value > 0, 1), else_=0))
    queries += [
        select(s.c.metric, func.count(s.c.value), above_zero)
        .where(s.c.env == env, s.c.metric.in_(metrics), s.c.at >= start, s.c.at < end)
        .group_by(s.c.metric)
        for start, end in spans
        if start < end
    ]
    for query in queries:
        for metric, samples, above in conn.execute(query):
            found[metric][0] += int(samples or 0)
            found[metric][1] += int(above or 0)
    return {metric: (samples, above) for metric, (samples, above) in found.items()}


def _sampled(
    conn: Connection, env: str, since: datetime, until: datetime
) -> list[ColumnElement[bool]]:
    """Samples with a value in [since, until), to be read in value order."""
    s = schema.samples
    span = Window(env, since, until)
    return [s.c.env == env, s.c.value.is_not(None), *_unindexed_range(conn, s.c.at, span)]


def _unindexed_range(conn: Connection, at: Any, window: Window) -> list[ColumnElement[bool]]:
    """``at`` in the window, for a query that reads in the order of a value index.

    On SQLite the time is compared through ``coalesce(at, at)``, which no index can serve:
    else its planner takes an index on the time for the range, then reads each row for its
    value and sorts them all, where the index on (env, [metric,] value, time) has it all, in
    value order. PostgreSQL's planner chooses by cost either way.
    """
    if conn.dialect.name == "sqlite":
        at = func.coalesce(at, at)
    return [at >= window.since, at < window.until]
