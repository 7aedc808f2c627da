"""The same backup commands on an SQLite database: online backup API, integrity_check, hashes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

from rollout.database.manifest import MANIFEST, Manifest, file_entry

RUNBOOK = """\
app: shop
store: .rollout/rollout.db
runtime: {kind: release-dir, path: srv/app, start: 'true'}
environments:
  production:
    hosts: [{name: web-1, kind: local, address: localhost, root: hosts/web-1}]
    database:
      url: 'sqlite:///data/shop.db'
      backups: backups
      sanity_queries: ['select count(*) > 0 from vehicles']
"""


def setup(tmp_path: Path, rows: int = 3000) -> Path:
    (tmp_path / "rollout.yml").write_text(RUNBOOK)
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / "shop.db") as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE vehicles (id INTEGER PRIMARY KEY, make TEXT NOT NULL)")
        conn.executemany(
            "INSERT INTO vehicles (make) VALUES (?)", [(f"make-{n}",) for n in range(rows)]
        )
    return tmp_path / "rollout.yml"


def rollout(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args, "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_backup_while_the_app_writes_is_consistent_and_verified_at_l3(tmp_path: Path) -> None:
    config = setup(tmp_path)
    stop = threading.Event()

    def writer() -> None:
        with sqlite3.connect(tmp_path / "data" / "shop.db", timeout=30) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO vehicles (make) VALUES ('late')")
                conn.commit()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        done = rollout(config, "db", "backup", "production", "--json")
    finally:
        stop.set()
        thread.join()

    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["verification"]["status"] == "verified" and report["verification"]["reached"] == 3
    manifest = Manifest.from_json((Path(report["folder"]) / MANIFEST).read_text(), "test")
    assert manifest.engine == "sqlite" and manifest.identity.endswith("data/shop.db")
    (table,) = manifest.fingerprint.tables
    assert table.name == "main.vehicles" and table.rows >= 3000 and table.hash


def test_a_damaged_page_passes_l1_with_a_repaired_manifest_but_not_l2(tmp_path: Path) -> None:
    config = setup(tmp_path, rows=20000)
    done = rollout(config, "db", "backup", "production", "--json", "--level", "0")
    folder = Path(json.loads(done.stdout)["folder"])
    copy = folder / "db.sqlite"
    data = bytearray(copy.read_bytes())
    for at in range(8192, 8192 + 4096):  # scribble over the second page (a b-tree page)
        data[at] = 0xA5
    copy.write_bytes(bytes(data))
    manifest = Manifest.from_json((folder / MANIFEST).read_text(), "test")
    (folder / MANIFEST).write_text(replace(manifest, files=(file_entry(copy),)).to_json())

    verified = rollout(config, "db", "verify", str(folder), "--level", "3", "--env", "production")

    said = " ".join(verified.stdout.split())
    assert verified.returncode == 1, said
    assert "L1 verified" in said and "L2 bad" in said


def test_one_changed_byte_is_caught_at_l1(tmp_path: Path) -> None:
    config = setup(tmp_path)
    done = rollout(config, "db", "backup", "production", "--json", "--level", "0")
    copy = Path(json.loads(done.stdout)["folder"]) / "db.sqlite"
    data = bytearray(copy.read_bytes())
    data[data.index(b"make-1500")] ^= 0x01
    copy.write_bytes(bytes(data))

    verified = rollout(config, "db", "verify", str(copy.parent), "--level", "1")

    assert verified.returncode == 1 and "SHA-256 differs" in verified.stdout
