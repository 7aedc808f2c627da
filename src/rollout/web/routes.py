"""The dashboard's routes: every one a GET that reads the store and changes nothing."""

from __future__ import annotations

import json
import threading
from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from rollout.errors import BadInput, StoreError
from rollout.model import Outcome, utcnow
from rollout.notify.status_page import page_html, page_json
from rollout.report import deployment, deployment_report, html, kpi_page
from rollout.store.records import DeploymentRecord, deployment_summary
from rollout.web import live, pages, status
from rollout.web.site import Site

KPI_WINDOW = "90d"  # as `rollout kpi` and `rollout report --kpi` read by default
LIVE_JS = "/static/live.js"

# Charts are drawn by matplotlib under rc_context, which sets its process-wide rcParams for the
# block: two pages drawn at once in the request thread pool could mix their styles.
_drawing = threading.Lock()


class NotFound(BadInput):
    """A page or record that is not there (HTTP 404)."""


def router(site: Site) -> APIRouter:
    r = APIRouter()

    @r.get("/")
    def overview() -> HTMLResponse:
        store = site.store
        envs = [_env_state(site, name) for name in site.runbook.environments]
        recent = store.deployments(limit=pages.RECENT)
        return HTMLResponse(pages.overview(site.runbook.app, envs, recent))

    @r.get("/deployments/{deployment_id}")
    def deployment_page(deployment_id: str) -> HTMLResponse:
        number = _number(deployment_id)
        facts = _gather(site, number)
        running = facts.deployment.status is Outcome.RUNNING
        lead = [pages.nav(), *([pages.live(number)] if running else [])]
        with _drawing:
            doc = deployment_report.document(facts)
            text = html.render(doc, lead=lead, script=LIVE_JS if running else None)
        return HTMLResponse(text)

    @r.get("/deployments/{deployment_id}/events")
    def deployment_events(deployment_id: str) -> StreamingResponse:
        number = _number(deployment_id)
        _deployment(site, number)  # an unknown id is a 404, not an empty stream
        return StreamingResponse(
            live.events(site.store, number, site.poll),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )

    @r.get("/incidents")
    def incidents() -> HTMLResponse:
        return HTMLResponse(pages.incidents(site.runbook.app, site.store.incidents()))

    @r.get("/kpi")
    def kpi() -> HTMLResponse:
        from rollout.config import parse_duration
        from rollout.kpi.dora import frequency_target

        try:  # checked where the KPI commands check it (cli/common.py kpi_scope), not on load
            frequency_target(site.runbook.kpi.targets.deployment_frequency)
        except ValueError as exc:
            raise BadInput(f"rollout.yml: kpi.targets.{exc}") from exc
        window = parse_duration(KPI_WINDOW)
        built = kpi_page.build(site.store.engine, site.runbook, site.production, window, utcnow())
        with _drawing:
            return HTMLResponse(kpi_page.render(built))

    @r.get("/status")
    def status_page() -> HTMLResponse:
        view = status.view(site.runbook, site.store, site.production)
        return HTMLResponse(site.runbook.redactor.redact(page_html(view)))

    @r.get("/status.json")
    def status_json() -> Response:
        view = status.view(site.runbook, site.store, site.production)
        return _json(site.runbook.redactor.redact_obj(page_json(view)))

    @r.get("/api/deployments")
    def api_deployments(env: str | None = None, limit: int = pages.RECENT) -> Response:
        records = site.store.deployments(env=env, limit=max(1, min(limit, 1000)))
        return _json([deployment_summary(d) for d in records])

    @r.get("/api/deployments/{deployment_id}")
    def api_deployment(deployment_id: str) -> Response:
        return _json(deployment_summary(_deployment(site, _number(deployment_id))))

    return r


def _env_state(site: Site, env: str) -> pages.EnvState:
    store = site.store
    # The latest deploy or rollback that succeeded is what the hosts run.
    done = store.deployments(env=env, status=Outcome.SUCCEEDED, limit=1)
    runs = done[0] if done else None
    return pages.EnvState(
        name=env,
        runs=runs,
        lock=store.lock(env),
        incidents=tuple(store.incidents(env=env, open_only=True)),
    )


def _number(text: str) -> int:
    # ASCII digits only, and no more than a database integer holds (a longer one overflows
    # the driver instead of finding nothing).
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise _unknown(text)
    return int(text)


def _unknown(deployment_id: object) -> NotFound:
    return NotFound(
        f"no deployment with id {deployment_id} in the records",
        hint="the overview (/) and `rollout history` list the deployments and their ids",
    )


def _deployment(site: Site, number: int) -> DeploymentRecord:
    try:
        return site.store.deployment(number)
    except StoreError as exc:  # as deployment.gather reads it: the id is not in the records
        raise _unknown(number) from exc


def _gather(site: Site, number: int) -> deployment.DeploymentFacts:
    try:
        return deployment.gather(site.store, number)
    except BadInput as exc:  # gather's only BadInput: an unknown id
        raise _unknown(number) from exc


def _json(data: Any) -> Response:
    # The CLI's JSON (cli/common.py print_json): times as str() gives them, keys sorted.
    body = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    return Response(body, media_type="application/json")
