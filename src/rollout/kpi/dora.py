"""DORA's delivery figures: definitions, the 2023 and 2024 performance tiers, and percentiles.

What is counted (every figure comes from rollout's own records, one environment, one window):

- A **production deployment** is a ``deploy`` record (not a ``rollback``) of the environment
  that reached its hosts: status ``succeeded`` or ``rolled_back``, dated by ``finished_at``.
  Each counts once, by id.
- **Deployment frequency** = deployments / weeks in the window, and the median number of
  deployment days per week over the window's whole weeks (weeks without any count as 0). A
  window reaching back before the environment's first recorded deployment (of any kind)
  counts from that record's UTC day instead, over at least a week (or the whole window if
  shorter): records that began yesterday are a day of deploying, not 90 days of few
  deployments. The other figures are rates of what was recorded (failed of deployments,
  percentiles of changes, errors of requests) and need no such cut.
- **Lead time for changes**, per change (a commit a deployment recorded in ``changes``: with
  ``--repo`` every commit since the previous deployment's, else the one given): from its
  commit, and from its merge, to the *first* production deployment that recorded it;
  redeploying it, shipping it again in a later range or rolling back to it does not count
  again. A change's commit and merge times are the earliest recorded for it. Median and p90,
  in minutes, never truncated.
- **Change failure rate** = deployments with at least one failure / deployments. A failure is
  any of: rolled back automatically (status ``rolled_back``), undone by a ``rollout rollback``
  (a rollback record whose ``rollback_of`` is the deployment), an incident recorded against it
  (``incidents.deployment_id``), or a **hotfix**: the next production deployment of the
  environment has "hotfix" in its tag or reason (case-insensitive), fixing this one forward.
  The **rollback rate** (the runbook's own definition) counts only the first two.
- **Failed deployment recovery time**, per incident recorded against a deployment: from
  ``impact_start`` (else ``detected_at``) to ``mitigated_at`` (else ``resolved_at``), per level.
- **Time to acknowledge**: ``detected_at`` to ``acknowledged_at``, per level, against the
  level's ``respond_within``; an incident never acknowledged counts as late.

Four Keys' and DevLake's known mistakes, and what this module does instead:

1. Four Keys takes recovery time in whole hours (``TIMESTAMP_DIFF(..., HOUR)``), so every
   incident under an hour is 0: we keep seconds and report minutes.
2. Four Keys' CFR numerator counts joined rows, so a deployment with several changes or
   several incidents counts several times: each deployment is one row here, failed or not,
   and each change one lead time, however many deployments recorded it.
3. Four Keys has no environment filter: every figure here is for one environment.
4. Four Keys drops lead times <= 0 silently and breaks on squash merges: a change's commit
   clock starts at the earlier of ``committed_at`` and ``merged_at`` (a squash commit is
   stamped at or after its merge, never meaningfully later), a negative span (clock skew) is
   left out and counted as such, and a zero span is kept.
5. DevLake ties an incident to the latest deployment before it, however long ago: we link
   only explicitly (the deployment the monitoring window was watching, or the one named).
6. DevLake's median is a lower median (``percent_rank() <= 0.5``): ours is interpolated, like
   ``PERCENTILE_CONT``.
7. Four Keys' and DevLake's buckets are fixed in code and out of date (2019, 2021): the 2023
   and 2024 tables are data below, and each figure shows its raw value beside its tier.
8. Four Keys credits a change to the deployment of its own push only, losing earlier commits;
   here a change is credited to the first production deployment that recorded its commit.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

HOUR = 3600.0
DAY = 24 * HOUR
WEEK = 7 * DAY
MONTH = 30 * DAY
PER_MONTH = 12 / 52  # deployments per week that make "once a month"


@dataclass(frozen=True)
class Band:
    """One tier of a table: a figure up to ``bound`` (lower is better) or from it (higher)."""

    tier: str
    bound: float


# Lower-is-better figures: the first band whose bound the value does not exceed (times are
# exclusive upper bounds, as DORA writes "less than one day"; rates are inclusive).
# Deployment frequency (higher is better, deployments per week): the first band reached.
# "On demand" (elite) is read as at least daily: 7 per week.
# Sources: DORA 2023 and 2024 reports via Octopus Deploy's summaries; DevLake confirms 2023 CFR.
TIERS: dict[int, dict[str, tuple[Band, ...]]] = {
    2023: {
        "deployment_frequency": (
            Band("elite", 7.0),
            Band("high", 1.0),
            Band("medium", PER_MONTH),
            Band("low", 0.0),
        ),
        "lead_time": (
            Band("elite", DAY),
            Band("high", WEEK),
            Band("medium", MONTH),
            Band("low", math.inf),
        ),
        "change_failure_rate": (
            Band("elite", 5.0),
            Band("high", 10.0),
            Band("medium", 15.0),
            Band("low", 100.0),
        ),
        "recovery_time": (
            Band("elite", HOUR),
            Band("high", DAY),
            Band("medium", WEEK),
            Band("low", math.inf),
        ),
    },
    # 2024 inverts High (20 %) and Medium (10 %) change failure rates and gives High and
    # Medium the same recovery time (< 1 day): read band by band, Medium is never reached on
    # those two figures alone. Kept as published.
    2024: {
        "deployment_frequency": (
            Band("elite", 7.0),
            Band("high", 1.0),
            Band("medium", PER_MONTH),
            Band("low", 0.0),
        ),
        "lead_time": (
            Band("elite", DAY),
            Band("high", WEEK),
            Band("medium", MONTH),
            Band("low", math.inf),
        ),
        "change_failure_rate": (
            Band("elite", 5.0),
            Band("high", 20.0),
            Band("medium", 10.0),
            Band("low", 100.0),
        ),
        "recovery_time": (
            Band("elite", HOUR),
            Band("high", DAY),
            Band("medium", DAY),
            Band("low", math.inf),
        ),
    },
}

_HIGHER_IS_BETTER = {"deployment_frequency"}
_INCLUSIVE = {"change_failure_rate"}


def tier(year: int, metric: str, value: float | None) -> str | None:
    """The DORA tier of ``value`` (seconds, percent or deployments per week) in ``year``."""
    if value is None:
        return None
    for band in TIERS[year][metric]:
        if metric in _HIGHER_IS_BETTER:
            if value >= band.bound:
                return band.tier
        elif value < band.bound or (metric in _INCLUSIVE and value <= band.bound):
            return band.tier
    return "low"


def tiers(metric: str, value: float | None) -> dict[str, str | None]:
    return {str(year): tier(year, metric, value) for year in sorted(TIERS)}


def interpolate(ordered: Sequence[tuple[int, float]], n: int, q: float) -> float | None:
    """The q-quantile of n sorted values, given the values at (some) 0-based ranks.

    Linear interpolation between ranks floor(q(n-1)) and the next, like PERCENTILE_CONT;
    ``ordered`` must hold those two ranks (the loader fetches only the ranks around q).
    """
    if n <= 0:
        return None
    at = dict(ordered)
    position = q * (n - 1)
    low = math.floor(position)
    high = min(low + 1, n - 1)
    return at[low] + (position - low) * (at[high] - at[low])


def percentile(values: Sequence[float], q: float) -> float | None:
    """The interpolated q-quantile of ``values`` (for callers holding the values)."""
    ordered = sorted(values)
    return interpolate(list(enumerate(ordered)), len(ordered), q)


def median_days_per_week(days: Sequence[int], last_day: int, weeks: int) -> float:
    """The median count of deployment days per 7-day week, counted back from ``last_day``.

    ``days`` are day numbers (days since 1970-01-01, UTC) with at least one deployment; the
    window's ``weeks`` whole weeks end with ``last_day``; a week without any counts as 0.
    """
    counts = [0] * max(weeks, 1)
    for day in days:
        week = (last_day - day) // 7
        if 0 <= week < len(counts):
            counts[week] += 1
    value = percentile([float(c) for c in counts], 0.5)
    return value if value is not None else 0.0


_FREQUENCY_WORDS = {"daily": 5.0, "weekly": 1.0, "monthly": PER_MONTH}
_FREQUENCY_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/|per)\s*(day|week|month)\s*$")
_PER_WEEK = {"day": 7.0, "week": 1.0, "month": PER_MONTH}


def frequency_target(text: str) -> float:
    """Deployments per week that ``kpi.targets.deployment_frequency`` asks for.

    "daily" means every working day (5 a week), "weekly" 1, "monthly" 12/52; or "N/day",
    "N/week", "N per month".
    """
    word = text.strip().lower()
    if word in _FREQUENCY_WORDS:
        return _FREQUENCY_WORDS[word]
    found = _FREQUENCY_RATE.match(word)
    if found is None:
        raise ValueError(
            f"deployment_frequency {text!r}: use daily, weekly, monthly or N/day|week|month"
        )
    return float(found.group(1)) * _PER_WEEK[found.group(2)]
