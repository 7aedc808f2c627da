"""The static status page: ``status.json`` and a self-contained ``index.html`` (inline CSS, no
external assets), rewritten atomically on each change so a web server never serves half a file.

``StatusBoard`` holds what the page says (components, the current incident, a maintenance
window, recent updates) and ``publish`` writes it with the incident history from the store.
Rendering is pure: ``page_json`` and ``page_html`` take a ``StatusView`` and return text.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from rollout.model import utcnow
from rollout.redact import Redactor
from rollout.store.records import IncidentRecord

HISTORY = 10  # past incidents shown
UPDATES = 20  # status changes kept, newest first


class Status(StrEnum):
    OPERATIONAL = "operational"
    MAINTENANCE = "maintenance"
    DEGRADED = "degraded"
    OUTAGE = "outage"


_SEVERITY = list(Status)  # in order: the worst component decides the page's headline
_HEADLINE = {
    Status.OPERATIONAL: "All systems operational",
    Status.MAINTENANCE: "Maintenance in progress",
    Status.DEGRADED: "Degraded performance",
    Status.OUTAGE: "Service outage",
}
_COLOUR = {
    Status.OPERATIONAL: "#1f883d",
    Status.MAINTENANCE: "#0969da",
    Status.DEGRADED: "#bf8700",
    Status.OUTAGE: "#cf222e",
}


def status_for_level(level: int) -> Status:
    """An incident's level on the page: level 3 (critical) is an outage, below it degraded."""
    return Status.OUTAGE if level >= 3 else Status.DEGRADED


@dataclass(frozen=True)
class CurrentIncident:
    id: int | None
    level: int
    symptoms: str
    since: datetime


@dataclass(frozen=True)
class Maintenance:
    reason: str
    since: datetime


@dataclass(frozen=True)
class Update:
    at: datetime
    status: Status
    message: str


@dataclass(frozen=True)
class StatusView:
    """Everything one version of the page shows."""

    app: str
    env: str
    updated_at: datetime
    components: dict[str, Status]
    incident: CurrentIncident | None = None
    maintenance: Maintenance | None = None
    updates: tuple[Update, ...] = ()
    history: tuple[IncidentRecord, ...] = ()

    @property
    def overall(self) -> Status:
        return max(self.components.values(), key=_SEVERITY.index, default=Status.OPERATIONAL)


def page_json(view: StatusView) -> dict[str, Any]:
    incident = view.incident
    maintenance = view.maintenance
    return {
        "app": view.app,
        "env": view.env,
        "updated_at": view.updated_at.isoformat(),
        "status": view.overall.value,
        "components": [{"name": n, "status": s.value} for n, s in view.components.items()],
        "incident": None
        if incident is None
        else {
            "id": incident.id,
            "level": incident.level,
            "symptoms": incident.symptoms,
            "since": incident.since.isoformat(),
        },
        "maintenance": None
        if maintenance is None
        else {"reason": maintenance.reason, "since": maintenance.since.isoformat()},
        "updates": [
            {"at": u.at.isoformat(), "status": u.status.value, "message": u.message}
            for u in view.updates
        ],
        "history": [_past(i) for i in view.history],
    }


def _past(incident: IncidentRecord) -> dict[str, Any]:
    def when(at: datetime | None) -> str | None:
        return None if at is None else at.isoformat()

    return {
        "id": incident.id,
        "level": incident.level,
        "title": incident.title,
        "status": incident.status,
        "detected_at": when(incident.detected_at),
        "mitigated_at": when(incident.mitigated_at),
        "resolved_at": when(incident.resolved_at),
    }


_CSS = """
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:46rem;padding:1.5rem;color:#1f2328}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}
.banner{padding:1rem;border-radius:6px;color:#fff;font-weight:600}
.box{border:1px solid #d0d7de;border-radius:6px;padding:.75rem 1rem;margin:.75rem 0}
ul{list-style:none;padding:0;margin:0}li{padding:.4rem 0;border-bottom:1px solid #eaeef2}
.status{float:right;font-weight:600}.muted{color:#656d76;font-size:.9rem}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _time(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M} UTC"


def page_html(view: StatusView) -> str:
    overall = view.overall
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(view.app)} status</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(view.app)} ({_e(view.env)})</h1>",
        f'<div class="banner" style="background:{_COLOUR[overall]}">{_HEADLINE[overall]}</div>',
        *_current(view),
        "<h2>Components</h2><ul>",
        *(
            f'<li>{_e(name)}<span class="status" style="color:{_COLOUR[s]}">{s}</span></li>'
            for name, s in view.components.items()
        ),
        "</ul>",
        *_list(
            "Updates", [f"{_time(u.at)}: {_e(u.status)}, {_e(u.message)}" for u in view.updates]
        ),
        *_list(
            "Past incidents",
            [
                f"#{i.id} level {i.level}: {_e(i.title)} ({_e(i.status)},"
                f" detected {_time(i.detected_at)})"
                for i in view.history
            ],
        ),
        f'<p class="muted">Updated {_time(view.updated_at)}</p>',
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _current(view: StatusView) -> list[str]:
    shown = []
    if view.incident is not None:
        i = view.incident
        shown.append(
            f'<div class="box"><strong>Incident{f" #{i.id}" if i.id else ""}, level {i.level}'
            f"</strong> since {_time(i.since)}<br>{_e(i.symptoms)}</div>"
        )
    if view.maintenance is not None:
        m = view.maintenance
        shown.append(
            f'<div class="box"><strong>Maintenance</strong> since {_time(m.since)}<br>'
            f"{_e(m.reason)}</div>"
        )
    return shown


def _list(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    return [f"<h2>{title}</h2><ul>", *(f"<li>{item}</li>" for item in items), "</ul>"]


def write_page(view: StatusView, directory: Path, redactor: Redactor | None = None) -> None:
    """Both files, each written to a temporary file beside it and renamed over the old one;
    with ``redactor``, no known secret in either (symptoms and messages quote measurements)."""
    redactor = redactor or Redactor.empty()
    directory.mkdir(parents=True, exist_ok=True)
    data = redactor.redact_obj(page_json(view))
    _atomic(directory / "status.json", json.dumps(data, indent=2) + "\n")
    _atomic(directory / "index.html", redactor.redact(page_html(view)))


def _atomic(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(temp, 0o644)  # served by a web server, not private like mkstemp's default
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


@dataclass
class StatusBoard:
    """What the page says now; each change is written at once by ``publish``."""

    app: str
    env: str
    directory: Path
    components: list[str]
    incident: CurrentIncident | None = None
    maintenance: Maintenance | None = None
    updates: list[Update] = field(default_factory=list)
    status: Status = Status.OPERATIONAL
    redactor: Redactor = field(default_factory=Redactor.empty)

    def resume(self) -> StatusBoard:
        """Carry on from the page already written: its status and updates (a page that cannot be
        read is started afresh)."""
        try:
            data = json.loads((self.directory / "status.json").read_text(encoding="utf-8"))
            self.updates = [
                Update(datetime.fromisoformat(u["at"]), Status(u["status"]), str(u["message"]))
                for u in data.get("updates", [])
            ][:UPDATES]
            self.status = Status(data.get("status", Status.OPERATIONAL))
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            pass
        return self

    def set(self, status: Status, message: str) -> None:
        self.status = status
        self.updates.insert(0, Update(utcnow(), status, message))
        del self.updates[UPDATES:]

    def view(self, history: Sequence[IncidentRecord] = ()) -> StatusView:
        names = self.components or [self.app]
        return StatusView(
            app=self.app,
            env=self.env,
            updated_at=utcnow(),
            components=dict.fromkeys(names, self.status),
            incident=self.incident,
            maintenance=self.maintenance,
            updates=tuple(self.updates),
            history=tuple(history[:HISTORY]),
        )

    def publish(self, history: Sequence[IncidentRecord] = ()) -> None:
        write_page(self.view(history), self.directory, self.redactor)


__all__ = [
    "CurrentIncident",
    "Maintenance",
    "Status",
    "StatusBoard",
    "StatusView",
    "Update",
    "page_html",
    "page_json",
    "status_for_level",
    "write_page",
]
