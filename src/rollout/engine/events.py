"""Events: what the runner tells its sinks (console, store, event log, later the web and chat).

Data flows one way: the runner emits, sinks consume; a sink never steers the run. A sink that
fails must not stop a rollback, so the runner isolates each sink's errors (see ``Fanout``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from rollout.model import CheckResult, Outcome, Phase, StepStatus, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepRef:
    """Which step an event is about."""

    phase: Phase
    name: str
    host: str | None = None

    def __str__(self) -> str:
        return f"{self.phase}/{self.name}" + (f"@{self.host}" if self.host else "")


@dataclass(frozen=True, kw_only=True)
class Event:
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    deployment_id: int
    env: str
    tag: str
    kind: str
    hosts: tuple[str, ...]
    deploy_steps: int  # how many deploy-phase steps to expect, for progress


@dataclass(frozen=True, kw_only=True)
class PhaseStarted(Event):
    phase: Phase


@dataclass(frozen=True, kw_only=True)
class PhaseFinished(Event):
    phase: Phase
    status: StepStatus
    seconds: float


@dataclass(frozen=True, kw_only=True)
class StepStarted(Event):
    step: StepRef


@dataclass(frozen=True, kw_only=True)
class StepFinished(Event):
    step: StepRef
    status: StepStatus
    seconds: float
    output: str = ""


@dataclass(frozen=True, kw_only=True)
class CheckRecorded(Event):
    phase: Phase
    result: CheckResult


@dataclass(frozen=True, kw_only=True)
class Note(Event):
    """A line for people: why something is skipped, what happens next."""

    message: str
    level: str = "info"  # info | warn | error


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    outcome: Outcome
    seconds: float
    reason: str | None = None
    failed_host: str | None = None
    failed_step: str | None = None
    phase_seconds: tuple[tuple[Phase, float], ...] = ()


class Sink(Protocol):
    def emit(self, event: Event) -> None: ...


class Fanout:
    """Sends each event to every sink; a failing sink is logged, never allowed to stop the run."""

    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = list(sinks)

    def emit(self, event: Event) -> None:
        for sink in self.sinks:
            try:
                sink.emit(event)
            except Exception:  # a sink bug must not strand hosts half-switched
                log.exception("event sink %r failed on %s", sink, type(event).__name__)
