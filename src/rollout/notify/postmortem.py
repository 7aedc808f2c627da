"""Post-mortem drafts: a Markdown document for one incident, pre-filled from rollout's records.

What the records know is written in: the summary's facts, the impact (when, how long, which
deployment, environment and hosts, the error rate and p95 the probe measured meanwhile), the
detection (how, time to detect, acknowledge and mitigate) and the timeline (the deployment, the
switch, impact start, detection, escalations, acknowledgement, each rollback step, mitigation,
resolution). What only people know is marked *(to be written)*: the root cause and the action
items, whose table has an owner and a type column (prevent, detect, mitigate, process).

A draft is for level 2 and 3 incidents (the runbook: level 3 "open post-mortem"); level 1 only
when forced. It is written to ``.rollout/postmortems/incident-<id>.md`` beside rollout.yml,
where the event logs are, and never over an existing file: people edit drafts.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import select

from rollout.config import Monitor
from rollout.errors import BadInput, StoreError
from rollout.model import Kind
from rollout.monitor.incidents import TITLES
from rollout.store import DeploymentRecord, StepRecord, Store, schema
from rollout.store.records import IncidentRecord, SampleRecord

if TYPE_CHECKING:
    from rollout.config import Runbook

TO_BE_WRITTEN = "*(to be written)*"
ACTION_TYPES = "prevent / detect / mitigate / process"


@dataclass(frozen=True)
class Moment:
    at: datetime
    what: str


@dataclass(frozen=True)
class Records:
    """Everything a draft is made from, read once."""

    incident: IncidentRecord
    deployment: DeploymentRecord | None
    steps: list[StepRecord]
    rollbacks: list[tuple[DeploymentRecord, list[StepRecord]]]  # `rollout rollback` runs
    samples: list[SampleRecord]  # the environment's probe samples during the impact
    escalations: list[Moment]
    end: datetime  # mitigated, else resolved, else now: the impact so far
    respond_within: timedelta | None


def default_path(runbook: Runbook, incident_id: int) -> Path:
    return runbook.config_dir / ".rollout" / "postmortems" / f"incident-{incident_id}.md"


def draft(
    store: Store,
    incident_id: int,
    *,
    now: datetime,
    runbook: Runbook | None = None,
    force: bool = False,
) -> str:
    """The Markdown draft for ``incident_id``; a level 1 incident is refused unless ``force``."""
    try:
        incident = store.incident(incident_id)
    except StoreError as exc:
        raise BadInput(f"no incident {incident_id}", hint="see `rollout incidents`") from exc
    if incident.level < 2 and not force:
        raise BadInput(
            f"incident {incident_id} is level {incident.level} ({TITLES[incident.level]}):"
            " post-mortems are for level 2 and 3 incidents",
            hint="--force writes one anyway",
        )
    text = render(gather(store, incident, now=now, runbook=runbook), now=now)
    return runbook.redactor.redact(text) if runbook is not None else text


def write(path: Path, text: str, *, replace: bool = False) -> Path:
    """Write ``text`` at ``path`` atomically; an existing file (perhaps edited) is kept unless
    ``replace``."""
    if path.exists() and not replace:
        raise BadInput(
            f"{path} exists (a draft people may have edited)",
            hint="--out another file, or --replace to write over it",
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, scratch = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(scratch, path)
    except BaseException:
        Path(scratch).unlink(missing_ok=True)
        raise
    return path


# --- reading the records ------------------------------------------------------------------------


def gather(
    store: Store, incident: IncidentRecord, *, now: datetime, runbook: Runbook | None = None
) -> Records:
    deployment = steps = None
    if incident.deployment_id is not None:
        deployment = store.deployment(incident.deployment_id)
        steps = store.steps(deployment.id)
    start = incident.impact_start or incident.detected_at
    end = incident.mitigated_at or incident.resolved_at or now
    # The impact starts at the first bad reading, stamped when its interval's probing ended:
    # its samples were taken up to a probe's timeout before, less than half an interval.
    interval = runbook.monitor.interval if runbook is not None else Monitor().interval
    since = start - interval / 2
    samples = [
        s
        for s in store.samples(env=incident.env, since=since, until=end + timedelta(microseconds=1))
        if s.source == "probe"
    ]
    return Records(
        incident=incident,
        deployment=deployment,
        steps=steps or [],
        rollbacks=_rollbacks(store, incident, end),
        samples=samples,
        escalations=_escalations(store, incident.id),
        end=end,
        respond_within=_respond_within(runbook, incident.level),
    )


def _rollbacks(
    store: Store, incident: IncidentRecord, end: datetime
) -> list[tuple[DeploymentRecord, list[StepRecord]]]:
    """``rollout rollback`` runs of the environment between detection and the impact's end."""
    found = store.deployments(env=incident.env, kind=Kind.ROLLBACK, since=incident.detected_at)
    return [(d, store.steps(d.id)) for d in reversed(found) if d.started_at <= end]


def _escalations(store: Store, incident_id: int) -> list[Moment]:
    audit = schema.audit
    query = (
        select(audit.c.at, audit.c.details)
        .where(audit.c.subject == f"incident:{incident_id}")
        .where(audit.c.action == "incident.escalated")
        .order_by(audit.c.id)
    )
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    moments = []
    for at, details in rows:
        to = json.loads(details).get("to", "?") if details else "?"
        moments.append(Moment(at, f"unacknowledged: escalated to {to}"))
    return moments


def _respond_within(runbook: Runbook | None, level: int) -> timedelta | None:
    if runbook is None:
        return None
    configured = getattr(runbook.incidents, f"level{level}", None)
    if configured is None and level == 3:
        from rollout.monitor.incidents import DEFAULT_LEVEL3

        configured = DEFAULT_LEVEL3
    return None if configured is None else configured.respond_within


# --- writing the draft --------------------------------------------------------------------------


def render(records: Records, *, now: datetime) -> str:
    incident = records.incident
    title = f"Post-mortem: incident #{incident.id}, level {incident.level}"
    lines = [
        f"# {title} ({TITLES[incident.level]}) in {incident.env}",
        "",
        f"> Draft written by rollout on {_time(now)} from its records: check it. The parts"
        f" marked {TO_BE_WRITTEN} are for people.",
        "",
        f"- **Status:** {incident.status}",
        f"- **Acknowledged by:** {incident.acknowledged_by or '-'}",
        "",
        *_summary(records),
        *_impact(records),
        *_detection(records),
        *_timeline(records),
        "## Root cause",
        "",
        TO_BE_WRITTEN,
        "",
        "## Action items",
        "",
        "| action | owner | type | due |",
        "|---|---|---|---|",
        f"| {TO_BE_WRITTEN} |  | {ACTION_TYPES} |  |",
        "",
    ]
    return "\n".join(lines)


def _summary(records: Records) -> list[str]:
    incident, deployment = records.incident, records.deployment
    during = (
        f" It began with deployment #{deployment.id} of {deployment.tag}"
        f" (previous release: {deployment.previous_tag or 'unknown'}), by {deployment.actor}."
        if deployment is not None
        else ""
    )
    if incident.mitigated_at is not None:
        after = _span(incident.mitigated_at - (incident.impact_start or incident.detected_at))
        ended = f" It was mitigated after {after}"
        ended += f" ({incident.action})." if incident.action else "."
    else:
        ended = " It is not mitigated on the record."
    return [
        "## Summary",
        "",
        f"A level {incident.level} ({TITLES[incident.level]}) incident in {incident.env}:"
        f" {_one_line(incident.symptoms)}.{during}{ended}",
        "",
        f"{TO_BE_WRITTEN} (what happened, for someone who was not there)",
        "",
    ]


def _impact(records: Records) -> list[str]:
    incident = records.incident
    start = incident.impact_start
    ended = incident.mitigated_at or incident.resolved_at
    requests = [s for s in records.samples if s.metric == "http_error" and s.value is not None]
    failed = [s for s in requests if s.value]
    latencies = sorted(
        s.value for s in records.samples if s.metric == "latency_seconds" and s.value is not None
    )
    down = sorted({s.host or "?" for s in records.samples if s.metric == "health" and s.value == 0})
    failing_hosts = sorted({s.host or "?" for s in failed} | set(down))
    rows = [
        (
            "started",
            _time(start) if start else f"not recorded (detected {_time(incident.detected_at)})",
        ),
        ("ended", _time(ended) if ended else f"ongoing at {_time(records.end)}"),
        ("duration", _span(records.end - (start or incident.detected_at))),
        ("environment", incident.env),
        ("deployment", _deployment(records.deployment)),
        ("hosts", ", ".join(_hosts(records.steps)) or "-"),
        ("hosts with failing readings", ", ".join(failing_hosts) or "none recorded"),
        ("probe requests", str(len(requests))),
        (
            "error rate",
            f"{100 * len(failed) / len(requests):.1f} % ({len(failed)} failed)"
            if requests
            else "no requests recorded",
        ),
        ("p95 latency", f"{_p95(latencies):.3f} s" if latencies else "no latency recorded"),
        ("health down on", ", ".join(down) or "-"),
    ]
    return [
        "## Impact",
        "",
        *_table(("what", "on the record"), rows),
        "",
        f"Users affected: {TO_BE_WRITTEN}",
        "",
    ]


def _detection(records: Records) -> list[str]:
    incident = records.incident
    watched = any(s.phase == "monitor" for s in records.steps)
    how = (
        f"rollout's monitoring window during deployment #{incident.deployment_id}"
        if watched
        else "rollout's monitoring (`rollout monitor`)"
    )
    start = incident.impact_start
    rows = [
        ("how", how),
        ("symptoms", incident.symptoms),
        ("time to detect", _span(incident.detected_at - start) if start else "unknown"),
        ("time to acknowledge", _acknowledge(records)),
        (
            "time to mitigate",
            _span(incident.mitigated_at - (start or incident.detected_at))
            if incident.mitigated_at
            else "not mitigated",
        ),
        ("automatic action", incident.action or "-"),
    ]
    return ["## Detection", "", *_table(("what", "on the record"), rows), ""]


def _acknowledge(records: Records) -> str:
    incident = records.incident
    limit = records.respond_within
    within = f" (respond within {_span(limit)})" if limit else ""
    if incident.acknowledged_at is None:
        return f"not acknowledged{within}"
    took = incident.acknowledged_at - incident.detected_at
    verdict = "" if limit is None else (", in time" if took <= limit else ", late")
    return f"{_span(took)}{within}{verdict}"


def _timeline(records: Records) -> list[str]:
    # At the same instant, what the runs did comes before what it did to the incident: the
    # last host restored, then the deployment ended, then mitigated.
    ranked = [
        *((m, 0) for m in _deployment_moments(records)),
        *((m, 1) for m in [*_incident_moments(records.incident), *records.escalations]),
    ]
    moments = [m for m, _ in sorted(ranked, key=lambda pair: (pair[0].at, pair[1]))]
    rows = [(_time(m.at), m.what) for m in moments]
    return ["## Timeline (UTC)", "", *_table(("time", "event"), rows), ""]


def _incident_moments(incident: IncidentRecord) -> list[Moment]:
    level = f"level {incident.level} ({TITLES[incident.level]})"
    moments = []
    if incident.impact_start is not None:
        moments.append(Moment(incident.impact_start, "impact started (first bad reading)"))
    moments.append(
        Moment(incident.detected_at, f"detected, {level}: {_one_line(incident.symptoms)}")
    )
    if incident.acknowledged_at is not None:
        moments.append(
            Moment(incident.acknowledged_at, f"acknowledged by {incident.acknowledged_by or '?'}")
        )
    if incident.mitigated_at is not None:
        moments.append(Moment(incident.mitigated_at, "mitigated"))
    if incident.resolved_at is not None:
        moments.append(Moment(incident.resolved_at, "resolved"))
    return moments


def _deployment_moments(records: Records) -> list[Moment]:
    moments = []
    if records.deployment is not None:
        moments += _run_moments(records.deployment, records.steps)
    for rollback, steps in records.rollbacks:
        moments += _run_moments(rollback, steps)
    return moments


def _run_moments(run: DeploymentRecord, steps: list[StepRecord]) -> list[Moment]:
    name = "deployment" if run.kind is Kind.DEPLOY else "rollback"
    why = f": {_one_line(run.reason)}" if run.reason and run.kind is Kind.ROLLBACK else ""
    moments = [Moment(run.started_at, f"{name} #{run.id} of {run.tag} started by {run.actor}{why}")]
    for step in steps:
        moments += _step_moments(step, run)
    if run.finished_at is not None:
        moments.append(Moment(run.finished_at, f"{name} #{run.id} ended: {run.status.value}"))
    return moments


def _step_moments(step: StepRecord, run: DeploymentRecord) -> list[Moment]:
    where = f" on {step.host}" if step.host else ""
    if step.phase == "deploy" and step.name == "activate" and step.finished_at is not None:
        return [Moment(step.finished_at, f"{step.host} switched to {run.tag}")]
    if step.phase == "monitor":
        moments = [Moment(step.started_at, "monitoring window started")]
        if step.finished_at is not None:
            said = _one_line(step.output)
            moments.append(Moment(step.finished_at, f"monitoring window {step.status}: {said}"))
        return moments
    if step.phase != "rollback":
        return []
    moments = [Moment(step.started_at, f"rollback: {step.name}{where} started")]
    if step.finished_at is not None:
        said = f": {_one_line(step.output)}" if step.output else ""
        moments.append(
            Moment(step.finished_at, f"rollback: {step.name}{where} {step.status}{said}")
        )
    return moments


# --- formatting ---------------------------------------------------------------------------------


def _table(header: tuple[str, str], rows: Iterable[tuple[str, str]]) -> list[str]:
    return [
        f"| {header[0]} | {header[1]} |",
        "|---|---|",
        *(f"| {_cell(a)} | {_cell(b)} |" for a, b in rows),
    ]


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _one_line(text: str | None, limit: int = 200) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _time(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC")


def _span(span: timedelta) -> str:
    seconds = max(0, round(span.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [f"{hours} h"] if hours else []
    if minutes:
        parts.append(f"{minutes} min")
    if seconds or not parts:
        parts.append(f"{seconds} s")
    return " ".join(parts)


def _p95(ordered: list[float]) -> float:
    """Linear interpolation between ranks, as ``rollout kpi``."""
    rank = 0.95 * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


def _deployment(deployment: DeploymentRecord | None) -> str:
    if deployment is None:
        return "none on record (seen by `rollout monitor`)"
    return (
        f"#{deployment.id}: {deployment.tag} (from {deployment.previous_tag or 'unknown'}),"
        f" by {deployment.actor}, {deployment.status.value}"
    )


def _hosts(steps: list[StepRecord]) -> list[str]:
    return sorted({s.host for s in steps if s.host and s.phase in ("deploy", "rollback")})
