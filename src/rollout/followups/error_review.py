"""Error review: the users' error rate since the switch against ``kpi.targets.error_rate``,
with where the errors were (path and status, host) and what the failed requests said."""

from __future__ import annotations

from collections import Counter

from rollout.followups.evidence import Evidence
from rollout.followups.finding import Finding

SHOWN = 5  # the most frequent of each breakdown


def review(after: Evidence, target_percent: float) -> Finding:
    rate = after.error_rate
    if rate is None:
        return Finding(
            "inconclusive",
            "no probe requests recorded since the switch",
            {"after": after.summary(), "target_percent": target_percent},
        )
    where = Counter(
        f"{s.labels.get('path', '?')} {s.labels.get('status', 'no answer')}" for s in after.failures
    )
    hosts = Counter(s.host or "?" for s in after.failures)
    said = Counter(s.labels["error"] for s in after.failures if "error" in s.labels)
    over = 100 * rate > target_percent
    summary = (
        f"error rate {100 * rate:.2f} % of {after.requests} requests"
        f" ({'over' if over else 'within'} the {target_percent:g} % target)"
    )
    if where:
        summary += "; most at " + ", ".join(f"{k} ({n})" for k, n in where.most_common(2))
    return Finding(
        "over-target" if over else "ok",
        summary,
        {
            "after": after.summary(),
            "target_percent": target_percent,
            "errors": len(after.failures),
            "by_path_status": dict(where.most_common(SHOWN)),
            "by_host": dict(hosts.most_common(SHOWN)),
            "messages": dict(said.most_common(SHOWN)),
        },
    )
