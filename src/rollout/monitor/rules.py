"""The monitoring vocabulary of rollout.yml: thresholds with units, symptoms, actions.

Parsed when the runbook loads, so a threshold whose unit does not parse, a symptom naming a
metric that does not exist or an unknown action is a config error with its line (exit 2),
never a rule that silently never fires.

Thresholds: a duration (``2s``, ``150ms``) is seconds; a percentage is a ratio (``1%`` -> 0.01)
except for host metrics, which are measured in percent (``80%`` -> 80); a bare number is itself.
Symptoms: ``<metric> > 2x`` (twice the metric's own ``max``), ``<metric> > 1.5s`` (absolute),
``health down``, ``database down``, ``tls invalid``, ``slo burn`` (a page rule of the SRE
multi-window burn-rate table fires on the probe's error ratio against the availability target).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

NAMED_SYMPTOMS = ("health down", "database down", "tls invalid", "slo burn")
ACTIONS = (
    "notify",
    "watch",
    "prepare-rollback",
    "page",
    "rollback",
    "rollback-if-persists",
    "notify-stakeholders",
    "status-page",
    "postmortem",
)
PROBE_STATS = ("p50", "p90", "p95", "p99", "mean", "error_rate", "health")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")
_NUMBER = re.compile(r"^\s*-?\d+(?:\.\d+)?\s*$")
_RELATIVE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|>|<=|<)\s*(\d+(?:\.\d+)?)\s*x\s*$")
_ABSOLUTE = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(>=|>|<=|<)\s*(.+?)\s*$")
_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_threshold(text: str, source: str) -> float:
    """``2s`` -> 2.0, ``1%`` -> 0.01 (host metrics: ``80%`` -> 80.0), ``80`` -> 80.0."""
    if m := _DURATION.match(text):
        return float(m.group(1)) * _SECONDS[m.group(2)]
    if m := _PERCENT.match(text):
        return float(m.group(1)) if source == "host" else float(m.group(1)) / 100
    if _NUMBER.match(text):
        return float(text)
    raise ValueError(
        f"threshold {text!r}: expected a number, a duration (2s, 150ms) or a percentage (1%)"
    )


def probe_stat(name: str, stat: str | None) -> str:
    """Which statistic of the probe a probe metric is: given, or read from its name."""
    if stat is not None:
        return stat
    for candidate in ("p50", "p90", "p95", "p99"):
        if name.endswith(candidate):
            return candidate
    if "error" in name:
        return "error_rate"
    if name in ("health", "up"):
        return "health"
    raise ValueError(
        f"probe metric {name!r}: say which statistic with `stat` ({', '.join(PROBE_STATS)})"
    )


@dataclass(frozen=True)
class Symptom:
    text: str
    kind: Literal["relative", "absolute", "named"]
    metric: str | None = None
    op: str = ">"
    value: float = 0.0  # the factor (relative) or the threshold (absolute)

    def holds(self, measured: float, metric_max: float | None) -> bool:
        limit = (
            self.value * metric_max
            if self.kind == "relative" and metric_max is not None
            else self.value
        )
        return {
            ">": measured > limit,
            ">=": measured >= limit,
            "<": measured < limit,
            "<=": measured <= limit,
        }[self.op]


def parse_symptom(text: str, metrics: Mapping[str, tuple[str, bool]]) -> Symptom:
    """``metrics``: name -> (source, has a max). Raises ValueError saying what is wrong."""
    clean = " ".join(text.split())
    if clean in NAMED_SYMPTOMS:
        return Symptom(clean, "named")
    known = ", ".join(sorted(metrics)) or "none"
    if m := _RELATIVE.match(clean):
        name, op, factor = m.group(1), m.group(2), float(m.group(3))
        if name not in metrics:
            raise ValueError(
                f"symptom {text!r}: no metric {name!r} in monitor.metrics (known: {known})"
            )
        if not metrics[name][1]:
            raise ValueError(f"symptom {text!r}: {name} has no `max` to be a multiple of")
        return Symptom(clean, "relative", name, op, factor)
    if m := _ABSOLUTE.match(clean):
        name, op, raw = m.group(1), m.group(2), m.group(3)
        if name not in metrics:
            raise ValueError(
                f"symptom {text!r}: no metric {name!r} in monitor.metrics (known: {known})"
            )
        return Symptom(clean, "absolute", name, op, parse_threshold(raw, metrics[name][0]))
    raise ValueError(
        f"symptom {text!r}: expected `<metric> > 2x`, `<metric> > 1.5s` or one of: {', '.join(NAMED_SYMPTOMS)}"
    )


def check_actions(actions: list[str]) -> None:
    unknown = [a for a in actions if a not in ACTIONS]
    if unknown:
        raise ValueError(f"unknown action {unknown[0]!r} (known: {', '.join(ACTIONS)})")


def check_promql(query: str) -> None:
    """A query that cannot parse is refused at load: brackets and quotes must balance.

    This is a shape check, not Prometheus's parser; a query that parses but names nothing gives
    "no data" at run time (inconclusive), never a pass.
    """
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    quote: str | None = None
    escaped = False
    for at, char in enumerate(query):
        if quote is not None:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = None
            continue
        if char in "\"'`":
            quote = char
        elif char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            raise ValueError(f"query {query!r}: unexpected {char!r} at {at + 1}")
    if quote is not None:
        raise ValueError(f"query {query!r}: a {quote} string is not closed")
    if stack:
        raise ValueError(f"query {query!r}: {stack[-1]!r} is not closed")
    if not query.strip():
        raise ValueError("query is empty")
