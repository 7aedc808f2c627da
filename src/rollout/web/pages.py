"""The dashboard's own pages, built from escaped parts with the reports' helpers
(report/html.py), so they look like the written reports and escape the same way. Rendering
is pure: each function takes records and returns HTML."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rollout.report.formats import moment, seconds
from rollout.report.html import Safe, esc, page, section, span, table
from rollout.store.records import DeploymentRecord, IncidentRecord, LockInfo

LINKS = (
    ("/", "overview"),
    ("/incidents", "incidents"),
    ("/kpi", "KPIs"),
    ("/status", "status page"),
    ("/api/deployments", "JSON"),
)
RECENT = 20  # deployments on the overview


@dataclass(frozen=True)
class EnvState:
    """One environment as the records tell it."""

    name: str
    runs: DeploymentRecord | None  # the latest deploy or rollback that succeeded
    lock: LockInfo | None
    incidents: tuple[IncidentRecord, ...]  # not resolved yet


def nav() -> Safe:
    links = " · ".join(f'<a href="{esc(href)}">{esc(text)}</a>' for href, text in LINKS)
    return Safe(f"<nav>{links}</nav>\n")


def link(deployment_id: int | None) -> Safe:
    if deployment_id is None:
        return Safe("-")
    return Safe(f'<a href="/deployments/{deployment_id}">#{deployment_id}</a>')


def overview(app: str, envs: Sequence[EnvState], recent: Sequence[DeploymentRecord]) -> str:
    rows = [
        (
            e.name,
            Safe(f"{esc(e.runs.tag)} ({link(e.runs.id)})") if e.runs else "-",
            _lock(e.lock),
            Safe(", ".join(_incident(i) for i in e.incidents)) if e.incidents else "none",
        )
        for e in envs
    ]
    return page(
        f"{app}: dashboard",
        "what runs where, and the latest deployments (read-only)",
        [
            nav(),
            section(
                "Environments",
                table(("environment", "runs", "deploy lock", "open incidents"), rows),
            ),
            section(f"Last {RECENT} deployments", deployments(recent)),
        ],
    )


def _lock(lock: LockInfo | None) -> str:
    if lock is None:
        return "free"
    what = f" for {lock.tag}" if lock.tag else ""
    note = f": {lock.message}" if lock.message else ""
    return f"held by {lock.holder} (pid {lock.pid}) since {moment(lock.acquired_at)}{what}{note}"


def _incident(i: IncidentRecord) -> Safe:
    return Safe(f'<a href="/incidents">incident #{i.id}</a> level {i.level} ({esc(i.status)})')


def deployments(records: Sequence[DeploymentRecord]) -> Safe:
    if not records:
        return Safe('<p class="note">no deployments recorded yet</p>\n')
    rows = [
        (
            link(d.id),
            d.env,
            d.kind.value,
            d.tag,
            span(d.status.value, d.status.value),
            d.actor,
            moment(d.started_at),
            seconds(d.duration) if d.finished_at else "running",
        )
        for d in records
    ]
    headers = ("#", "env", "kind", "tag", "status", "actor", "started", "took")
    return table(headers, rows, numeric={7})


def incidents(app: str, records: Sequence[IncidentRecord]) -> str:
    rows = [
        (
            f"#{i.id}",
            f"level {i.level}",
            i.env,
            link(i.deployment_id),
            span(i.status, i.status),
            i.title,
            moment(i.detected_at),
            moment(i.acknowledged_at),
            moment(i.mitigated_at),
            moment(i.resolved_at),
        )
        for i in records
    ]
    headers = ("#", "level", "env", "deployment", "status", "title", "detected",
               "acknowledged", "mitigated", "resolved")  # fmt: skip
    body = table(headers, rows) if rows else Safe('<p class="note">no incidents recorded</p>\n')
    return page(f"{app}: incidents", "newest first", [nav(), section("Incidents", body)])


def live(deployment_id: int) -> Safe:
    """The live step list a running deployment's page starts with; static/live.js fills it
    from the event stream, and the note says when the run is over."""
    headers = "".join(f"<th>{h}</th>" for h in ("stage", "step", "host", "status", "took"))
    return Safe(
        f'<section id="live" data-events="/deployments/{deployment_id}/events">\n'
        "<h2>Live</h2>\n"
        '<p class="note" id="live-state">running: steps appear here as they start and end</p>\n'
        f'<table>\n<thead><tr>{headers}</tr></thead>\n<tbody id="live-steps"></tbody>\n</table>\n'
        "</section>\n"
    )


def problem(title: str, message: str, hint: str | None) -> str:
    """An error page: what went wrong and what to do (the CLI's error line, as a page)."""
    parts = [Safe(f"<p>{esc(message)}</p>\n")]
    if hint:
        parts.append(Safe(f'<p class="note">hint: {esc(hint)}</p>\n'))
    return page(title, "rollout dashboard", [nav(), *parts])
