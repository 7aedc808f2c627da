"""The judge of the monitoring window: measurements in, decisions out, no I/O.

Three judges, each returning a value that carries the numbers and thresholds behind it, so the
caller can record why it decided (reference/progressive-delivery.md §5.7 and §7.6):

**Thresholds, by Argo Rollouts' rules** (``MetricRule``, ``MetricJudge``, ``judge_run``).
One measurement is judged against a failure and/or a success condition: an error or a NaN is
ERROR, no data is INCONCLUSIVE (never healthy), the failure condition holding is FAILED,
neither holding is INCONCLUSIVE, otherwise SUCCESSFUL; with one condition given, the other is
its negation. Per metric, ``failure_limit`` (default 0), ``inconclusive_limit`` (default 0) and
``consecutive_error_limit`` (default 4) trip when their count goes *over* the limit; -1
disables a limit. The run takes the worst metric: SUCCESSFUL < RUNNING < INCONCLUSIVE < ERROR
< FAILED. INCONCLUSIVE pauses for a person; ERROR and FAILED abort.

Where rollout departs from Argo, on purpose:

- A metric with no condition is refused (Argo counts it as successful): a rule that cannot fail
  guards nothing.
- An empty result (``Measurement(None)``) is INCONCLUSIVE. Argo leaves this to the condition
  (``len(result) > 0 && ...``); here no data is never healthy (Flagger's most reported issue).
- When several limits trip at once the worst wins (Argo lets the last one checked win), so a
  metric over its failure limit is never softened into a pause.
- When the window ends (``final=True``) a metric that is still running is SUCCESSFUL, as in
  Argo, but only if it had at least one successful measurement; otherwise INCONCLUSIVE.

**SLO burn rate** (``evaluate_burn``). Burn rate = error ratio / (1 - SLO). A rule of the SRE
workbook's multi-window, multi-burn-rate table fires when both its long and its short window
burn faster than its rate: page at 14.4x over 1 h and 5 min, page at 6x over 6 h and 30 min,
ticket at 1x over 3 d and 6 h (``SRE_BURN_RULES``; ``burn_rule`` builds others, such as
sloth's 3x over 1 d and 2 h ticket). ``scale_rules`` divides every window by a factor for a
monitoring window shorter than the table's.

**Baseline comparison, Kayenta-style** (``classify``, ``score``, ``compare``). Per metric, the
previous release's samples (baseline) against the new release's (canary) by the Mann-Whitney U
test (scipy), one-sided by the metric's direction; a significant difference counts only if the
ratio of medians also passes the metric's allowed increase or decrease. Each metric is PASS,
HIGH, LOW or NODATA; the score is 100 x the weighted share of passing metrics; PASS at or above
95, MARGINAL at or above 75, FAIL below, and a failing critical metric fails the whole
comparison. Where it departs from Kayenta: NODATA counts as not passing in the score (Kayenta
leaves it out, so missing data can raise the score), the default allowed change is 10 % of the
median (Kayenta's is 1.0, any change), and the test is the p-value of the one- or two-sided test
rather than Kayenta's confidence interval of the shift.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from enum import StrEnum

from rollout.errors import BadInput

# --------------------------------------------------------------------------------------------
# Decisions


class Action(StrEnum):
    """What the caller should do about a verdict."""

    PROCEED = "proceed"  # healthy: keep the release
    CONTINUE = "continue"  # nothing decided yet: keep measuring
    PAUSE = "pause"  # inconclusive: stop moving, notify a person
    ABORT = "abort"  # failed or errored: roll back


class AnalysisPhase(StrEnum):
    """The phase of a measurement, a metric or a run, declared from best to worst."""

    SUCCESSFUL = "successful"
    RUNNING = "running"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"
    FAILED = "failed"

    @property
    def action(self) -> Action:
        return _PHASE_ACTIONS[self]


_PHASE_ACTIONS = {
    AnalysisPhase.SUCCESSFUL: Action.PROCEED,
    AnalysisPhase.RUNNING: Action.CONTINUE,
    AnalysisPhase.INCONCLUSIVE: Action.PAUSE,
    AnalysisPhase.ERROR: Action.ABORT,
    AnalysisPhase.FAILED: Action.ABORT,
}
_PHASE_ORDER = tuple(AnalysisPhase)


def worst(phases: Iterable[AnalysisPhase]) -> AnalysisPhase:
    """The worst of ``phases`` (SUCCESSFUL when there are none)."""
    return max(phases, key=_PHASE_ORDER.index, default=AnalysisPhase.SUCCESSFUL)


# --------------------------------------------------------------------------------------------
# Thresholds, by Argo Rollouts' rules


class Op(StrEnum):
    LT = "<"
    LE = "<="
    GT = ">"
    GE = ">="
    EQ = "=="
    NE = "!="


_COMPARE: dict[Op, Callable[[float, float], bool]] = {
    Op.LT: operator.lt,
    Op.LE: operator.le,
    Op.GT: operator.gt,
    Op.GE: operator.ge,
    Op.EQ: operator.eq,
    Op.NE: operator.ne,
}
_NEGATION = {Op.LT: Op.GE, Op.LE: Op.GT, Op.GT: Op.LE, Op.GE: Op.LT, Op.EQ: Op.NE, Op.NE: Op.EQ}
_CONDITION = re.compile(
    r"\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)


@dataclass(frozen=True)
class Condition:
    """``value <op> threshold``, e.g. ``Condition(Op.GE, 2.0)`` for "p95 at or above 2 s"."""

    op: Op
    threshold: float

    def __post_init__(self) -> None:
        if math.isnan(self.threshold):
            raise BadInput("a condition's threshold is NaN", hint="give a number")

    @classmethod
    def parse(cls, text: str) -> Condition:
        """``">= 0.01"`` -> ``Condition(Op.GE, 0.01)``."""
        match = _CONDITION.fullmatch(text)
        if match is None:
            raise BadInput(
                f"not a condition: {text!r}", hint="an operator and a number, e.g. '>= 0.01'"
            )
        return cls(Op(match["op"]), float(match["number"]))

    def holds(self, value: float) -> bool:
        return _COMPARE[self.op](value, self.threshold)

    def negated(self) -> Condition:
        return Condition(_NEGATION[self.op], self.threshold)

    def __str__(self) -> str:
        return f"{self.op} {self.threshold:g}"


@dataclass(frozen=True)
class Measurement:
    """One reading of one metric: a value, no data (``value=None``), or an error."""

    value: float | None
    error: str | None = None


@dataclass(frozen=True)
class MeasurementVerdict:
    """How one measurement was judged, and by which condition."""

    phase: AnalysisPhase
    value: float | None
    condition: Condition | None
    reason: str


@dataclass(frozen=True)
class MetricRule:
    """One metric's conditions and limits (Argo's ``successCondition``, ``failureLimit``...).

    ``count``: the number of measurements after which the metric is done (SUCCESSFUL unless a
    limit tripped); None keeps it RUNNING until the window ends.
    """

    name: str
    failure: Condition | None = None
    success: Condition | None = None
    failure_limit: int = 0
    inconclusive_limit: int = 0
    consecutive_error_limit: int = 4
    count: int | None = None

    def __post_init__(self) -> None:
        if self.failure is None and self.success is None:
            raise BadInput(
                f"metric {self.name!r} has no condition",
                hint="give a failure condition (e.g. '>= 2') or a success condition, or both",
            )
        for limit in ("failure_limit", "inconclusive_limit", "consecutive_error_limit"):
            if getattr(self, limit) < -1:
                raise BadInput(
                    f"metric {self.name!r}: {limit} is {getattr(self, limit)}",
                    hint="a count of 0 or more, or -1 to disable the limit",
                )
        if self.count is not None and self.count < 1:
            raise BadInput(f"metric {self.name!r}: count is {self.count}", hint="1 or more")

    @property
    def failure_condition(self) -> Condition:
        """The failure condition, or the negation of the success condition."""
        if self.failure is not None:
            return self.failure
        assert self.success is not None  # __post_init__ refuses neither
        return self.success.negated()

    @property
    def success_condition(self) -> Condition:
        """The success condition, or the negation of the failure condition."""
        if self.success is not None:
            return self.success
        return self.failure_condition.negated()


def judge_measurement(rule: MetricRule, measurement: Measurement) -> MeasurementVerdict:
    """Judge one measurement against ``rule``'s conditions (Argo's evaluation order)."""
    value = measurement.value
    if measurement.error is not None:
        return MeasurementVerdict(AnalysisPhase.ERROR, value, None, f"error: {measurement.error}")
    if value is None:
        return MeasurementVerdict(AnalysisPhase.INCONCLUSIVE, None, None, "no data")
    if math.isnan(value):
        return MeasurementVerdict(AnalysisPhase.ERROR, value, None, "the value is NaN")
    failure, success = rule.failure_condition, rule.success_condition
    if failure.holds(value):
        reason = f"{value:g} {failure}: failure condition"
        return MeasurementVerdict(AnalysisPhase.FAILED, value, failure, reason)
    if not success.holds(value):
        reason = f"{value:g} meets neither success ({success}) nor failure ({failure})"
        return MeasurementVerdict(AnalysisPhase.INCONCLUSIVE, value, success, reason)
    reason = f"{value:g} {success}: success condition"
    return MeasurementVerdict(AnalysisPhase.SUCCESSFUL, value, success, reason)


@dataclass(frozen=True)
class Counts:
    """A metric's measurements so far. Any non-error measurement resets ``consecutive_errors``."""

    measured: int = 0
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    error: int = 0
    consecutive_errors: int = 0

    def add(self, phase: AnalysisPhase) -> Counts:
        counts = replace(self, measured=self.measured + 1)
        if phase is AnalysisPhase.ERROR:
            return replace(
                counts, error=self.error + 1, consecutive_errors=self.consecutive_errors + 1
            )
        counts = replace(counts, consecutive_errors=0)
        if phase is AnalysisPhase.FAILED:
            return replace(counts, failed=self.failed + 1)
        if phase is AnalysisPhase.INCONCLUSIVE:
            return replace(counts, inconclusive=self.inconclusive + 1)
        return replace(counts, successful=self.successful + 1)


@dataclass(frozen=True)
class MetricVerdict:
    """One metric's phase, the counts and limit that made it, and its last measurement."""

    name: str
    phase: AnalysisPhase
    counts: Counts
    reason: str
    last: MeasurementVerdict | None = None

    @property
    def action(self) -> Action:
        return self.phase.action


def _tripped(rule: MetricRule, counts: Counts) -> list[tuple[AnalysisPhase, str]]:
    """The limits ``counts`` is over, each with its phase and the numbers."""
    limits = (
        (AnalysisPhase.FAILED, "failed", counts.failed, "failure_limit", rule.failure_limit),
        (
            AnalysisPhase.INCONCLUSIVE,
            "inconclusive",
            counts.inconclusive,
            "inconclusive_limit",
            rule.inconclusive_limit,
        ),
        (
            AnalysisPhase.ERROR,
            "consecutive errors",
            counts.consecutive_errors,
            "consecutive_error_limit",
            rule.consecutive_error_limit,
        ),
    )
    return [
        (phase, f"{what} {count} > {name} {limit}")
        for phase, what, count, name, limit in limits
        if limit >= 0 and count > limit
    ]


def assess_metric(rule: MetricRule, counts: Counts, *, final: bool = False) -> MetricVerdict:
    """The phase of a metric with ``counts``; ``final`` when the monitoring window has ended."""
    tripped = _tripped(rule, counts)
    if tripped:
        tripped.sort(key=lambda item: _PHASE_ORDER.index(item[0]), reverse=True)
        reason = "; ".join(why for _, why in tripped)
        return MetricVerdict(rule.name, tripped[0][0], counts, reason)
    if rule.count is not None and counts.measured >= rule.count:
        reason = f"{counts.measured} of {rule.count} measurements, no limit exceeded"
        return MetricVerdict(rule.name, AnalysisPhase.SUCCESSFUL, counts, reason)
    if not final:
        reason = f"{counts.measured} measurements so far, no limit exceeded"
        return MetricVerdict(rule.name, AnalysisPhase.RUNNING, counts, reason)
    if counts.successful == 0:
        reason = f"the window ended without a successful measurement ({counts.measured} taken)"
        return MetricVerdict(rule.name, AnalysisPhase.INCONCLUSIVE, counts, reason)
    reason = f"the window ended after {counts.measured} measurements, no limit exceeded"
    return MetricVerdict(rule.name, AnalysisPhase.SUCCESSFUL, counts, reason)


class MetricJudge:
    """Judges one metric's measurements as they come.

    Once the metric is done (a limit tripped, or ``count`` reached) its phase stays: Argo stops
    measuring a metric there, and a later success must not undo an abort. Measurements added
    after that are still judged and counted, but do not change the phase.
    """

    def __init__(self, rule: MetricRule) -> None:
        self.rule = rule
        self._counts = Counts()
        self._last: MeasurementVerdict | None = None
        self._done: MetricVerdict | None = None

    def add(self, measurement: Measurement) -> MeasurementVerdict:
        """Judge ``measurement`` and count it."""
        judged = judge_measurement(self.rule, measurement)
        self._counts = self._counts.add(judged.phase)
        self._last = judged
        if self._done is None:
            verdict = assess_metric(self.rule, self._counts)
            if verdict.phase is not AnalysisPhase.RUNNING:
                self._done = replace(verdict, last=judged)
        return judged

    @property
    def counts(self) -> Counts:
        return self._counts

    @property
    def done(self) -> bool:
        return self._done is not None

    @property
    def phase(self) -> AnalysisPhase:
        return self.verdict().phase

    def verdict(self, *, final: bool = False) -> MetricVerdict:
        """The metric's verdict now; ``final`` when the monitoring window has ended."""
        if self._done is not None:
            return self._done
        return replace(assess_metric(self.rule, self._counts, final=final), last=self._last)


@dataclass(frozen=True)
class RunVerdict:
    """The run's phase (the worst metric's) with every metric's verdict."""

    phase: AnalysisPhase
    metrics: tuple[MetricVerdict, ...]
    reason: str

    @property
    def action(self) -> Action:
        return self.phase.action


def assess_run(verdicts: Iterable[MetricVerdict]) -> RunVerdict:
    """The run's verdict from its metrics' verdicts; a run without metrics is INCONCLUSIVE."""
    metrics = tuple(verdicts)
    if not metrics:
        return RunVerdict(AnalysisPhase.INCONCLUSIVE, (), "no metric to judge")
    phase = worst(m.phase for m in metrics)
    if phase is AnalysisPhase.SUCCESSFUL:
        return RunVerdict(phase, metrics, f"all {len(metrics)} metrics successful")
    reasons = [f"{m.name} {m.phase}: {m.reason}" for m in metrics if m.phase is phase]
    return RunVerdict(phase, metrics, "; ".join(reasons))


def judge_run(
    rules: Sequence[MetricRule],
    measurements: Mapping[str, Sequence[Measurement]],
    *,
    final: bool = False,
) -> RunVerdict:
    """Judge every metric's measurements, in order, and the run; ``final`` when the window ended.

    A metric without measurements is RUNNING (INCONCLUSIVE when ``final``); measurements of a
    metric that has no rule are refused, so a misspelt name cannot go unjudged.
    """
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise BadInput(f"metric names repeat: {names}", hint="give each metric one rule")
    unknown = sorted(set(measurements) - set(names))
    if unknown:
        raise BadInput(f"measurements of metrics without a rule: {unknown}", hint=f"{names}")
    judges = [MetricJudge(rule) for rule in rules]
    for judge in judges:
        for measurement in measurements.get(judge.rule.name, ()):
            judge.add(measurement)
    return assess_run(judge.verdict(final=final) for judge in judges)


# --------------------------------------------------------------------------------------------
# SLO burn rate, by the SRE workbook's multi-window, multi-burn-rate alerts


class Severity(StrEnum):
    PAGE = "page"
    TICKET = "ticket"


SLO_PERIOD = timedelta(days=30)


@dataclass(frozen=True)
class BurnRule:
    """Fires when both windows burn the error budget faster than ``burn_rate``.

    ``budget_consumed``: the share of the period's budget that burning at ``burn_rate`` for the
    whole long window spends (documentation: it is how the rate was chosen).
    """

    severity: Severity
    long_window: timedelta
    short_window: timedelta
    burn_rate: float
    budget_consumed: float

    def __str__(self) -> str:
        return (
            f"{self.severity} at {self.burn_rate:g}x over {_span(self.long_window)}"
            f" and {_span(self.short_window)}"
        )


def burn_rule(
    severity: Severity,
    budget_consumed: float,
    long_window: timedelta,
    short_window: timedelta,
    period: timedelta = SLO_PERIOD,
) -> BurnRule:
    """A rule whose rate spends ``budget_consumed`` of ``period``'s budget in ``long_window``.

    The workbook's formula: rate = budget x period / long window (0.02 x 720 h / 1 h = 14.4).
    Sloth's extra ticket tier, for one: ``burn_rule(Severity.TICKET, 0.10, 1 day, 2 hours)``, 3x.
    """
    rate = budget_consumed * (period / long_window)
    return BurnRule(severity, long_window, short_window, round(rate, 6), budget_consumed)


SRE_BURN_RULES = (
    BurnRule(Severity.PAGE, timedelta(hours=1), timedelta(minutes=5), 14.4, 0.02),
    BurnRule(Severity.PAGE, timedelta(hours=6), timedelta(minutes=30), 6.0, 0.05),
    BurnRule(Severity.TICKET, timedelta(days=3), timedelta(hours=6), 1.0, 0.10),
)
"""The SRE workbook's table for a 30-day SLO (reference/progressive-delivery.md §4)."""


def scale_rules(rules: Iterable[BurnRule], factor: float) -> tuple[BurnRule, ...]:
    """``rules`` with every window divided by ``factor``; rates unchanged.

    For a monitoring window much shorter than the table's (30 minutes after a release cannot
    measure 3 days). ``scale_rules(SRE_BURN_RULES, 12)`` pages at 14.4x over 5 min and 25 s,
    at 6x over 30 min and 2.5 min, and tickets at 1x over 6 h and 30 min. The rates keep their
    meaning as a pace (14.4x spends a 30-day budget in 50 hours) but no longer the budget share
    in ``budget_consumed``, and shorter windows hold fewer requests, so each ratio is noisier:
    scale only as far as the traffic allows.
    """
    if not factor > 0:
        raise BadInput(f"window scale factor {factor}", hint="a positive number, e.g. 12")
    return tuple(
        replace(
            rule, long_window=rule.long_window / factor, short_window=rule.short_window / factor
        )
        for rule in rules
    )


def windows(rules: Iterable[BurnRule]) -> tuple[timedelta, ...]:
    """Every window ``rules`` read, shortest first: the error ratios ``evaluate_burn`` needs."""
    return tuple(sorted({w for rule in rules for w in (rule.long_window, rule.short_window)}))


def burn_rate(error_ratio: float, slo: float) -> float:
    """How many times faster than the SLO allows the budget is spent: ratio / (1 - SLO)."""
    _check_slo(slo)
    if not 0 <= error_ratio <= 1:
        raise BadInput(f"error ratio {error_ratio}", hint="a ratio from 0 to 1: 2 % is 0.02")
    return error_ratio / (1 - slo)


def _check_slo(slo: float) -> None:
    if not 0 < slo < 1:
        raise BadInput(f"SLO {slo}", hint="a ratio between 0 and 1: 99.9 % is 0.999")


@dataclass(frozen=True)
class BurnCheck:
    """One rule applied: the two windows' error ratios and burn rates, and whether it fired."""

    rule: BurnRule
    long_ratio: float
    short_ratio: float
    long_burn: float
    short_burn: float

    @property
    def fired(self) -> bool:
        return self.long_burn > self.rule.burn_rate and self.short_burn > self.rule.burn_rate

    @property
    def reason(self) -> str:
        verdict = "fired" if self.fired else "quiet"
        return (
            f"{self.rule}: {verdict}, burn {self.long_burn:.3g}x over"
            f" {_span(self.rule.long_window)} ({self.long_ratio:.3%} errors),"
            f" {self.short_burn:.3g}x over {_span(self.rule.short_window)}"
            f" ({self.short_ratio:.3%} errors)"
        )


@dataclass(frozen=True)
class BurnVerdict:
    """Every rule checked, the rules whose windows had no ratio, and what fired."""

    slo: float
    checks: tuple[BurnCheck, ...]
    unmeasured: tuple[BurnRule, ...] = ()

    @property
    def fired(self) -> tuple[BurnCheck, ...]:
        return tuple(check for check in self.checks if check.fired)

    @property
    def severity(self) -> Severity | None:
        """PAGE if a page rule fired, else TICKET if a ticket rule did, else None."""
        severities = {check.rule.severity for check in self.fired}
        return next((s for s in Severity if s in severities), None)

    @property
    def reason(self) -> str:
        parts = [check.reason for check in self.fired] or ["no rule fired"]
        parts += [f"{rule}: not measured" for rule in self.unmeasured]
        return f"SLO {self.slo:.3%}: " + "; ".join(parts)


def evaluate_burn(
    slo: float,
    error_ratios: Mapping[timedelta, float | None],
    rules: Iterable[BurnRule] = SRE_BURN_RULES,
) -> BurnVerdict:
    """Apply ``rules`` to the error ratios measured over each window (``windows(rules)``).

    A rule with a window missing from ``error_ratios``, or measured as None or NaN (no requests),
    is listed as unmeasured, never as quiet.
    """
    _check_slo(slo)
    checks: list[BurnCheck] = []
    unmeasured: list[BurnRule] = []
    for rule in rules:
        long_ratio = error_ratios.get(rule.long_window)
        short_ratio = error_ratios.get(rule.short_window)
        if long_ratio is None or short_ratio is None or math.isnan(long_ratio + short_ratio):
            unmeasured.append(rule)
            continue
        long_burn, short_burn = burn_rate(long_ratio, slo), burn_rate(short_ratio, slo)
        checks.append(BurnCheck(rule, long_ratio, short_ratio, long_burn, short_burn))
    return BurnVerdict(slo, tuple(checks), tuple(unmeasured))


def _span(window: timedelta) -> str:
    """``1h``, ``5m``, ``3d``, ``25s``, ``2.5m``."""
    seconds = window.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:g}{unit}"
    return f"{seconds:g}s"


# --------------------------------------------------------------------------------------------
# Baseline comparison, Kayenta-style


class Direction(StrEnum):
    """Which change of a metric is bad."""

    INCREASE = "increase"  # latency, errors
    DECREASE = "decrease"  # throughput, sign-ins
    EITHER = "either"


class Classification(StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    HIGH = "high"
    LOW = "low"
    NODATA = "nodata"


@dataclass(frozen=True)
class BaselineMetric:
    """How to compare one metric between the previous release and the new one.

    ``allowed_increase`` / ``allowed_decrease``: a significant change counts only when the
    ratio of medians (canary / baseline) is at or beyond it, so a real but tiny shift passes.
    ``group`` (default: the metric's own name) is the unit the score weighs.
    """

    name: str
    direction: Direction = Direction.EITHER
    critical: bool = False
    allowed_increase: float = 1.1
    allowed_decrease: float = 0.9
    min_samples: int = 10
    group: str | None = None

    def __post_init__(self) -> None:
        if not self.allowed_increase >= 1:
            raise BadInput(
                f"metric {self.name!r}: allowed_increase {self.allowed_increase}",
                hint="a ratio of 1 or more: 1.1 lets the median grow by 10 %",
            )
        if not 0 < self.allowed_decrease <= 1:
            raise BadInput(
                f"metric {self.name!r}: allowed_decrease {self.allowed_decrease}",
                hint="a ratio above 0 and up to 1: 0.9 lets the median drop by 10 %",
            )
        if self.min_samples < 3:
            raise BadInput(f"metric {self.name!r}: min_samples {self.min_samples}", hint=">= 3")

    @property
    def group_name(self) -> str:
        return self.group if self.group is not None else self.name


@dataclass(frozen=True)
class MetricComparison:
    """One metric's classification with the numbers behind it.

    ``effect`` is canary median / baseline median (NaN when the baseline median is not
    positive: then the test alone decides, as in Kayenta). ``shift`` is the Hodges-Lehmann
    estimate: the median of every canary - baseline difference.
    """

    metric: BaselineMetric
    classification: Classification
    reason: str
    baseline_n: int
    canary_n: int
    alpha: float
    baseline_median: float | None = None
    canary_median: float | None = None
    effect: float | None = None
    shift: float | None = None
    p_value: float | None = None

    @property
    def failed(self) -> bool:
        return self.classification in (Classification.HIGH, Classification.LOW)


_ALTERNATIVE = {
    Direction.INCREASE: "greater",
    Direction.DECREASE: "less",
    Direction.EITHER: "two-sided",
}


def classify(
    metric: BaselineMetric,
    baseline: Sequence[float],
    canary: Sequence[float],
    *,
    confidence: float = 0.95,
) -> MetricComparison:
    """Compare ``canary`` samples with ``baseline`` samples by Mann-Whitney U (NaNs dropped)."""
    if not 0 < confidence < 1:
        raise BadInput(f"confidence {confidence}", hint="between 0 and 1, e.g. 0.95")
    alpha = round(1 - confidence, 12)
    base = [x for x in baseline if not math.isnan(x)]
    new = [x for x in canary if not math.isnan(x)]
    if min(len(base), len(new)) < metric.min_samples:
        reason = (
            f"{len(base)} baseline and {len(new)} canary samples;"
            f" at least {metric.min_samples} of each are needed"
        )
        return MetricComparison(metric, Classification.NODATA, reason, len(base), len(new), alpha)
    numbers = _effect_sizes(base, new)
    statistic, p_value = _mann_whitney_u(new, base, _ALTERNATIVE[metric.direction])
    higher = statistic > len(new) * len(base) / 2  # the canary's values rank above the baseline's
    classification, reason = _decide(metric, p_value, alpha, higher, numbers["effect"])
    return MetricComparison(
        metric, classification, reason, len(base), len(new), alpha, **numbers, p_value=p_value
    )


def _decide(
    metric: BaselineMetric, p_value: float, alpha: float, higher: bool, effect: float
) -> tuple[Classification, str]:
    test = f"p={p_value:.3g} (alpha {alpha:.3g}), median x{effect:.3g}"
    if not p_value < alpha:
        return Classification.PASS, f"no significant difference: {test}"
    if higher and metric.direction is not Direction.DECREASE:
        if math.isnan(effect) or effect >= metric.allowed_increase:
            return Classification.HIGH, f"higher than the baseline: {test}"
        return (
            Classification.PASS,
            f"significant but under allowed x{metric.allowed_increase:g}: {test}",
        )
    if not higher and metric.direction is not Direction.INCREASE:
        if math.isnan(effect) or effect <= metric.allowed_decrease:
            return Classification.LOW, f"lower than the baseline: {test}"
        return (
            Classification.PASS,
            f"significant but above allowed x{metric.allowed_decrease:g}: {test}",
        )
    return Classification.PASS, f"changed in the harmless direction: {test}"


def _effect_sizes(baseline: Sequence[float], canary: Sequence[float]) -> dict[str, float]:
    import numpy as np  # lazily: most commands never compare

    base, new = np.asarray(baseline, dtype=float), np.asarray(canary, dtype=float)
    base_median, new_median = float(np.median(base)), float(np.median(new))
    effect = new_median / base_median if base_median > 0 else math.nan
    # Hodges-Lehmann on at most 1000 x 1000 differences: evenly spaced order statistics of
    # larger samples keep the estimate and bound the memory (8 MB instead of n x m floats)
    thin_new, thin_base = (
        np.quantile(a, np.linspace(0, 1, min(a.size, 1000))) for a in (new, base)
    )
    shift = float(np.median(np.subtract.outer(thin_new, thin_base)))
    return {
        "baseline_median": base_median,
        "canary_median": new_median,
        "effect": effect,
        "shift": shift,
    }


def _mann_whitney_u(
    x: Sequence[float], y: Sequence[float], alternative: str
) -> tuple[float, float]:
    """x's U statistic and the p-value (exact for small samples without ties, else asymptotic
    with tie correction and continuity correction)."""
    from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]  # slow: import lazily

    result = mannwhitneyu(x, y, alternative=alternative)
    return float(result.statistic), float(result.pvalue)


class ComparisonResult(StrEnum):
    PASS = "pass"  # noqa: S105 (a verdict, not a password)
    MARGINAL = "marginal"
    FAIL = "fail"
    NODATA = "nodata"

    @property
    def action(self) -> Action:
        return _RESULT_ACTIONS[self]


_RESULT_ACTIONS = {
    ComparisonResult.PASS: Action.PROCEED,
    ComparisonResult.MARGINAL: Action.PAUSE,
    ComparisonResult.NODATA: Action.PAUSE,
    ComparisonResult.FAIL: Action.ABORT,
}


@dataclass(frozen=True)
class BaselineVerdict:
    """The comparison's result, its score, and every metric's classification."""

    result: ComparisonResult
    score: float
    reason: str
    metrics: tuple[MetricComparison, ...]
    group_scores: dict[str, float] = field(default_factory=dict)
    pass_threshold: float = 95.0
    marginal_threshold: float = 75.0

    @property
    def action(self) -> Action:
        return self.result.action


def score(
    comparisons: Iterable[MetricComparison],
    *,
    weights: Mapping[str, float] | None = None,
    pass_threshold: float = 95.0,
    marginal_threshold: float = 75.0,
) -> BaselineVerdict:
    """Score classified metrics, Kayenta-style.

    Group score = 100 x passing / all metrics of the group (NODATA counts as not passing). The
    score is the groups' weighted mean (``weights`` per group, relative; default equal), rounded
    to 2 decimals. A failing critical metric is FAIL whatever the score; else NODATA when half or
    more of the metrics have no data; else PASS at ``pass_threshold``, MARGINAL at
    ``marginal_threshold``, FAIL below.
    """
    if not 0 <= marginal_threshold <= pass_threshold <= 100:
        raise BadInput(
            f"thresholds pass {pass_threshold}, marginal {marginal_threshold}",
            hint="0 <= marginal <= pass <= 100, e.g. 95 and 75",
        )
    metrics = tuple(comparisons)
    if not metrics:
        return BaselineVerdict(
            ComparisonResult.NODATA,
            0.0,
            "no metric to compare",
            (),
            {},
            pass_threshold,
            marginal_threshold,
        )
    group_scores = _group_scores(metrics)
    total = _weighted(group_scores, weights)
    result, reason = _classify_score(metrics, total, pass_threshold, marginal_threshold)
    return BaselineVerdict(
        result, total, reason, metrics, group_scores, pass_threshold, marginal_threshold
    )


def _group_scores(metrics: Sequence[MetricComparison]) -> dict[str, float]:
    groups: dict[str, list[bool]] = {}
    for m in metrics:
        groups.setdefault(m.metric.group_name, []).append(m.classification is Classification.PASS)
    return {name: 100 * sum(passed) / len(passed) for name, passed in groups.items()}


def _weighted(group_scores: Mapping[str, float], weights: Mapping[str, float] | None) -> float:
    if weights is None:
        weights = dict.fromkeys(group_scores, 1.0)
    if set(weights) != set(group_scores):
        raise BadInput(
            f"weights name groups {sorted(weights)}, the metrics have {sorted(group_scores)}",
            hint="give every group a weight, or none to weigh them equally",
        )
    if any(not w > 0 for w in weights.values()):
        raise BadInput(f"weights {dict(weights)}", hint="every weight above 0")
    total = sum(weights.values())
    return round(sum(s * weights[g] / total for g, s in group_scores.items()), 2)


def _classify_score(
    metrics: Sequence[MetricComparison], total: float, pass_at: float, marginal_at: float
) -> tuple[ComparisonResult, str]:
    critical = [m.metric.name for m in metrics if m.failed and m.metric.critical]
    if critical:
        return (
            ComparisonResult.FAIL,
            f"critical metric failed: {', '.join(critical)} (score {total:g})",
        )
    nodata = [m.metric.name for m in metrics if m.classification is Classification.NODATA]
    if 2 * len(nodata) >= len(metrics):
        return (
            ComparisonResult.NODATA,
            f"no data for {len(nodata)} of {len(metrics)} metrics: {', '.join(nodata)}",
        )
    failing = [
        f"{m.metric.name} {m.classification}"
        for m in metrics
        if m.classification is not Classification.PASS
    ]
    detail = f" ({', '.join(failing)})" if failing else ""
    if total >= pass_at:
        return ComparisonResult.PASS, f"score {total:g} >= pass {pass_at:g}{detail}"
    if total >= marginal_at:
        return (
            ComparisonResult.MARGINAL,
            f"score {total:g} >= marginal {marginal_at:g} < pass {pass_at:g}{detail}",
        )
    return ComparisonResult.FAIL, f"score {total:g} < marginal {marginal_at:g}{detail}"


def compare(
    metrics: Sequence[BaselineMetric],
    baseline: Mapping[str, Sequence[float]],
    canary: Mapping[str, Sequence[float]],
    *,
    confidence: float = 0.95,
    weights: Mapping[str, float] | None = None,
    pass_threshold: float = 95.0,
    marginal_threshold: float = 75.0,
) -> BaselineVerdict:
    """Classify every metric (samples missing from a mapping are none: NODATA) and score them."""
    names = [m.name for m in metrics]
    if len(set(names)) != len(names):
        raise BadInput(f"metric names repeat: {names}", hint="compare each metric once")
    comparisons = [
        classify(m, baseline.get(m.name, ()), canary.get(m.name, ()), confidence=confidence)
        for m in metrics
    ]
    return score(
        comparisons,
        weights=weights,
        pass_threshold=pass_threshold,
        marginal_threshold=marginal_threshold,
    )
