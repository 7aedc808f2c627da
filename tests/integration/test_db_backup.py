"""`rollout db backup|verify|list|prune` against a real PostgreSQL cluster, with real damage."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from rollout.database.manifest import MANIFEST, Manifest

RUNBOOK = """\
app: shop
store: .rollout/rollout.db
runtime: {{kind: release-dir, path: srv/app, start: 'true'}}
environments:
  production:
    hosts: [{{name: web-1, kind: local, address: localhost, root: hosts/web-1}}]
    database:
      url: '{url}'
      backups: backups
      sanity_queries: ['select count(*) > 0 from vehicles']
{extra}
"""


def setup(tmp_path: Path, url: str, extra: str = "") -> Path:
    (tmp_path / "rollout.yml").write_text(RUNBOOK.format(url=url, extra=extra))
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE vehicles (id serial PRIMARY KEY, make text NOT NULL, year int)")
        conn.execute(
            "INSERT INTO vehicles (make, year) SELECT 'make-' || n, 1990 + n % 30"
            " FROM generate_series(1, 5000) n"
        )
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
        conn.execute("INSERT INTO alembic_version VALUES ('0002')")
    return tmp_path / "rollout.yml"


def rollout(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def backup(config: Path, *args: str) -> Path:
    done = rollout(config, "db", "backup", "production", "--json", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return Path(json.loads(done.stdout)["folder"])


def databases(url: str) -> set[str]:
    with psycopg.connect(url, autocommit=True) as conn:
        return {r[0] for r in conn.execute("SELECT datname FROM pg_database")}


def test_a_backup_is_whole_verified_at_l3_and_on_record(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    config = setup(tmp_path, fresh_postgres_url)

    done = rollout(config, "db", "backup", "production", "--json")

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    folder = Path(report["folder"])
    assert sorted(p.name for p in folder.iterdir()) == ["db.dump", "globals.sql", MANIFEST]
    manifest = Manifest.from_json((folder / MANIFEST).read_text(), "test")
    assert manifest.fingerprint.migration_head == "0002"
    tables = {t.name: t for t in manifest.fingerprint.tables}
    assert tables["public.vehicles"].rows == 5000 and tables["public.vehicles"].hash
    assert manifest.identity.endswith(":" + fresh_postgres_url.rsplit("/", 1)[1])
    assert [lvl["status"] for lvl in report["verification"]["levels"]] == ["verified"] * 3
    assert not [p for p in (tmp_path / "backups").iterdir() if p.name.startswith(".partial")]
    # the scratch database of L3 is gone; nothing but the live one remains
    assert not [d for d in databases(fresh_postgres_url) if "__verify_" in d]

    listed = rollout(config, "db", "list", "production", "--json")
    assert [(r["folder"], r["verified_level"]) for r in json.loads(listed.stdout)] == [
        (str(folder), 3)
    ]


def test_the_manifest_matches_the_dump_while_the_app_keeps_writing(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    config = setup(tmp_path, fresh_postgres_url)
    stop = threading.Event()

    def writer() -> None:
        with psycopg.connect(fresh_postgres_url, autocommit=True) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO vehicles (make, year) VALUES ('late', 2026)")

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        done = rollout(config, "db", "backup", "production", "--json", "--level", "3")
    finally:
        stop.set()
        thread.join()

    # L3 restored the dump and found exactly the rows the manifest counted in the snapshot
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["verification"]["status"] == "verified"


def test_a_truncated_dump_passes_pg_restore_list_but_not_l1(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    config = setup(tmp_path, fresh_postgres_url)
    folder = backup(config, "--level", "0")
    dump = folder / "db.dump"
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size * 999 // 1000])

    listed = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True)
    done = rollout(config, "db", "verify", str(folder), "--level", "1")

    assert listed.returncode == 0  # the table of contents still parses
    assert done.returncode == 1
    assert "db.dump is" in done.stdout and "the manifest says" in done.stdout


def test_one_flipped_bit_in_an_uncompressed_dump_is_caught_only_by_l1(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    config = setup(tmp_path, fresh_postgres_url, extra="      compression: 0")
    folder = backup(config, "--level", "0")
    dump = folder / "db.dump"
    data = bytearray(dump.read_bytes())
    at = data.index(b"make-2500")  # inside a row of table data
    data[at] ^= 0x01
    dump.write_bytes(bytes(data))

    read = subprocess.run(["pg_restore", "--file=/dev/null", str(dump)], capture_output=True)
    done = rollout(config, "db", "verify", str(folder), "--level", "3", "--env", "production")

    assert read.returncode == 0  # pg_restore reads it to the end without complaint
    assert done.returncode == 1
    assert "L1 bad" in done.stdout and "SHA-256 differs" in done.stdout
    assert "L2" not in done.stdout  # a bad backup is not taken further


def test_l3_finds_a_dump_that_reads_but_restores_other_content(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    config = setup(tmp_path, fresh_postgres_url, extra="      compression: 0")
    folder = backup(config, "--level", "0")
    dump = folder / "db.dump"
    data = bytearray(dump.read_bytes())
    data[data.index(b"make-2500")] ^= 0x01
    dump.write_bytes(bytes(data))
    # Someone "repairs" the manifest to match the damaged bytes: L1 and L2 pass now.
    manifest = Manifest.from_json((folder / MANIFEST).read_text(), "test")
    from rollout.database.manifest import file_entry

    files = (file_entry(dump), *manifest.files[1:])
    (folder / MANIFEST).write_text(replace(manifest, files=files).to_json())

    done = rollout(config, "db", "verify", str(folder), "--level", "3", "--env", "production")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "public.vehicles: same row count but different content" in " ".join(done.stdout.split())


def test_an_edited_manifest_is_a_bad_backup(tmp_path: Path, fresh_postgres_url: str) -> None:
    config = setup(tmp_path, fresh_postgres_url)
    folder = backup(config, "--level", "0")
    text = (folder / MANIFEST).read_text().replace('"rows": 5000', '"rows": 5001')
    (folder / MANIFEST).write_text(text)

    done = rollout(config, "db", "verify", str(folder), "--level", "1")

    assert done.returncode == 1
    assert "the manifest was changed after the backup was taken" in " ".join(done.stdout.split())


def test_a_backup_from_a_newer_pg_dump_is_refused_with_the_reason(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    config = setup(tmp_path, fresh_postgres_url)
    folder = backup(config, "--level", "0")
    manifest = Manifest.from_json((folder / MANIFEST).read_text(), "test")
    (folder / MANIFEST).write_text(replace(manifest, tool_version="99.1").to_json())

    done = rollout(config, "db", "verify", str(folder), "--level", "2")

    assert done.returncode == 2
    assert "written by pg_dump 99.1" in done.stderr and "cannot read it" in done.stderr


def test_a_missing_backup_is_bad_input(tmp_path: Path, fresh_postgres_url: str) -> None:
    config = setup(tmp_path, fresh_postgres_url)
    done = rollout(config, "db", "verify", str(tmp_path / "nope"), "--level", "1")
    assert done.returncode == 2 and "no backup named" in done.stderr


def test_a_verification_on_record_is_not_repeated_for_the_same_bytes(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    config = setup(tmp_path, fresh_postgres_url)
    folder = backup(config)  # verified at L3 when taken

    again = rollout(
        config, "db", "verify", str(folder), "--level", "3", "--env", "production", "--json"
    )

    levels = json.loads(again.stdout)["levels"]
    assert again.returncode == 0
    assert [lvl["detail"] for lvl in levels[1:]] == ["on record for these bytes"] * 2
    assert levels[0]["detail"] == "every file matches its SHA-256 and size"  # L1 always re-run


def test_l3_with_the_server_down_is_undecided_not_verified(
    tmp_path: Path, fresh_postgres_url: str, unused_tcp_port: int
) -> None:
    config = setup(tmp_path, fresh_postgres_url)
    folder = backup(config, "--level", "0")
    down = fresh_postgres_url.replace(
        fresh_postgres_url.split("@")[1].split("/")[0], f"127.0.0.1:{unused_tcp_port}"
    )
    config.write_text(config.read_text().replace(fresh_postgres_url, down))

    done = rollout(config, "db", "verify", str(folder), "--level", "3", "--env", "production")

    assert done.returncode == 3
    assert "L3 undecided" in done.stdout and "cannot connect" in done.stdout


def test_prune_keeps_the_newest_verified_backup(tmp_path: Path, fresh_postgres_url: str) -> None:
    config = setup(tmp_path, fresh_postgres_url, extra="      keep: 1")
    verified = backup(config, "--level", "1")
    older, newest = backup(config, "--level", "0"), backup(config, "--level", "0")

    done = rollout(config, "db", "prune", "production")

    assert done.returncode == 0, done.stderr
    assert (verified.exists(), older.exists(), newest.exists()) == (True, False, True)
    listed = json.loads(rollout(config, "db", "list", "production", "--json").stdout)
    assert [r["folder"] for r in listed] == [str(newest), str(verified)]


@pytest.fixture
def unused_tcp_port() -> int:
    from tests.fixtures.sshd import free_port

    return free_port()
