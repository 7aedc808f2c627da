"""The monitoring window's judge: Argo's measurement rules, SLO burn rates, the baseline test."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from rollout.errors import BadInput
from rollout.monitor.judge import (
    SRE_BURN_RULES,
    Action,
    AnalysisPhase,
    BaselineMetric,
    Classification,
    ComparisonResult,
    Condition,
    Counts,
    Direction,
    Measurement,
    MetricComparison,
    MetricJudge,
    MetricRule,
    Op,
    Severity,
    assess_metric,
    burn_rate,
    burn_rule,
    classify,
    compare,
    evaluate_burn,
    judge_measurement,
    judge_run,
    scale_rules,
    score,
    windows,
)

P95_UNDER_2S = MetricRule("p95", failure=Condition(Op.GE, 2.0))
OK, SLOW, EMPTY = Measurement(0.4), Measurement(2.5), Measurement(None)
BROKEN = Measurement(None, error="connection refused")

# --- one measurement, Argo's evaluation table ---------------------------------------------


@pytest.mark.parametrize(
    ("rule", "measurement", "phase"),
    [
        (P95_UNDER_2S, BROKEN, AnalysisPhase.ERROR),
        (P95_UNDER_2S, Measurement(float("nan")), AnalysisPhase.ERROR),
        (P95_UNDER_2S, Measurement(1.0, error="partial response"), AnalysisPhase.ERROR),
        (P95_UNDER_2S, EMPTY, AnalysisPhase.INCONCLUSIVE),
        (P95_UNDER_2S, SLOW, AnalysisPhase.FAILED),
        (P95_UNDER_2S, Measurement(2.0), AnalysisPhase.FAILED),
        # only a failure condition: success is its negation, < 2
        (P95_UNDER_2S, Measurement(1.99), AnalysisPhase.SUCCESSFUL),
        # only a success condition: failure is its negation, < 0.95
        (
            MetricRule("sr", success=Condition(Op.GE, 0.95)),
            Measurement(0.97),
            AnalysisPhase.SUCCESSFUL,
        ),
        (MetricRule("sr", success=Condition(Op.GE, 0.95)), Measurement(0.9), AnalysisPhase.FAILED),
        # both: a value between them is neither
        (
            MetricRule("p95", failure=Condition(Op.GT, 2.0), success=Condition(Op.LT, 1.0)),
            Measurement(1.5),
            AnalysisPhase.INCONCLUSIVE,
        ),
        # both hold: failure wins
        (
            MetricRule("x", failure=Condition(Op.NE, 0), success=Condition(Op.GT, -1)),
            Measurement(3),
            AnalysisPhase.FAILED,
        ),
        (MetricRule("x", failure=Condition(Op.EQ, 0)), Measurement(0), AnalysisPhase.FAILED),
        (MetricRule("x", failure=Condition(Op.LE, 10)), Measurement(11), AnalysisPhase.SUCCESSFUL),
    ],
)
def test_one_measurement_is_judged_by_argos_table(
    rule: MetricRule, measurement: Measurement, phase: AnalysisPhase
) -> None:
    assert judge_measurement(rule, measurement).phase is phase


def test_a_verdict_names_the_value_and_the_condition_that_made_it() -> None:
    verdict = judge_measurement(P95_UNDER_2S, SLOW)
    assert verdict.value == 2.5
    assert verdict.condition == Condition(Op.GE, 2.0)
    assert verdict.reason == "2.5 >= 2: failure condition"


def test_conditions_parse_from_text_and_refuse_anything_else() -> None:
    assert Condition.parse(">= 0.01") == Condition(Op.GE, 0.01)
    assert Condition.parse("<2") == Condition(Op.LT, 2.0)
    assert Condition.parse("!= -1e3") == Condition(Op.NE, -1000.0)
    for text in ("=> 2", ">= two", ">= nan", "2 < x"):
        with pytest.raises(BadInput, match="not a condition"):
            Condition.parse(text)


def test_a_metric_without_a_condition_is_refused() -> None:
    with pytest.raises(BadInput, match="no condition"):
        MetricRule("p95")


# --- one metric over time: Argo's limits --------------------------------------------------


def feed(rule: MetricRule, *measurements: Measurement) -> MetricJudge:
    judge = MetricJudge(rule)
    for measurement in measurements:
        judge.add(measurement)
    return judge


def test_failure_limit_0_fails_on_the_first_failure() -> None:
    judge = feed(P95_UNDER_2S, OK, OK, SLOW)
    verdict = judge.verdict()
    assert verdict.phase is AnalysisPhase.FAILED
    assert verdict.action is Action.ABORT
    assert verdict.reason == "failed 1 > failure_limit 0"
    assert verdict.last is not None and verdict.last.value == 2.5


def test_failure_limit_3_tolerates_three_failures_and_fails_on_the_fourth() -> None:
    rule = MetricRule("p95", failure=Condition(Op.GE, 2.0), failure_limit=3)
    judge = feed(rule, SLOW, OK, SLOW, SLOW)
    assert judge.phase is AnalysisPhase.RUNNING
    assert judge.counts.failed == 3
    judge.add(SLOW)
    assert judge.phase is AnalysisPhase.FAILED
    assert judge.verdict().reason == "failed 4 > failure_limit 3"


def test_failure_limit_minus_1_never_fails() -> None:
    rule = MetricRule("p95", failure=Condition(Op.GE, 2.0), failure_limit=-1)
    judge = feed(rule, *[SLOW] * 20, OK)
    assert judge.phase is AnalysisPhase.RUNNING
    assert judge.verdict(final=True).phase is AnalysisPhase.SUCCESSFUL


def test_an_inconclusive_measurement_pauses_by_default() -> None:
    verdict = feed(P95_UNDER_2S, OK, EMPTY).verdict()
    assert verdict.phase is AnalysisPhase.INCONCLUSIVE
    assert verdict.action is Action.PAUSE
    assert verdict.reason == "inconclusive 1 > inconclusive_limit 0"


def test_five_errors_in_a_row_are_an_error_four_are_not() -> None:
    judge = feed(P95_UNDER_2S, OK, *[BROKEN] * 4)
    assert judge.phase is AnalysisPhase.RUNNING
    judge.add(BROKEN)
    assert judge.phase is AnalysisPhase.ERROR
    assert judge.verdict().action is Action.ABORT
    assert judge.verdict().reason == "consecutive errors 5 > consecutive_error_limit 4"


def test_a_success_resets_the_consecutive_errors() -> None:
    judge = feed(P95_UNDER_2S, *[BROKEN] * 4, OK, *[BROKEN] * 4)
    assert judge.counts.error == 8
    assert judge.counts.consecutive_errors == 4
    assert judge.phase is AnalysisPhase.RUNNING


def test_a_tripped_metric_stays_tripped_when_measurements_recover() -> None:
    judge = feed(P95_UNDER_2S, *[BROKEN] * 5, OK, OK)
    assert judge.done
    assert judge.phase is AnalysisPhase.ERROR
    assert judge.counts.successful == 2


def test_when_limits_trip_together_the_worst_wins() -> None:
    # one measurement trips one limit at most, so the counts are given directly
    verdict = assess_metric(P95_UNDER_2S, Counts(measured=2, failed=1, inconclusive=1))
    assert verdict.phase is AnalysisPhase.FAILED
    assert verdict.reason == "failed 1 > failure_limit 0; inconclusive 1 > inconclusive_limit 0"
    verdict = assess_metric(P95_UNDER_2S, Counts(measured=6, inconclusive=1, consecutive_errors=5))
    assert verdict.phase is AnalysisPhase.ERROR  # abort, not pause


def test_count_reached_without_a_limit_is_successful() -> None:
    rule = MetricRule("p95", failure=Condition(Op.GE, 2.0), count=3)
    judge = feed(rule, OK, OK)
    assert judge.phase is AnalysisPhase.RUNNING
    judge.add(OK)
    assert judge.phase is AnalysisPhase.SUCCESSFUL
    assert judge.verdict().action is Action.PROCEED


def test_a_window_ending_without_one_success_is_not_healthy() -> None:
    rule = MetricRule("p95", failure=Condition(Op.GE, 2.0), inconclusive_limit=5)
    assert feed(rule).verdict(final=True).phase is AnalysisPhase.INCONCLUSIVE
    assert feed(rule, EMPTY, BROKEN).verdict(final=True).phase is AnalysisPhase.INCONCLUSIVE
    assert feed(rule, EMPTY, OK).verdict(final=True).phase is AnalysisPhase.SUCCESSFUL


# --- the run: the worst metric ------------------------------------------------------------

ERROR_RATE = MetricRule("error_rate", failure=Condition(Op.GE, 0.01))


def test_the_run_takes_the_worst_metric() -> None:
    rules = [P95_UNDER_2S, ERROR_RATE]
    cases = [
        ({"p95": [OK], "error_rate": [Measurement(0.0)]}, AnalysisPhase.RUNNING),
        ({"p95": [OK], "error_rate": [EMPTY]}, AnalysisPhase.INCONCLUSIVE),
        ({"p95": [BROKEN] * 5, "error_rate": [EMPTY]}, AnalysisPhase.ERROR),
        ({"p95": [BROKEN] * 5, "error_rate": [Measurement(0.02)]}, AnalysisPhase.FAILED),
    ]
    for measurements, phase in cases:
        assert judge_run(rules, measurements).phase is phase, measurements


def test_a_finished_healthy_run_proceeds_and_says_so() -> None:
    run = judge_run(
        [P95_UNDER_2S, ERROR_RATE],
        {"p95": [OK, OK], "error_rate": [Measurement(0.001)]},
        final=True,
    )
    assert run.phase is AnalysisPhase.SUCCESSFUL
    assert run.action is Action.PROCEED
    assert run.reason == "all 2 metrics successful"


def test_a_failed_run_aborts_and_names_the_metric() -> None:
    run = judge_run([P95_UNDER_2S, ERROR_RATE], {"p95": [OK], "error_rate": [Measurement(0.05)]})
    assert run.action is Action.ABORT
    assert run.reason == "error_rate failed: failed 1 > failure_limit 0"
    assert [m.phase for m in run.metrics] == [AnalysisPhase.RUNNING, AnalysisPhase.FAILED]


def test_a_metric_never_measured_makes_the_finished_run_inconclusive() -> None:
    run = judge_run([P95_UNDER_2S, ERROR_RATE], {"p95": [OK]}, final=True)
    assert run.phase is AnalysisPhase.INCONCLUSIVE


def test_measurements_of_an_unknown_metric_are_refused() -> None:
    with pytest.raises(BadInput, match="without a rule"):
        judge_run([P95_UNDER_2S], {"p59": [OK]})


# --- SLO burn rate: the SRE workbook's table ----------------------------------------------

HOUR, MINUTE = timedelta(hours=1), timedelta(minutes=1)
SLO = 0.999


def test_burn_rate_is_the_error_ratio_over_the_budget() -> None:
    assert burn_rate(0.02, SLO) == pytest.approx(20.0)
    assert burn_rate(0.0005, SLO) == pytest.approx(0.5)
    with pytest.raises(BadInput, match=r"99.9 % is 0.999"):
        burn_rate(0.02, 99.9)


def test_the_table_is_the_workbooks() -> None:
    table = [(r.severity, r.long_window, r.short_window, r.burn_rate) for r in SRE_BURN_RULES]
    assert table == [
        (Severity.PAGE, HOUR, 5 * MINUTE, 14.4),
        (Severity.PAGE, 6 * HOUR, 30 * MINUTE, 6.0),
        (Severity.TICKET, timedelta(days=3), 6 * HOUR, 1.0),
    ]
    # and each rate follows from its budget share: budget x 30 days / long window
    for rule in SRE_BURN_RULES:
        derived = burn_rule(
            rule.severity, rule.budget_consumed, rule.long_window, rule.short_window
        )
        assert derived.burn_rate == pytest.approx(rule.burn_rate)


def all_windows(ratio: float) -> dict[timedelta, float | None]:
    return dict.fromkeys(windows(SRE_BURN_RULES), ratio)


def test_2_percent_errors_on_a_999_slo_pages() -> None:
    verdict = evaluate_burn(SLO, all_windows(0.02))
    assert verdict.severity is Severity.PAGE
    first = verdict.fired[0]
    assert first.rule is SRE_BURN_RULES[0]
    assert first.long_burn == pytest.approx(20.0)
    assert "page at 14.4x over 1h and 5m: fired, burn 20x over 1h (2.000% errors)" in verdict.reason


def test_005_percent_errors_on_a_999_slo_fires_nothing() -> None:
    verdict = evaluate_burn(SLO, all_windows(0.0005))
    assert verdict.severity is None
    assert verdict.fired == ()
    assert len(verdict.checks) == 3


def test_a_burst_that_has_stopped_does_not_page() -> None:
    ratios = all_windows(0.0005) | {HOUR: 0.02}  # the hour was bad, the last 5 minutes are not
    assert evaluate_burn(SLO, ratios).severity is None


def test_a_slow_burn_only_opens_a_ticket() -> None:
    verdict = evaluate_burn(SLO, all_windows(0.002))  # 2x: under 6, over 1
    assert verdict.severity is Severity.TICKET
    assert [c.rule.severity for c in verdict.fired] == [Severity.TICKET]


def test_windows_without_a_ratio_are_unmeasured_not_quiet() -> None:
    verdict = evaluate_burn(SLO, {HOUR: 0.02, 5 * MINUTE: 0.02, 6 * HOUR: float("nan")})
    assert verdict.severity is Severity.PAGE
    assert verdict.unmeasured == SRE_BURN_RULES[1:]
    assert "page at 6x over 6h and 30m: not measured" in verdict.reason


def test_scaled_windows_for_a_short_monitoring_window() -> None:
    scaled = scale_rules(SRE_BURN_RULES, 12)
    assert [(r.long_window, r.short_window) for r in scaled[:2]] == [
        (5 * MINUTE, timedelta(seconds=25)),
        (30 * MINUTE, timedelta(minutes=2.5)),
    ]
    assert [r.burn_rate for r in scaled] == [14.4, 6.0, 1.0]
    verdict = evaluate_burn(SLO, dict.fromkeys(windows(scaled), 0.02), scaled)
    assert verdict.severity is Severity.PAGE
    assert "over 5m and 25s" in verdict.reason


# --- the baseline comparison: Mann-Whitney U ----------------------------------------------

LATENCY = BaselineMetric("latency", Direction.INCREASE)


def lognormal(seed: int, median: float, n: int = 60, sigma: float = 0.3) -> list[float]:
    """Latency-like samples: skewed, noisy, all positive."""
    return np.random.default_rng(seed).lognormal(np.log(median), sigma, n).tolist()


def test_a_20_percent_latency_shift_a_2s_threshold_misses_is_flagged_high() -> None:
    baseline, canary = lognormal(1, 0.8), lognormal(2, 0.96)
    assert min(canary) < max(baseline)  # the samples overlap
    fixed = MetricJudge(P95_UNDER_2S)
    for value in canary:
        fixed.add(Measurement(value))
    assert fixed.verdict(final=True).phase is AnalysisPhase.SUCCESSFUL  # every sample under 2 s

    verdict = classify(LATENCY, baseline, canary)
    assert verdict.classification is Classification.HIGH
    assert verdict.p_value is not None and verdict.p_value < 0.05
    assert verdict.effect == pytest.approx(1.2, abs=0.1)
    assert verdict.shift is not None and verdict.shift > 0
    assert (verdict.baseline_n, verdict.canary_n) == (60, 60)


def test_two_samples_of_the_same_distribution_pass() -> None:
    verdict = classify(LATENCY, lognormal(1, 0.8), lognormal(3, 0.8))
    assert verdict.classification is Classification.PASS
    assert verdict.p_value is not None and verdict.p_value > 0.05


def test_over_many_seeds_the_shift_is_mostly_caught_and_false_alarms_stay_rare() -> None:
    caught = sum(
        classify(LATENCY, lognormal(s, 0.8), lognormal(s + 1000, 0.96)).failed for s in range(100)
    )
    # no effect-size allowance: only the test stands between noise and a false alarm
    any_change = BaselineMetric("latency", allowed_increase=1.0, allowed_decrease=1.0)
    false_alarms = sum(
        classify(any_change, lognormal(s, 0.8), lognormal(s + 1000, 0.8)).failed for s in range(100)
    )
    assert caught >= 75
    assert false_alarms <= 8  # alpha is 0.05


def test_a_doubled_median_in_a_few_noisy_samples_is_not_evidence() -> None:
    baseline, canary = lognormal(3, 1.0, n=12, sigma=1.0), lognormal(53, 1.0, n=12, sigma=1.0)
    verdict = classify(LATENCY, baseline, canary)
    assert verdict.effect is not None and verdict.effect > 2  # by chance
    assert verdict.p_value is not None and verdict.p_value > 0.05
    assert verdict.classification is Classification.PASS


def test_the_effect_size_threshold_suppresses_a_tiny_significant_shift() -> None:
    baseline = lognormal(1, 0.800, n=3000, sigma=0.1)
    canary = lognormal(2, 0.824, n=3000, sigma=0.1)  # 3 % slower, measured very precisely
    strict = classify(
        BaselineMetric("latency", Direction.INCREASE, allowed_increase=1.0), baseline, canary
    )
    assert strict.classification is Classification.HIGH
    default = classify(LATENCY, baseline, canary)  # allowed_increase 1.1
    assert default.classification is Classification.PASS
    assert default.p_value is not None and default.p_value < 0.05
    assert "significant but under allowed x1.1" in default.reason


@pytest.mark.parametrize(
    ("direction", "classification"),
    [
        (Direction.DECREASE, Classification.LOW),
        (Direction.EITHER, Classification.LOW),
        (Direction.INCREASE, Classification.PASS),
    ],
)
def test_the_direction_decides_which_change_is_bad(
    direction: Direction, classification: Classification
) -> None:
    before, fewer = lognormal(1, 100.0), lognormal(2, 70.0)  # sign-ins per minute dropped 30 %
    verdict = classify(BaselineMetric("signins", direction), before, fewer)
    assert verdict.classification is classification


def test_too_few_samples_are_nodata_not_a_pass() -> None:
    verdict = classify(LATENCY, lognormal(1, 0.8, n=5), lognormal(2, 3.0, n=60))
    assert verdict.classification is Classification.NODATA
    assert verdict.reason == "5 baseline and 60 canary samples; at least 10 of each are needed"
    nans = classify(LATENCY, [float("nan")] * 60, lognormal(2, 0.8))
    assert nans.classification is Classification.NODATA


def test_identical_constant_samples_pass() -> None:
    verdict = classify(BaselineMetric("errors"), [0.0] * 30, [0.0] * 30)
    assert verdict.classification is Classification.PASS
    assert verdict.p_value == 1.0


def test_errors_appearing_from_a_zero_baseline_are_high() -> None:
    canary = [0.0] * 40 + [0.05] * 20
    verdict = classify(BaselineMetric("errors", Direction.INCREASE), [0.0] * 60, canary)
    assert verdict.classification is Classification.HIGH  # ratio undefined: the test decides


# --- the score --------------------------------------------------------------------------


def judged(
    name: str, classification: Classification, *, critical: bool = False, group: str | None = None
) -> MetricComparison:
    metric = BaselineMetric(name, critical=critical, group=group)
    return MetricComparison(metric, classification, "given", 60, 60, 0.05)


def ten_metrics_one_failing(*, critical: bool) -> list[MetricComparison]:
    passing = [judged(f"m{i}", Classification.PASS) for i in range(9)]
    return [*passing, judged("signin_errors", Classification.HIGH, critical=critical)]


def test_a_90_score_is_marginal() -> None:
    verdict = score(ten_metrics_one_failing(critical=False))
    assert verdict.score == 90.0
    assert verdict.result is ComparisonResult.MARGINAL
    assert verdict.action is Action.PAUSE


def test_a_critical_metric_failing_fails_a_90_score() -> None:
    verdict = score(ten_metrics_one_failing(critical=True))
    assert verdict.score == 90.0
    assert verdict.result is ComparisonResult.FAIL
    assert verdict.action is Action.ABORT
    assert verdict.reason == "critical metric failed: signin_errors (score 90)"


@pytest.mark.parametrize(
    ("passing", "result"),
    [
        (20, ComparisonResult.PASS),
        (19, ComparisonResult.PASS),
        (18, ComparisonResult.MARGINAL),
        (15, ComparisonResult.MARGINAL),
        (14, ComparisonResult.FAIL),
    ],
)
def test_the_score_thresholds(passing: int, result: ComparisonResult) -> None:
    metrics = [
        judged(f"m{i}", Classification.PASS if i < passing else Classification.HIGH)
        for i in range(20)
    ]
    assert score(metrics).result is result


def test_groups_are_weighed_not_metrics() -> None:
    metrics = [
        judged("p50", Classification.PASS, group="latency"),
        judged("p95", Classification.HIGH, group="latency"),
        judged("errors", Classification.PASS, group="errors"),
    ]
    assert score(metrics).group_scores == {"latency": 50.0, "errors": 100.0}
    assert score(metrics).score == 75.0
    assert score(metrics, weights={"latency": 1, "errors": 3}).score == 87.5
    with pytest.raises(BadInput, match="give every group a weight"):
        score(metrics, weights={"latency": 1})


def test_nodata_counts_against_the_score_and_half_nodata_is_nodata() -> None:
    one_missing = [judged(f"m{i}", Classification.PASS) for i in range(3)] + [
        judged("x", Classification.NODATA)
    ]
    assert score(one_missing).score == 75.0
    half = [judged("a", Classification.PASS), judged("b", Classification.NODATA)]
    verdict = score(half)
    assert verdict.result is ComparisonResult.NODATA
    assert verdict.action is Action.PAUSE


def test_compare_classifies_and_scores_every_metric() -> None:
    metrics = [LATENCY, BaselineMetric("signins", Direction.DECREASE, critical=True)]
    baseline = {"latency": lognormal(1, 0.8), "signins": lognormal(2, 100.0)}
    canary = {"latency": lognormal(3, 0.8), "signins": lognormal(4, 100.0)}
    healthy = compare(metrics, baseline, canary)
    assert healthy.result is ComparisonResult.PASS
    assert healthy.score == 100.0

    broken = compare(metrics, baseline, canary | {"signins": lognormal(4, 50.0)})
    assert broken.result is ComparisonResult.FAIL
    assert [m.classification for m in broken.metrics] == [Classification.PASS, Classification.LOW]
