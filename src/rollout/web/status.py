"""The public status page, as the notify sink would publish it, but read from the store: an
open incident sets the status (level 3 an outage, below it degraded), a running deployment
is maintenance, and the history is the environment's incidents."""

from __future__ import annotations

from rollout.config import Runbook
from rollout.model import Kind, Outcome
from rollout.notify.status_page import (
    CurrentIncident,
    Maintenance,
    Status,
    StatusBoard,
    StatusView,
    status_for_level,
)
from rollout.store import Store


def view(runbook: Runbook, store: Store, env: str) -> StatusView:
    page = runbook.notify.status_page
    directory = runbook.config_dir / page.dir if page is not None else runbook.config_dir
    board = StatusBoard(runbook.app, env, directory, list(page.components) if page else [])
    if page is not None:
        board.resume()  # the updates already published, newest first
    history = store.incidents(env=env)
    open_now = [i for i in history if i.status == "open"]
    if open_now:
        worst = max(open_now, key=lambda i: (i.level, i.detected_at))
        board.incident = CurrentIncident(worst.id, worst.level, worst.symptoms, worst.detected_at)
    latest = store.deployments(env=env, limit=1)
    if latest and latest[0].status is Outcome.RUNNING:
        d = latest[0]
        doing = "rolling back to" if d.kind is Kind.ROLLBACK else "deploying"
        board.maintenance = Maintenance(f"{doing} {d.tag}", d.started_at)
    board.status = (
        status_for_level(board.incident.level)
        if board.incident is not None
        else Status.MAINTENANCE
        if board.maintenance is not None
        else Status.OPERATIONAL
    )
    return board.view(history)
