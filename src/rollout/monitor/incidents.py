"""The runbook's incident levels: symptoms -> level -> actions, with each incident's timeline.

Every interval the window hands in what it measured (a ``Reading``); the ``Responder`` finds the
highest level whose symptoms hold, opens or raises the incident, and says what to do now:

  level 1  record, notify, keep watching, prepare the rollback plan
  level 2  page on-call; roll back if it persists past ``persists`` (or at once with `rollback`)
  level 3  roll back at once, notify stakeholders, mark the status page, draft a post-mortem

Levels not configured take the runbook's defaults (DESIGN.md): level 3 when the health endpoint
or the database is down, with an immediate rollback.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rollout.config import IncidentLevel, Incidents, Metric
from rollout.monitor.rules import Symptom, parse_symptom

DEFAULT_LEVEL3 = IncidentLevel(
    when=["health down", "database down"],
    respond_within=timedelta(minutes=5),
    actions=["rollback", "notify-stakeholders", "status-page", "postmortem"],
)
TITLES = {1: "minor", 2: "major", 3: "critical"}


@dataclass(frozen=True)
class Reading:
    """One interval's measurements: a value per metric (None: not measured) and named states."""

    at: datetime
    values: Mapping[str, float | None]
    errors: Mapping[str, str] = field(default_factory=dict)  # why a metric has no value
    health_down: bool = False
    database_down: bool = False
    tls_invalid: bool = False
    slo_burn: bool = False
    detail: Mapping[str, str] = field(default_factory=dict)  # e.g. which hosts are down


@dataclass(frozen=True)
class Finding:
    level: int
    symptoms: tuple[str, ...]  # each with the value and the threshold that made it hold


@dataclass(frozen=True)
class Decision:
    """What the responder says after one reading."""

    finding: Finding | None
    rollback: bool = False
    reason: str = ""
    new_incident: bool = False  # opened (or raised to a higher level) by this reading
    notify: tuple[str, ...] = ()  # actions to carry out now: notify, page, status-page, ...


@dataclass
class Open:
    level: int
    impact_start: datetime
    detected_at: datetime
    symptoms: tuple[str, ...]
    level_since: datetime


def level_actions(incidents: Incidents, number: int) -> list[str]:
    """The actions the runbook gives incident level ``number`` (level 3 has defaults)."""
    level = getattr(incidents, f"level{number}", None) or (DEFAULT_LEVEL3 if number == 3 else None)
    return list(level.actions) if level is not None else []


class Responder:
    def __init__(self, incidents: Incidents, metrics: Mapping[str, Metric]) -> None:
        self.metrics = metrics
        known = {n: (m.source, m.max is not None) for n, m in metrics.items()}
        self.levels: dict[int, tuple[IncidentLevel, list[Symptom]]] = {}
        for number in (1, 2, 3):
            level = getattr(incidents, f"level{number}") or (
                DEFAULT_LEVEL3 if number == 3 else None
            )
            if level is not None:
                self.levels[number] = (level, [parse_symptom(w, known) for w in level.when])
        self.open: Open | None = None

    def classify(self, reading: Reading) -> Finding | None:
        """The highest level with a symptom that holds, and every symptom of it that holds."""
        for number in (3, 2, 1):
            if number not in self.levels:
                continue
            held = [text for s in self.levels[number][1] if (text := self._holds(s, reading))]
            if held:
                return Finding(number, tuple(held))
        return None

    def _holds(self, symptom: Symptom, reading: Reading) -> str | None:
        if symptom.kind == "named":
            state = {
                "health down": reading.health_down,
                "database down": reading.database_down,
                "tls invalid": reading.tls_invalid,
                "slo burn": reading.slo_burn,
            }[symptom.text]
            extra = reading.detail.get(symptom.text, "")
            return f"{symptom.text}{f' ({extra})' if extra else ''}" if state else None
        assert symptom.metric is not None
        value = reading.values.get(symptom.metric)
        if value is None:
            return None  # not measured: the judge counts that as an error, not a symptom
        metric = self.metrics[symptom.metric]
        limit = metric.limit(metric.max)
        if not symptom.holds(value, limit):
            return None
        threshold = (
            symptom.value * limit
            if symptom.kind == "relative" and limit is not None
            else symptom.value
        )
        return f"{symptom.metric} {_show(value)} {symptom.op} {_show(threshold)} ({symptom.text})"

    def respond(self, reading: Reading) -> Decision:
        finding = self.classify(reading)
        if finding is None:
            return Decision(None)
        new = self.open is None or finding.level > self.open.level
        if self.open is None:
            self.open = Open(finding.level, reading.at, reading.at, finding.symptoms, reading.at)
        elif finding.level > self.open.level:
            self.open.level, self.open.level_since = finding.level, reading.at
            self.open.symptoms = finding.symptoms
        level, _ = self.levels[finding.level]
        actions = level.actions
        lasting = reading.at - self.open.level_since
        rollback = "rollback" in actions or (
            "rollback-if-persists" in actions and lasting >= (level.persists or timedelta(0))
        )
        reason = f"level {finding.level} ({TITLES[finding.level]}): {'; '.join(finding.symptoms)}"
        if "rollback-if-persists" in actions and rollback and "rollback" not in actions:
            reason += f"; persisted {lasting.total_seconds():.0f} s"
        notify = tuple(a for a in actions if a not in ("rollback", "rollback-if-persists", "watch"))
        return Decision(finding, rollback, reason, new, notify if new else ())


def _show(value: float) -> str:
    return f"{value:.4g}"
