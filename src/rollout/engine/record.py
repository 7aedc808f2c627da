"""Sinks that keep the record: the store (history, KPIs) and a JSON-lines log per deployment."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from rollout.engine.events import (
    CheckRecorded,
    Event,
    RunFinished,
    StepFinished,
    StepRef,
    StepStarted,
)
from rollout.redact import Redactor
from rollout.store import Store


class StoreSink:
    """Writes steps, check results and the outcome of one deployment to the store."""

    def __init__(self, store: Store, deployment_id: int, env: str, actor: str) -> None:
        self.store = store
        self.deployment_id = deployment_id
        self.env = env
        self.actor = actor
        self._open: dict[StepRef, int] = {}

    def emit(self, event: Event) -> None:
        match event:
            case StepStarted(step=step):
                self._open[step] = self.store.start_step(
                    self.deployment_id,
                    phase=step.phase.value,
                    name=step.name,
                    host=step.host,
                    started_at=event.at,
                )
            case StepFinished(step=step, status=status, output=output):
                step_id = self._open.pop(step, None)
                if step_id is not None:
                    self.store.finish_step(
                        step_id, status=status, finished_at=event.at, output=output
                    )
            case CheckRecorded(phase=phase, result=result):
                self.store.record_check(
                    result,
                    env=self.env,
                    phase=phase.value,
                    deployment_id=self.deployment_id,
                    recorded_at=event.at,
                )
            case RunFinished():
                self.store.finish_deployment(
                    self.deployment_id,
                    status=event.outcome,
                    finished_at=event.at,
                    reason=event.reason,
                    failed_host=event.failed_host,
                    failed_step=event.failed_step,
                )
                self.store.append_audit(
                    actor=self.actor,
                    action=f"deployment.{event.outcome.value}",
                    subject=f"deployment:{self.deployment_id}",
                    details={
                        "env": self.env,
                        "reason": event.reason,
                        "failed_host": event.failed_host,
                    },
                    at=event.at,
                )
            case _:
                pass


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


class JsonlSink:
    """Appends every event as one JSON line to ``<dir>/<deployment id>.jsonl``, redacted."""

    def __init__(self, directory: Path, deployment_id: int, redactor: Redactor) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{deployment_id}.jsonl"
        self.redactor = redactor

    def emit(self, event: Event) -> None:
        record = {"event": type(event).__name__, **_plain(event)}
        line = json.dumps(self.redactor.redact_obj(record), sort_keys=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
