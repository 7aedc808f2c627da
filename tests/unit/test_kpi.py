"""`rollout.kpi` over hand-made histories, each expected figure worked out by hand below.

The history (production, two weeks from Monday 2026-11-02 00:00 UTC; day N is that date + N):

  #   day finished  commit  committed  merged   status       what follows
  D1  0   10:10     a       08:10      09:40    succeeded    incidents I1 (level 3), I2 (level 2)
  D2  1   12:00     b       11:00      11:30    rolled_back  (rolled back by itself)
  D3  1   15:00     c       14:00      14:00    succeeded    R1: `rollout rollback` of D3
  D4  8   09:00     d       08:30      08:00    succeeded    D5 is a hotfix
  D5  8   10:00     e       09:40      09:50    succeeded    tag v5-hotfix
  D6  9   10:00     a       (again)             succeeded    a redeploy of commit a
  D7  9   11:00     g                           failed       never reached the hosts
  D8  10  10:00     f       10:30      -        succeeded    committed after it shipped (skew)
  S1  2   (staging: not counted)

Production deployments: D1 D2 D3 D4 D5 D6 D8 = 7 in 2 weeks: 3.5 a week.
Failed: D1 (two incidents, counted once), D2 (rolled back), D3 (rollback), D4 (hotfix) = 4:
CFR 4/7 = 57.14 %; rollback rate (D2, D3) 2/7 = 28.57 %.
Deployment days: days 0, 1 (week 1 back: 2 days), 8, 9, 10 (the last week: 3): median 2.5.
Each deployment records its one commit as its change, as `deploy --commit --committed-at`
does. Changes a b c d e f = 6; f's commit clock ran backwards (left out, counted as skewed).
  commit to production: a 120 (D1; D6 ships it again and does not count), b 60, c 60 (squash:
  committed = merged), d 60 (squash commit stamped 30 min after its merge: the clock starts at
  the merge), e 20 -> sorted 20 60 60 60 120: median 60, p90 at rank 3.6: 60 + 0.6 x 60 = 96.
  merge to production: a 30, b 30, c 60, d 60, e 10 -> 10 30 30 60 60: median 30, p90 60.
Incidents: I1 level 3 impact 10:20 -> mitigated 10:40: 20 min (Four Keys: 0 hours), acked after
  3 min (within 5); I2 level 2, no impact start, detected 11:00 -> mitigated 11:45: 45 min,
  acked after 15 min (not within 10); I3 level 1, no deployment, never acknowledged.
  Recovery: 20, 45 -> median 32.5, p90 20 + 0.9 x 25 = 42.5 (target 30 min: missed).
Samples: 1 990 probe requests on day 3 with 1 error, 10 in the last half hour with 1 error:
  2 000, 2 bad: availability 99.9 % (met), budget 2 errors, 2 spent: 0 % left, burn rate 1;
  last hour and six hours: 1 in 10 -> burn rate 100. Latency 0.1 .. 2.0 s in steps of 0.1:
  p95 at rank 0.95 x 19 = 18.05: 1.9 + 0.05 x 0.1 = 1.905 s.

Further tests build their own small histories, worked out beside them.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, inspect, update

from rollout.changes import Change
from rollout.config import KpiTargets
from rollout.kpi import Report, Window, compute, dora, queries
from rollout.kpi.slo import Requests, budget
from rollout.model import Kind, Outcome
from rollout.redact import Redactor
from rollout.store import ChangeRecord, Store, open_store, schema
from rollout.store.connect import MIGRATIONS, create, migrate, parse_url

T0 = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
UNTIL = T0 + timedelta(days=14)
ENV = "production"


def at(day: int, clock: str) -> datetime:
    hours, minutes = map(int, clock.split(":"))
    return T0 + timedelta(days=day, hours=hours, minutes=minutes)


def deploy(
    store: Store,
    day: int,
    finished: str,
    *,
    sha: str | None,
    committed: str | None = None,
    merged: str | None = None,
    status: Outcome = Outcome.SUCCEEDED,
    tag: str = "v1",
    env: str = ENV,
    kind: Kind = Kind.DEPLOY,
    rollback_of: int | None = None,
    commit_day: int | None = None,
    changes: tuple[Change, ...] | None = None,
    record_changes: bool = True,
) -> int:
    """A deployment that finished on ``day`` at ``finished``, 10 minutes after it started.

    Its changes (recorded while it runs, as rollout records them) are ``changes``, else its
    own commit when it has a commit time (as ``deploy --commit --committed-at`` records it);
    ``record_changes=False`` writes only the deployment's own columns (a store before 0005).
    """
    end = at(day, finished)
    cday = day if commit_day is None else commit_day
    ident = store.create_deployment(
        app="demo",
        env=env,
        kind=kind,
        tag=tag,
        actor="test",
        commit_sha=sha,
        committed_at=at(cday, committed) if committed else None,
        merged_at=at(cday, merged) if merged else None,
        rollback_of=rollback_of,
        started_at=end - timedelta(minutes=10),
    )
    if changes is None and sha is not None and committed is not None:
        changes = (Change(sha, at(cday, committed), at(cday, merged) if merged else None),)
    if record_changes and changes:
        store.add_changes(ident, env, changes)
    store.finish_deployment(ident, status=status, finished_at=end)
    return ident


def change(sha: str, day: int, committed: str, merged: str | None = None) -> Change:
    return Change(sha, at(day, committed), at(day, merged) if merged else None)


def incident(
    store: Store,
    deployment: int | None,
    level: int,
    *,
    impact: datetime | None,
    detected: datetime,
    acked: datetime | None,
    mitigated: datetime | None,
) -> None:
    ident = store.open_incident(
        env=ENV,
        deployment_id=deployment,
        level=level,
        title="t",
        symptoms="s",
        impact_start=impact,
        detected_at=detected,
        action=None,
    )
    store.update_incident(ident, acknowledged_at=acked, mitigated_at=mitigated)


def history(store: Store, *, record_changes: bool = True) -> None:
    ship = partial(deploy, store, record_changes=record_changes)
    d1 = ship(0, "10:10", sha="a", committed="08:10", merged="09:40")
    incident(
        store, d1, 3, impact=at(0, "10:20"), detected=at(0, "10:22"), acked=at(0, "10:25"),
        mitigated=at(0, "10:40"),
    )  # fmt: skip
    incident(
        store, d1, 2, impact=None, detected=at(0, "11:00"), acked=at(0, "11:15"),
        mitigated=at(0, "11:45"),
    )  # fmt: skip
    ship(1, "12:00", sha="b", committed="11:00", merged="11:30", status=Outcome.ROLLED_BACK)
    d3 = ship(1, "15:00", sha="c", committed="14:00", merged="14:00")
    ship(1, "15:30", sha=None, kind=Kind.ROLLBACK, rollback_of=d3, tag="v0")
    ship(2, "10:00", sha="s", committed="09:00", merged="09:30", env="staging")
    ship(8, "09:00", sha="d", committed="08:30", merged="08:00")
    ship(8, "10:00", sha="e", committed="09:40", merged="09:50", tag="v5-hotfix")
    ship(9, "10:00", sha="a", committed="08:10", merged="09:40", commit_day=0)
    ship(9, "11:00", sha="g", committed="10:00", status=Outcome.FAILED)
    ship(10, "10:00", sha="f", committed="10:30")
    incident(store, None, 1, impact=None, detected=at(5, "12:00"), acked=None, mitigated=None)
    samples(store)


def samples(store: Store) -> None:
    start = at(3, "00:00")
    errors = [(start + timedelta(seconds=30 * i), float(i == 7)) for i in range(1990)]
    errors += [
        (UNTIL - timedelta(minutes=30) + timedelta(seconds=i), float(i == 3)) for i in range(10)
    ]
    errors.append((T0 - timedelta(hours=1), 1.0))  # before the window
    rows = [{"metric": "http_error", "source": "probe", "at": t, "value": v} for t, v in errors]
    rows += [
        {"metric": "latency_seconds", "source": "probe", "at": start, "value": k / 10}
        for k in range(1, 21)
    ]
    store.add_samples(ENV, None, rows)
    store.add_samples(
        "staging", None, [{"metric": "http_error", "source": "p", "at": start, "value": 1.0}]
    )


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    # Both backends: each keeps the derived lead times and hourly counts by its own triggers.
    name: str = request.param
    return name


@pytest.fixture
def store(request: pytest.FixtureRequest, tmp_path: Path, backend: str) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'rollout.db'}"
    if backend == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
    with open_store(url) as opened:
        yield opened


@pytest.fixture
def report(store: Store) -> Report:
    history(store)
    return compute(store.engine, Window(ENV, T0, UNTIL), KpiTargets(), {2: 600.0, 3: 300.0})


def test_deployments_are_counted_once_per_deployment_and_only_in_production(report: Report) -> None:
    d = report.facts.delivery
    assert (d.deployments, d.failed, d.rolled_back, d.with_incident, d.hotfixed) == (7, 4, 2, 1, 1)
    assert report.figure("deployment_frequency").value == pytest.approx(3.5)
    assert report.figure("deployment_frequency").met is True  # weekly
    assert report.figure("deployment_days").value == pytest.approx(2.5)


def test_change_failure_rate_beside_the_rollback_rate(report: Report) -> None:
    cfr = report.figure("change_failure_rate")
    assert cfr.value == pytest.approx(400 / 7)
    assert (cfr.met, cfr.tiers) == (False, {"2023": "low", "2024": "low"})
    assert report.figure("rollback_rate").value == pytest.approx(200 / 7)


def test_lead_time_per_change_from_commit_and_from_merge(report: Report) -> None:
    d = report.facts.delivery
    assert (d.changes, d.lead_skipped) == (6, 1)
    assert (d.lead_from_commit.count, d.lead_from_commit.p50, d.lead_from_commit.p90) == (
        5,
        pytest.approx(60 * 60),
        pytest.approx(96 * 60),
    )
    assert (d.lead_from_merge.count, d.lead_from_merge.p50, d.lead_from_merge.p90) == (
        5,
        pytest.approx(30 * 60),
        pytest.approx(60 * 60),
    )
    figure = report.figure("lead_time_commit")
    assert (figure.value, figure.met, figure.tiers["2024"]) == (pytest.approx(60), True, "elite")


def test_recovery_time_in_minutes_not_whole_hours(report: Report) -> None:
    assert report.figure("recovery_time").value == pytest.approx(32.5)
    assert report.figure("recovery_time_p90").value == pytest.approx(42.5)
    assert report.figure("recovery_time").met is False  # target 30 min
    assert report.figure("recovery_time_level3").value == pytest.approx(20)
    assert report.figure("recovery_time_level2").value == pytest.approx(45)
    assert report.figure("recovery_time").tiers == {"2023": "elite", "2024": "elite"}


def test_time_to_acknowledge_against_each_levels_response_time(report: Report) -> None:
    levels = {lv.level: lv for lv in report.facts.levels}
    assert (levels[3].acknowledged_in_time, levels[3].incidents) == (1, 1)
    assert (levels[2].acknowledged_in_time, levels[2].incidents) == (0, 1)
    assert (levels[1].acknowledged, levels[1].incidents, levels[1].from_deployments) == (0, 1, 0)
    assert levels[1].respond_within == 900.0  # the runbook's default for level 1
    assert levels[2].to_acknowledge.p50 == pytest.approx(15 * 60)
    assert report.figure("acknowledged_in_time_level3").met is True
    assert report.figure("acknowledged_in_time_level2").value == 0


def test_availability_error_budget_and_burn_rate(report: Report) -> None:
    s = report.facts.samples
    assert (s.window, s.last_1h, s.last_6h) == (Requests(2000, 2), Requests(10, 1), Requests(10, 1))
    assert report.figure("availability").value == pytest.approx(99.9)
    assert report.figure("availability").met is True
    assert report.budget.allowed_errors == pytest.approx(2)
    assert report.figure("error_budget_left").value == pytest.approx(0, abs=1e-9)
    assert report.figure("burn_rate").value == pytest.approx(1)
    assert report.budget.burn_rate_1h == pytest.approx(100)
    assert report.figure("error_rate").value == pytest.approx(0.1)
    assert report.figure("response_time_p95").value == pytest.approx(1.905)
    assert report.figure("response_time_p95").met is True


def test_an_empty_store_gives_no_figures_rather_than_zeros(store: Store) -> None:
    report = compute(store.engine, Window(ENV, T0, UNTIL))
    assert report.figure("change_failure_rate").value is None
    assert report.figure("lead_time_commit").value is None
    assert report.figure("availability").value is None
    assert report.figure("deployment_frequency").value == 0
    assert report.to_json()["figures"]["recovery_time"]["met"] is None


def test_a_change_counts_from_its_first_deployment_even_one_recorded_later(store: Store) -> None:
    # Commit x (committed day 0 09:00) ships on day 3 at 09:00: 3 days. A deployment of x
    # that finished on day 1 at 09:00 is recorded afterwards (an imported history): now x
    # shipped first on day 1, a lead time of 1 day, and no change is left from day 2 on.
    later = Window(ENV, at(2, "00:00"), UNTIL)
    deploy(store, 3, "09:00", sha="x", committed="09:00", commit_day=0)
    assert compute(store.engine, later).facts.delivery.changes == 1
    deploy(store, 1, "09:00", sha="x", committed="09:00", commit_day=0)
    assert compute(store.engine, later).facts.delivery.changes == 0
    whole = compute(store.engine, Window(ENV, T0, UNTIL)).facts.delivery
    assert (whole.changes, whole.lead_from_commit.p50) == (1, pytest.approx(86400))


def test_each_change_of_a_deployment_has_its_lead_time_and_the_deployment_fails_once(
    store: Store,
) -> None:
    # D1 (day 0, 12:00) ships three changes and has two incidents; D2 (day 1, 10:00) one.
    #   commit to production: p 09:00 -> 180 min, q 10:00 -> 120, r (squash, 11:30) -> 30,
    #   s (day 1 09:00) -> 60: sorted 30 60 120 180, median 90, p90 at rank 2.7: 120 + 0.7 x
    #   60 = 162. Merge: p 11:00 -> 60, q 11:00 -> 60, r 30, s 09:30 -> 30: median 45, p90 60.
    # CFR: 1 of 2 deployments (Four Keys' join would count D1 once per change and incident).
    d1 = deploy(
        store, 0, "12:00", sha="r",
        changes=(
            change("p", 0, "09:00", "11:00"),
            change("q", 0, "10:00", "11:00"),
            change("r", 0, "11:30", "11:30"),
        ),
    )  # fmt: skip
    for minute in ("12:20", "12:40"):
        incident(
            store, d1, 2, impact=None, detected=at(0, minute), acked=at(0, minute),
            mitigated=at(0, minute) + timedelta(minutes=5),
        )  # fmt: skip
    deploy(store, 1, "10:00", sha="s", committed="09:00", merged="09:30")
    report = compute(store.engine, Window(ENV, T0, UNTIL))
    d = report.facts.delivery
    assert (d.changes, d.lead_from_commit.p50, d.lead_from_commit.p90) == (
        4,
        pytest.approx(90 * 60),
        pytest.approx(162 * 60),
    )
    assert (d.lead_from_merge.p50, d.lead_from_merge.p90) == (
        pytest.approx(45 * 60),
        pytest.approx(60 * 60),
    )
    assert (d.deployments, d.failed, d.with_incident) == (2, 1, 1)
    assert report.figure("change_failure_rate").value == pytest.approx(50)
    assert [c.sha for c in store.changes(d1)] == ["p", "q", "r"]


def test_a_change_recorded_by_two_deployments_counts_once_at_the_first(store: Store) -> None:
    # x ships with D1 (day 0, 12:00), recorded without a merge time (deploy --commit), and
    # again in D2's range (day 2, 12:00) with its merge at 10:00: one change, dated by D1, its
    # merge time the earliest recorded: commit 08:00 -> 240 min, merge 10:00 -> 120 min.
    # y ships with D2 only: committed day 2 09:00 -> 180 min, merged 11:00 -> 60 min.
    deploy(store, 0, "12:00", sha="x", changes=(change("x", 0, "08:00"),))
    deploy(
        store, 2, "12:00", sha="y",
        changes=(change("x", 0, "08:00", "10:00"), change("y", 2, "09:00", "11:00")),
    )  # fmt: skip
    d = compute(store.engine, Window(ENV, T0, UNTIL)).facts.delivery
    assert (d.changes, d.lead_from_commit.count, d.lead_from_merge.count) == (2, 2, 2)
    assert (d.lead_from_commit.p50, d.lead_from_merge.p50) == (
        pytest.approx(210 * 60),  # 180 and 240
        pytest.approx(90 * 60),  # 60 and 120
    )
    after_d1 = compute(store.engine, Window(ENV, at(1, "00:00"), UNTIL)).facts.delivery
    assert after_d1.changes == 1  # y; x belongs to day 0


def test_changes_recorded_while_their_deployment_runs_count_from_its_finish(
    store: Store,
) -> None:
    # rollout records a deployment's changes when it starts. Until it reaches production
    # they count nowhere; a failed one's never; they are dated by its finish (day 1, 12:00:
    # committed 10:00 -> 120 min).
    window = Window(ENV, T0, UNTIL)
    running = store.create_deployment(
        app="demo", env=ENV, kind=Kind.DEPLOY, tag="v1", actor="test",
        started_at=at(1, "11:00"),
    )  # fmt: skip
    assert store.add_changes(running, ENV, [change("m", 1, "10:00")]) == 1
    assert compute(store.engine, window).facts.delivery.changes == 0
    store.finish_deployment(running, status=Outcome.SUCCEEDED, finished_at=at(1, "12:00"))
    d = compute(store.engine, window).facts.delivery
    assert (d.changes, d.lead_from_commit.p50) == (1, pytest.approx(120 * 60))
    # One recorded after the finish (found later in the range) counts at once: 11:00 -> 60.
    store.add_changes(running, ENV, [change("m2", 1, "11:00")])
    d = compute(store.engine, window).facts.delivery
    assert (d.changes, d.lead_from_commit.p50) == (2, pytest.approx(90 * 60))
    failed = store.create_deployment(
        app="demo", env=ENV, kind=Kind.DEPLOY, tag="v2", actor="test", started_at=at(2, "09:00")
    )
    store.add_changes(failed, ENV, [change("n", 2, "08:00")])
    store.finish_deployment(failed, status=Outcome.FAILED, finished_at=at(2, "09:30"))
    assert compute(store.engine, window).facts.delivery.changes == 2


def test_lead_times_follow_corrections_to_deployments_and_changes(store: Store) -> None:
    # u ships with D1 (day 0, 12:00) and D2 (day 3, 12:00), committed day 0 at 11:00.
    d1 = deploy(store, 0, "12:00", sha="u", committed="11:00")
    d2 = deploy(store, 3, "12:00", sha="u", commit_day=0, committed="11:00")
    window = Window(ENV, T0, UNTIL)

    def lead() -> tuple[int, float | None]:
        d = compute(store.engine, window).facts.delivery
        return d.changes, d.lead_from_commit.p50

    assert lead() == (1, pytest.approx(3600))
    d, c = schema.deployments, schema.changes
    with store.engine.begin() as conn:  # D1 had in truth failed: u first shipped with D2
        conn.execute(update(d).where(d.c.id == d1).values(status="failed"))
    assert lead() == (1, pytest.approx(3 * 86400 + 3600))
    with store.engine.begin() as conn:  # D2 was staging's, not production's
        conn.execute(update(d).where(d.c.id == d2).values(env="staging"))
    assert lead() == (0, None)
    assert {r.env for r in store.changes(d2)} == {"staging"}
    staging = compute(store.engine, Window("staging", T0, UNTIL)).facts.delivery
    assert staging.changes == 1
    with store.engine.begin() as conn:  # and u was committed on day 2, not day 0
        conn.execute(update(c).where(c.c.deployment_id == d2).values(committed_at=at(2, "11:00")))
    staging = compute(store.engine, Window("staging", T0, UNTIL)).facts.delivery
    assert staging.lead_from_commit.p50 == pytest.approx(86400 + 3600)
    with store.engine.begin() as conn:
        conn.execute(delete(c).where(c.c.deployment_id == d2))
    assert compute(store.engine, Window("staging", T0, UNTIL)).facts.delivery.changes == 0


def test_database_query_time_is_the_exact_p95_of_the_timed_queries(store: Store) -> None:
    # One timed SELECT 1 a minute through day 3, minute m taking m / 10 ms; the database did
    # not answer at minutes 400, 500 and 600. The window (05:30:30 to 10:00:30, inside hours)
    # holds minutes 331..600: 267 timed, 3 unanswered. Sorted, ranks 0..68 are minutes
    # 331..399, 69..167 are 401..499, 168..266 are 501..599: the p95 at rank 0.95 x 266 =
    # 252.7 lies between minutes 585 and 586: 58.57 ms (target 100 ms: met).
    start = at(3, "00:00")
    rows = [
        {
            "metric": "db_query_seconds",
            "source": "database",
            "at": start + timedelta(minutes=m),
            "value": None if m % 100 == 0 else m / 10_000,
            "labels": {"error": "connection refused"} if m % 100 == 0 else {},
        }
        for m in range(24 * 60)
    ]
    store.add_samples(ENV, None, rows)
    window = Window(
        ENV, at(3, "05:30") + timedelta(seconds=30), at(3, "10:00") + timedelta(seconds=30)
    )
    report = compute(store.engine, window, KpiTargets())
    s = report.facts.samples
    assert (s.db_queries, s.db_query_failed) == (267, 3)
    assert s.db_query_p95 == pytest.approx(0.05857)
    figure = report.figure("db_query_time")
    assert (figure.value, figure.unit, figure.target, figure.met) == (
        pytest.approx(58.57),
        "ms",
        "< 100 ms",
        True,
    )
    assert figure.note == "267 timed queries, 3 unanswered (database down)"
    slow = compute(store.engine, window, KpiTargets(db_query_time=timedelta(milliseconds=50)))
    assert slow.figure("db_query_time").met is False


def test_the_frequency_counts_from_where_the_environments_records_start(store: Store) -> None:
    # Production's first record is a failed deploy on day 0 (Monday 2026-11-02); then three
    # deployments on days 8 and 9. Over 90 days: counted from day 0, 2 weeks: 1.5 a week
    # (not 3 in 12.9 weeks); deployment days per week over those 2 weeks: 0 and 2, median 1.
    # A fresh environment's records start on day 13 (a rollback record, any kind counts),
    # two deployments that day: at least a week is counted, 2 a week; over 3 days asked for,
    # the 3 days: 2 / (3/7) = 4.67 a week. Staging's older records do not move either.
    deploy(store, 0, "15:00", sha=None, status=Outcome.FAILED)
    deploy(store, -30, "10:00", sha=None, env="staging")
    for day, clock in ((8, "10:00"), (9, "10:00"), (9, "11:00")):
        deploy(store, day, clock, sha=None)
    deploy(store, 13, "09:00", sha=None, env="fresh", kind=Kind.ROLLBACK)
    for clock in ("10:00", "11:00"):
        deploy(store, 13, clock, sha=None, env="fresh")

    report = compute(store.engine, Window(ENV, UNTIL - timedelta(days=90), UNTIL))
    frequency = report.figure("deployment_frequency")
    assert frequency.value == pytest.approx(1.5)
    assert frequency.note == "3 production deployments in 2.0 weeks (records start 2026-11-02)"
    days = report.figure("deployment_days")
    assert (days.value, days.note) == (1, "over 2 whole weeks since records start 2026-11-02")
    assert report.facts.delivery.records_start == at(0, "14:50")

    fresh = compute(store.engine, Window("fresh", UNTIL - timedelta(days=90), UNTIL))
    assert fresh.figure("deployment_frequency").value == pytest.approx(2)
    assert fresh.figure("deployment_frequency").note == (
        "2 production deployments in 1.0 weeks (records start 2026-11-15)"
    )
    assert fresh.figure("deployment_days").value == 1
    short = compute(store.engine, Window("fresh", UNTIL - timedelta(days=3), UNTIL))
    assert short.figure("deployment_frequency").value == pytest.approx(2 / (3 / 7))
    inside = compute(store.engine, Window(ENV, T0, UNTIL)).figure("deployment_frequency")
    assert inside.note == "3 production deployments in 2.0 weeks"  # records start with it


def _probes(store: Store, day: int) -> None:
    """One probe a minute through the day: minute m failed when m is a multiple of 100, and
    its latency is m / 1000 s."""
    start = at(day, "00:00")
    minutes = [(m, start + timedelta(minutes=m)) for m in range(24 * 60)]
    rows = [
        {"metric": "http_error", "source": "probe", "at": t, "value": float(m % 100 == 0)}
        for m, t in minutes
    ]
    rows += [
        {"metric": "latency_seconds", "source": "probe", "at": t, "value": m / 1000}
        for m, t in minutes
    ]
    store.add_samples(ENV, None, rows)


def test_a_window_inside_hours_counts_its_partial_hours(store: Store) -> None:
    # Day 3, from 05:30:30 to 10:00:30: minutes 331 to 600, 270 probes (whole hours 06:00
    # to 10:00 from the hourly counts, 29 + 1 probes around them), failed at minutes 400,
    # 500 and 600. Last hour: minutes 541..600, 60 probes, 1 failed (600). Last six hours:
    # 241..600, 360 probes, 4 failed (300 to 600). Latencies 0.331 .. 0.600 s: the p95 is at
    # rank 0.95 x 269 = 255.55, between 0.586 and 0.587: 0.58655 s.
    _probes(store, 3)
    window = Window(
        ENV, at(3, "05:30") + timedelta(seconds=30), at(3, "10:00") + timedelta(seconds=30)
    )
    s = compute(store.engine, window).facts.samples
    assert (s.window, s.last_1h, s.last_6h) == (
        Requests(270, 3),
        Requests(60, 1),
        Requests(360, 4),
    )
    assert (s.latencies, s.latency_p95) == (270, pytest.approx(0.58655))


def test_hourly_counts_follow_samples_changed_or_deleted_later(store: Store) -> None:
    # The same day; then the failed probes at minutes 400 and 500 are deleted (a retention
    # job), and the one at 600 is corrected to a success: 268 probes, none failed.
    _probes(store, 3)
    window = Window(
        ENV, at(3, "05:30") + timedelta(seconds=30), at(3, "10:00") + timedelta(seconds=30)
    )
    s, ten = schema.samples, at(3, "10:00")
    with store.engine.begin() as conn:
        conn.execute(delete(s).where(s.c.metric == "http_error", s.c.value > 0, s.c.at < ten))
        conn.execute(update(s).where(s.c.metric == "http_error", s.c.at == ten).values(value=0.0))
    assert compute(store.engine, window).facts.samples.window == Requests(268, 0)


@pytest.mark.parametrize("revision", ["0004", "0003"])
def test_a_store_taken_back_and_migrated_again_gives_the_same_figures(
    store: Store, revision: str
) -> None:
    # Back to 0004, lead times come from each deployment's own commit again (every
    # deployment here ships one); back to 0003 there are none. Each migration fills what it
    # derives from the records already there: up again, and every figure is the same.
    history(store)
    window = Window(ENV, T0, UNTIL)
    before = compute(store.engine, window, KpiTargets(), {2: 600.0, 3: 300.0}).to_json()
    _downgrade(store.engine, revision)
    tables = inspect(store.engine).get_table_names()
    assert "changes" not in tables
    if revision == "0004":
        derived = compute(store.engine, window, KpiTargets(), {2: 600.0, 3: 300.0}).to_json()
        assert derived == before
    else:
        assert "lead_times" not in tables
    migrate(store.engine)
    after = compute(store.engine, window, KpiTargets(), {2: 600.0, 3: 300.0}).to_json()
    assert after == before


def test_a_store_of_one_commit_per_deployment_migrates_to_the_same_lead_times(
    tmp_path: Path, request: pytest.FixtureRequest, backend: str
) -> None:
    # A store at 0004 (lead times from deployments.commit_sha) with the whole history,
    # written as rollout wrote it then; 0005 records each deployment's commit as its change
    # and derives every figure the same.
    url = f"sqlite:///{tmp_path / 'rollout.db'}"
    if backend == "postgresql":
        url = request.getfixturevalue("fresh_postgres_url")
    engine = create(parse_url(url))
    try:
        _alembic(engine, "upgrade", "0004")
        old = Store(engine, parse_url(url), Redactor({}))
        history(old, record_changes=False)
        window, limits = Window(ENV, T0, UNTIL), {2: 600.0, 3: 300.0}
        before = compute(engine, window, KpiTargets(), limits).to_json()
        assert before["facts"]["delivery"]["changes"] == 6
        migrate(engine)
        after = compute(engine, window, KpiTargets(), limits).to_json()
        first = old.deployments(env=ENV)[-1]
        assert old.changes(first.id) == [
            ChangeRecord(1, first.id, ENV, "a", at(0, "08:10"), at(0, "09:40"))
        ]
    finally:
        engine.dispose()
    assert after == before


def _downgrade(engine: Engine, revision: str) -> None:
    _alembic(engine, "downgrade", revision)


def _alembic(engine: Engine, how: str, revision: str) -> None:
    """Alembic's upgrade or downgrade, given the connection as rollout.store.connect.migrate
    gives it."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        getattr(command, how)(config, revision)


def test_hotfixes_are_read_through_their_partial_index(tmp_path: Path) -> None:
    # The query writes the index's condition (schema.says_hotfix) as the migration wrote it:
    # else SQLite could not use the index, and would read every deployment's tag and reason.
    with open_store(f"sqlite:///{tmp_path / 'rollout.db'}") as store, store.engine.begin() as conn:
        query = queries._hotfixed(conn, Window(ENV, T0, UNTIL))
        sql = str(query.compile(conn, compile_kwargs={"render_postcompile": True}))
        plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", (None,) * sql.count("?"))
        details = [row[-1] for row in plan]
    assert any("USING INDEX ix_deployments_hotfix" in detail for detail in details), details


@pytest.mark.parametrize(
    ("metric", "value", "t2023", "t2024"),
    [
        ("recovery_time", 59 * 60, "elite", "elite"),
        ("recovery_time", 61 * 60, "high", "high"),
        ("recovery_time", 2 * dora.DAY, "medium", "low"),  # 2024: medium is also < 1 day
        ("change_failure_rate", 5.0, "elite", "elite"),
        ("change_failure_rate", 15.0, "medium", "high"),  # 2024 inverts high and medium
        ("change_failure_rate", 30.0, "low", "low"),
        ("lead_time", 23 * 3600, "elite", "elite"),
        ("lead_time", 40 * dora.DAY, "low", "low"),
        ("deployment_frequency", 7.0, "elite", "elite"),
        ("deployment_frequency", 0.5, "medium", "medium"),
        ("deployment_frequency", 0.1, "low", "low"),
    ],
)
def test_dora_tiers(metric: str, value: float, t2023: str, t2024: str) -> None:
    assert dora.tiers(metric, value) == {"2023": t2023, "2024": t2024}


def test_percentile_is_interpolated_not_the_lower_median() -> None:
    assert dora.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert dora.percentile([], 0.5) is None
    assert dora.percentile([7.0], 0.9) == 7.0


def test_frequency_targets() -> None:
    assert dora.frequency_target("weekly") == 1.0
    assert dora.frequency_target("daily") == 5.0
    assert dora.frequency_target("3/week") == 3.0
    assert dora.frequency_target("2 per day") == 14.0
    with pytest.raises(ValueError, match="deployment_frequency"):
        dora.frequency_target("often")


def test_budget_with_no_requests() -> None:
    empty = Requests(0, 0)
    found = budget(empty, empty, empty, 99.9)
    assert (found.availability_percent, found.budget_left_percent, found.burn_rate) == (None,) * 3
