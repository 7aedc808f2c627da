"""The status page: what status.json and index.html say, and how they are written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from rollout.notify.status_page import (
    CurrentIncident,
    Maintenance,
    Status,
    StatusBoard,
    StatusView,
    Update,
    page_html,
    page_json,
    status_for_level,
    write_page,
)
from rollout.store.records import IncidentRecord

AT = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)


def incident(number: int, level: int = 2, status: str = "mitigated") -> IncidentRecord:
    return IncidentRecord(
        id=number,
        deployment_id=None,
        env="production",
        level=level,
        title=f"level {level} incident in production",
        symptoms="error rate 3% >= 1%",
        status=status,
        impact_start=AT,
        detected_at=AT,
        acknowledged_at=None,
        acknowledged_by=None,
        mitigated_at=AT,
        resolved_at=None,
        action=None,
    )


def view(**changes: object) -> StatusView:
    fields: dict[str, object] = {
        "app": "united-cars",
        "env": "production",
        "updated_at": AT,
        "components": {"web": Status.OPERATIONAL, "api": Status.OPERATIONAL},
    }
    return StatusView(**{**fields, **changes})  # type: ignore[arg-type]


def test_the_worst_component_decides_the_headline() -> None:
    assert view().overall is Status.OPERATIONAL
    mixed = {"web": Status.MAINTENANCE, "api": Status.DEGRADED, "db": Status.OPERATIONAL}
    assert view(components=mixed).overall is Status.DEGRADED
    assert view(components={"web": Status.OUTAGE, "api": Status.MAINTENANCE}).overall is (
        Status.OUTAGE
    )
    assert [status_for_level(n) for n in (1, 2, 3)] == [
        Status.DEGRADED,
        Status.DEGRADED,
        Status.OUTAGE,
    ]


def test_status_json_has_components_incident_maintenance_and_history() -> None:
    data = page_json(
        view(
            components={"web": Status.OUTAGE, "api": Status.OUTAGE},
            incident=CurrentIncident(7, 3, "health DOWN", AT),
            maintenance=Maintenance("deploying v2", AT),
            updates=(Update(AT, Status.OUTAGE, "incident #7 level 3"),),
            history=(incident(7, 3, "open"), incident(6)),
        )
    )
    assert data["status"] == "outage"
    assert data["components"] == [
        {"name": "web", "status": "outage"},
        {"name": "api", "status": "outage"},
    ]
    assert data["incident"] == {
        "id": 7,
        "level": 3,
        "symptoms": "health DOWN",
        "since": "2026-01-15T10:30:00+00:00",
    }
    assert data["maintenance"] == {"reason": "deploying v2", "since": "2026-01-15T10:30:00+00:00"}
    assert [(i["id"], i["status"]) for i in data["history"]] == [(7, "open"), (6, "mitigated")]
    assert json.loads(json.dumps(data)) == data


def test_index_html_is_self_contained_and_escapes_what_it_shows() -> None:
    text = page_html(
        view(
            components={"web <b>": Status.DEGRADED},
            incident=CurrentIncident(3, 2, "p95 <script>alert(1)</script>", AT),
            history=(incident(2),),
        )
    )
    assert text.startswith("<!doctype html>") and "<style>" in text
    assert "<script" not in text and "&lt;script&gt;" in text and "web &lt;b&gt;" in text
    assert "<link" not in text and "src=" not in text and "http" not in text
    assert "Degraded performance" in text and "Incident #3, level 2" in text
    assert "Past incidents" in text and "#2 level 2" in text
    assert "Maintenance" not in text  # no window, no box


def test_writing_replaces_both_files_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "public" / "status"
    write_page(view(), target)
    write_page(view(components={"web": Status.MAINTENANCE}), target)
    assert sorted(p.name for p in target.iterdir()) == ["index.html", "status.json"]
    assert json.loads((target / "status.json").read_text())["status"] == "maintenance"
    assert (target / "index.html").stat().st_mode & 0o777 == 0o644


def test_a_board_keeps_its_updates_across_runs_and_names_the_app_without_components(
    tmp_path: Path,
) -> None:
    board = StatusBoard("united-cars", "production", tmp_path, [])
    board.set(Status.MAINTENANCE, "deploying v2")
    board.set(Status.OPERATIONAL, "v2 succeeded")
    board.publish([incident(1)])
    again = StatusBoard("united-cars", "production", tmp_path, []).resume()
    assert [u.message for u in again.updates] == ["v2 succeeded", "deploying v2"]
    assert again.view().components == {"united-cars": Status.OPERATIONAL}
    (tmp_path / "status.json").write_text("{not json")
    assert StatusBoard("united-cars", "production", tmp_path, []).resume().updates == []
