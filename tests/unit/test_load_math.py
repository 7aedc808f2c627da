"""The load check's arithmetic and threshold parser, without a network."""

from __future__ import annotations

import random
import statistics

import pytest

from rollout.checks.load import (
    LatencyStats,
    Threshold,
    histogram,
    parse_threshold,
    percentile,
)
from rollout.errors import BadInput


def test_percentile_known_samples() -> None:
    values = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]
    # rank = pct/100 * (n-1) = 0.95 * 9 = 8.55 -> 9 + 0.55 * (10 - 9)
    assert percentile(values, 95) == pytest.approx(9.55)
    assert percentile(values, 50) == pytest.approx(5.5)  # the median of an even count
    assert percentile(values, 90) == pytest.approx(9.1)
    assert percentile(values, 99) == pytest.approx(9.91)
    assert percentile(values, 0) == 1.0
    assert percentile(values, 100) == 10.0
    assert percentile([42.0], 95) == 42.0
    assert percentile([10.0, 20.0], 25) == pytest.approx(12.5)
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 99.9) == pytest.approx(4.996)


def test_percentile_matches_statistics_inclusive() -> None:
    rng = random.Random(7)
    for n in (2, 3, 19, 20, 101, 1000):
        values = sorted(rng.expovariate(1 / 30) for _ in range(n))
        cuts = statistics.quantiles(values, n=100, method="inclusive")
        for pct in range(1, 100):
            assert percentile(values, pct) == pytest.approx(cuts[pct - 1], rel=1e-12, abs=1e-12)


def test_percentile_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_latency_stats_and_aggregations() -> None:
    stats = LatencyStats.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert stats is not None
    assert (stats.count, stats.min, stats.max, stats.avg, stats.p50) == (5, 1.0, 5.0, 3.0, 3.0)
    assert stats.p95 == pytest.approx(4.8)
    assert stats.aggregate(parse_threshold("p(95)<10")) == pytest.approx(4.8)
    assert stats.aggregate(parse_threshold("p(12.5)<10")) == pytest.approx(1.5)
    assert stats.aggregate(parse_threshold("med<10")) == 3.0
    assert stats.aggregate(parse_threshold("avg<10")) == 3.0
    assert stats.aggregate(parse_threshold("min<10")) == 1.0
    assert stats.aggregate(parse_threshold("max<10")) == 5.0
    assert LatencyStats.of([]) is None


def test_histogram_equal_width_bins() -> None:
    bins = histogram([0.0, 1.0, 2.0, 9.9, 10.0], buckets=5)
    assert [round(upper, 6) for upper, _ in bins] == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert [count for _, count in bins] == [2, 1, 0, 0, 2]
    assert histogram([3.0, 3.0]) == [(3.0, 2)]
    assert histogram([]) == []


@pytest.mark.parametrize(
    ("text", "aggregation", "operator", "value", "canonical"),
    [
        ("p(95)<2000", "p(95)", "<", 2000.0, "p(95)<2000"),
        ("p(99.9) <= 4000", "p(99.9)", "<=", 4000.0, "p(99.9)<=4000"),
        (" p( 90 )>=1.5 ", "p(90)", ">=", 1.5, "p(90)>=1.5"),
        ("avg<200", "avg", "<", 200.0, "avg<200"),
        ("min>0", "min", ">", 0.0, "min>0"),
        ("max<4000", "max", "<", 4000.0, "max<4000"),
        ("med==.5", "med", "==", 0.5, "med==.5"),
        ("rate<0.01", "rate", "<", 0.01, "rate<0.01"),
        ("rate != 1", "rate", "!=", 1.0, "rate!=1"),
        ("p(0)<1", "p(0)", "<", 1.0, "p(0)<1"),
        ("p(100)<1", "p(100)", "<", 1.0, "p(100)<1"),
    ],
)
def test_parse_threshold(
    text: str, aggregation: str, operator: str, value: float, canonical: str
) -> None:
    t = parse_threshold(text)
    assert (t.aggregation, t.operator, t.value, t.text) == (aggregation, operator, value, canonical)
    assert t.on_latency is (aggregation != "rate")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "p95<2000",
        "p(95<2000",
        "p(101)<2000",
        "p(-1)<5",
        "p(95)",
        "p(95)=<2000",
        "p(95)<",
        "p(95)<2s",
        "p(95)<2000 and rate<0.01",
        "count<10",
        "rate<5",
        "latency<5",
        "P(95)<2000",
    ],
)
def test_bad_threshold_raises_bad_input_naming_it(text: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_threshold(text)
    assert repr(text) in caught.value.message


def test_operators() -> None:
    def t(op: str) -> Threshold:
        return parse_threshold(f"avg{op}10")

    assert t("<").holds(9) and not t("<").holds(10)
    assert t("<=").holds(10) and not t("<=").holds(10.5)
    assert t(">").holds(11) and not t(">").holds(10)
    assert t(">=").holds(10) and not t(">=").holds(9)
    assert t("==").holds(10) and not t("==").holds(9)
    assert t("!=").holds(9) and not t("!=").holds(10)
