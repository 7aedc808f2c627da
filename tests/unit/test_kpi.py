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
Changes a b c d e f = 6; f's commit clock ran backwards (left out, counted as skewed).
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
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, delete, inspect, update

from rollout.config import KpiTargets
from rollout.kpi import Report, Window, compute, dora, queries
from rollout.kpi.slo import Requests, budget
from rollout.model import Kind, Outcome
from rollout.store import Store, open_store, schema
from rollout.store.connect import MIGRATIONS, migrate

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
) -> int:
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
    store.finish_deployment(ident, status=status, finished_at=end)
    return ident


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


def history(store: Store) -> None:
    d1 = deploy(store, 0, "10:10", sha="a", committed="08:10", merged="09:40")
    incident(
        store, d1, 3, impact=at(0, "10:20"), detected=at(0, "10:22"), acked=at(0, "10:25"),
        mitigated=at(0, "10:40"),
    )  # fmt: skip
    incident(
        store, d1, 2, impact=None, detected=at(0, "11:00"), acked=at(0, "11:15"),
        mitigated=at(0, "11:45"),
    )  # fmt: skip
    deploy(
        store, 1, "12:00", sha="b", committed="11:00", merged="11:30", status=Outcome.ROLLED_BACK
    )
    d3 = deploy(store, 1, "15:00", sha="c", committed="14:00", merged="14:00")
    deploy(store, 1, "15:30", sha=None, kind=Kind.ROLLBACK, rollback_of=d3, tag="v0")
    deploy(store, 2, "10:00", sha="s", committed="09:00", merged="09:30", env="staging")
    deploy(store, 8, "09:00", sha="d", committed="08:30", merged="08:00")
    deploy(store, 8, "10:00", sha="e", committed="09:40", merged="09:50", tag="v5-hotfix")
    deploy(store, 9, "10:00", sha="a", committed="08:10", merged="09:40", commit_day=0)
    deploy(store, 9, "11:00", sha="g", committed="10:00", status=Outcome.FAILED)
    deploy(store, 10, "10:00", sha="f", committed="10:30")
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
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    # Both backends: each keeps the derived lead times and hourly counts by its own triggers.
    url = f"sqlite:///{tmp_path / 'rollout.db'}"
    if request.param == "postgresql":
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


def test_a_store_from_before_the_derived_tables_gives_the_same_figures(store: Store) -> None:
    # Migration 0004 fills lead_times and sample_hours from the records already there:
    # back to 0003 (which drops them), up again, and every figure is the same.
    history(store)
    window = Window(ENV, T0, UNTIL)
    before = compute(store.engine, window, KpiTargets(), {2: 600.0, 3: 300.0}).to_json()
    _downgrade(store.engine, "0003")
    assert "lead_times" not in inspect(store.engine).get_table_names()
    migrate(store.engine)
    after = compute(store.engine, window, KpiTargets(), {2: 600.0, 3: 300.0}).to_json()
    assert after == before


def _downgrade(engine: Engine, revision: str) -> None:
    """Alembic's downgrade, given the connection as rollout.store.connect.migrate gives it."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)


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
