"""The runbook's database rollback, end to end: the example app on PostgreSQL, two hosts.

deploy v1, deploy v2 (a pre-deploy backup verified at L3 first), bad data written after v2,
then `rollout rollback production --database`: the pre-deploy data is back, v1 runs, the
database as it was before the restore is kept aside with a verified safety backup.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import psycopg
import pytest

from rollout.sandbox.build import Release, build_artifacts, free_port
from tests.fixtures.example_app import runtime_yaml

DAY = date.today().strftime("%Y.%m.%d")
V1, V2 = f"v{DAY}-a1b2c3d", f"v{DAY}-b2c3d4e"

RUNBOOK = """\
app: united-cars
store: .rollout/rollout.db
release: {{artifact: 'dist/united-cars-{{tag}}.tar.gz', keep: 5}}
{runtime}environments:
  production:
    batch: 1
    hosts:
      - {{name: prod-1, kind: local, address: 127.0.0.1, root: hosts/prod-1, url: 'http://127.0.0.1:{{port}}', vars: {{port: '{p1}'}}}}
      - {{name: prod-2, kind: local, address: 127.0.0.1, root: hosts/prod-2, url: 'http://127.0.0.1:{{port}}', vars: {{port: '{p2}'}}}}
    database:
      url: '{url}'
      backups: backups
      verify_level: 3
      sanity_queries: ['select count(*) >= 0 from vehicles']
verify:
  version: {{path: /api/version, field: version}}
"""


@pytest.fixture
def app(tmp_path: Path, fresh_postgres_url: str) -> object:
    build_artifacts(tmp_path, [Release("v1", V1, None), Release("v2", V2, None)])
    # The app's table, as the app would have created it long before this release.
    write(
        fresh_postgres_url,
        "CREATE TABLE vehicles (id serial PRIMARY KEY, make varchar(64) NOT NULL,"
        " model varchar(64) NOT NULL, year integer NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now())",
    )
    p1, p2 = free_port(), free_port()
    (tmp_path / "rollout.yml").write_text(
        RUNBOOK.format(
            runtime=runtime_yaml(fresh_postgres_url), url=fresh_postgres_url, p1=p1, p2=p2
        )
    )
    yield tmp_path, fresh_postgres_url, (p1, p2)
    for pidfile in tmp_path.glob("hosts/*/srv/united-cars/run/app.pid"):
        subprocess.run(["kill", pidfile.read_text().strip()], capture_output=True)


def rollout(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args, "--config", str(folder / "rollout.yml")],
        capture_output=True,
        text=True,
        timeout=300,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "NO_COLOR": "1"},
    )


def restores(folder: Path, deployment_id: int) -> list[tuple[str, int]]:
    """The audit trail's database restores of a deployment: (action, backup id) in order."""
    with sqlite3.connect(folder / ".rollout" / "rollout.db") as db:
        rows = db.execute(
            "SELECT action, details FROM audit WHERE subject = ? AND action LIKE 'database.%'"
            " ORDER BY id",
            (f"deployment:{deployment_id}",),
        ).fetchall()
    return [(action, json.loads(details)["backup_id"]) for action, details in rows]


def makes(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT make FROM vehicles ORDER BY id")]


def write(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)  # type: ignore[arg-type]


def test_rollback_with_the_database_restores_the_pre_deploy_data_and_keeps_the_rest(
    app: object,
) -> None:
    folder, url, ports = app  # type: ignore[misc]
    assert rollout(folder, "deploy", "production", V1).returncode == 0
    write(
        url,
        "INSERT INTO vehicles (make, model, year) VALUES ('Volvo', '240', 1990), ('Saab', '900', 1991)",
    )

    deployed = rollout(folder, "deploy", "production", V2)

    # the backup phase ran before the switch, and said what it proved
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr
    out = " ".join(deployed.stdout.split())
    assert "db-backup" in out and "verified at L3" in out
    assert out.index("db-backup") < out.index("activate")
    backups = json.loads(rollout(folder, "db", "list", "production", "--json").stdout)
    assert [(b["kind"], b["verified_level"]) for b in backups] == [
        ("pre-deploy", 3)
    ] * 2  # one per deploy

    # v2 goes wrong: data is damaged after the release
    write(
        url,
        "DELETE FROM vehicles WHERE make = 'Volvo'",
        "INSERT INTO vehicles (make, model, year) VALUES ('Bad', 'row', 2026)",
    )
    assert makes(url) == ["Saab", "Bad"]

    rolled = rollout(folder, "rollback", "production", "--database", "--reason", "orders corrupted")

    said = " ".join(rolled.stdout.split())
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert makes(url) == ["Volvo", "Saab"]  # exactly the pre-deploy data
    for port in ports:
        assert httpx.get(f"http://127.0.0.1:{port}/api/version").json()["version"] == V1
    # what was kept aside, and where
    assert "writes made after that point are kept aside in database" in said
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres") as conn:
        kept = [
            r[0]
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{name}__prerestore_%",)
            )
        ]
    assert len(kept) == 1 and kept[0] in said
    assert makes(url.rsplit("/", 1)[0] + "/" + kept[0]) == ["Saab", "Bad"]
    backups = json.loads(rollout(folder, "db", "list", "production", "--json").stdout)
    safety = [b for b in backups if b["kind"] == "safety"]
    assert (
        len(safety) == 1
        and safety[0]["verified_level"] >= 2
        and safety[0]["folder"] in rolled.stdout.replace("\n", "")
    )
    # On record: which backup the rollback restored (v2's pre-deploy one), not only its text.
    rollback = json.loads(rollout(folder, "history", "--json").stdout)[0]
    pre_v2 = next(b for b in backups if b["kind"] == "pre-deploy")  # newest first: v2's
    assert restores(folder, rollback["id"]) == [("database.restored", pre_v2["id"])]
    report = folder / "report.md"
    made = rollout(folder, "report", str(rollback["id"]), "--out", str(folder / "report.html"),
                   "--markdown", str(report))  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert "restored" in report.read_text() and pre_v2["folder"] in report.read_text()


def test_a_backup_of_another_database_is_refused_before_anything_stops(
    app: object, postgres_port: int
) -> None:
    folder, url, ports = app  # type: ignore[misc]
    assert rollout(folder, "deploy", "production", V1).returncode == 0
    other = f"postgresql://postgres@127.0.0.1:{postgres_port}/other_{ports[0]}"
    write(url.rsplit("/", 1)[0] + "/postgres", f"CREATE DATABASE other_{ports[0]}")
    write(other, "CREATE TABLE vehicles (id serial, make text, model text, year int)")
    (folder / "other.yml").write_text((folder / "rollout.yml").read_text().replace(url, other))
    done = subprocess.run(
        [sys.executable, "-m", "rollout", "db", "backup", "production", "--level", "1", "--json", "--config", str(folder / "other.yml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    foreign = json.loads(done.stdout)["folder"]

    refused = rollout(folder, "db", "restore", "production", foreign)

    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "is a backup of" in refused.stderr and "not of this database" in refused.stderr
    for port in ports:  # still running, never stopped
        assert httpx.get(f"http://127.0.0.1:{port}/api/version").json()["version"] == V1


def test_when_the_release_fails_to_start_on_the_restored_database_the_swap_is_undone(
    app: object,
) -> None:
    folder, url, ports = app  # type: ignore[misc]
    assert rollout(folder, "deploy", "production", V1).returncode == 0
    write(url, "INSERT INTO vehicles (make, model, year) VALUES ('Volvo', '240', 1990)")
    assert rollout(folder, "deploy", "production", V2).returncode == 0
    write(url, "INSERT INTO vehicles (make, model, year) VALUES ('After', 'v2', 2026)")
    # v1's code on prod-1 is broken after the fact: it is installed, but will not start
    main = next(folder.glob(f"hosts/prod-1/srv/united-cars/releases/{V1}/united_cars/main.py"))
    main.write_text("raise SystemExit('broken on purpose')\n")

    rolled = rollout(folder, "rollback", "production", "--database")

    assert rolled.returncode == 1, rolled.stdout + rolled.stderr
    assert makes(url) == ["Volvo", "After"]  # the live data as it was: the swap was undone
    for port in ports:
        assert httpx.get(f"http://127.0.0.1:{port}/api/version").json()["version"] == V2
    said = " ".join(rolled.stdout.split())
    assert "is the database it was before the restore again" in said
    rollback = json.loads(rollout(folder, "history", "--json").stdout)[0]
    assert [action for action, _ in restores(folder, rollback["id"])] == [
        "database.restored",
        "database.restore_undone",
    ]
    # each host was put back once: one app per host runs, the one its pidfile names
    assert said.count("restore prod-1") == 1 and said.count("restore prod-2") == 1
