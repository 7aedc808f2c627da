"""Service level objectives from the monitoring samples: availability, error budget, burn rate.

The SLI is request-based (SRE Workbook): each probe request is one ``http_error`` sample, 0
(good) or 1 (bad); availability = good / all. With an SLO of, say, 99.9 %:

- error budget = (1 - SLO) x requests: the bad requests the window can afford;
- budget left = 1 - bad / budget (negative once overspent);
- burn rate = error ratio / (1 - SLO); at 1 the budget lasts exactly the window. It is given
  over the whole window and over the last hour and six hours, beside the Workbook's paging
  thresholds (14.4 over 1 h, 6 over 6 h).

Response time is the interpolated p95 of ``latency_seconds``; the error rate is bad / all.
"""

from __future__ import annotations

from dataclasses import dataclass

# SRE Workbook table 5-6: page when the budget burns this fast over this window.
PAGE_BURN_RATES = {"1h": 14.4, "6h": 6.0}


@dataclass(frozen=True)
class Requests:
    """Counts of probe requests in a span: all of them and the bad ones."""

    total: int
    bad: int

    @property
    def error_ratio(self) -> float | None:
        return self.bad / self.total if self.total else None


@dataclass(frozen=True)
class Budget:
    slo_percent: float
    availability_percent: float | None
    allowed_errors: float
    budget_left_percent: float | None
    burn_rate: float | None
    burn_rate_1h: float | None
    burn_rate_6h: float | None


def burn_rate(requests: Requests, slo_percent: float) -> float | None:
    ratio = requests.error_ratio
    allowed = 1 - slo_percent / 100
    if ratio is None:
        return None
    if allowed <= 0:
        return None if ratio == 0 else float("inf")
    return ratio / allowed


def budget(window: Requests, last_1h: Requests, last_6h: Requests, slo_percent: float) -> Budget:
    """The window's availability and error budget against an SLO given in percent."""
    allowed = (1 - slo_percent / 100) * window.total
    ratio = window.error_ratio
    if not window.total:
        left = None
    elif allowed > 0:
        left = 100 * (1 - window.bad / allowed)
    else:
        left = 100.0 if window.bad == 0 else -100.0 * window.bad
    return Budget(
        slo_percent=slo_percent,
        availability_percent=None if ratio is None else 100 * (1 - ratio),
        allowed_errors=allowed,
        budget_left_percent=left,
        burn_rate=burn_rate(window, slo_percent),
        burn_rate_1h=burn_rate(last_1h, slo_percent),
        burn_rate_6h=burn_rate(last_6h, slo_percent),
    )
