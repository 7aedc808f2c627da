"""Migrations in the deploy: gated at pre-flight, applied before the first switch, contract refused."""

from __future__ import annotations

from pathlib import Path

import psycopg

from tests.fixtures.sandbox import TAGS, make_sandbox

V1, V2 = TAGS[:2]


def with_database(root: Path, url: str) -> object:
    box = make_sandbox(root)
    box.env["COLUMNS"] = "250"  # step lines are cut at the terminal's width
    text = box.config.read_text().replace(
        "checks:",
        f"    database:\n      url: '{url}'\n      verify_level: 1\n"
        "      migrations: {kind: sql, path: migrations}\nchecks:",
        1,
    )
    box.config.write_text(text)
    (root / "migrations").mkdir()
    (root / "migrations" / "001_vehicles.sql").write_text(
        "CREATE TABLE IF NOT EXISTS vehicles (id bigserial PRIMARY KEY, make text NOT NULL);\n"
    )
    (root / "migrations" / "002_color.sql").write_text(
        "ALTER TABLE vehicles ADD COLUMN IF NOT EXISTS color text;\n"
    )
    return box


def columns(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_name = 'vehicles' ORDER BY ordinal_position"
        )
        return [r[0] for r in rows]


def test_expand_migrations_run_after_install_before_the_first_switch(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    box = with_database(tmp_path, fresh_postgres_url)
    try:
        done = box.rollout("deploy", "production", V1)  # type: ignore[attr-defined]

        assert done.returncode == 0, done.stdout + done.stderr
        assert columns(fresh_postgres_url) == ["id", "make", "color"]
        out = " ".join(done.stdout.split())
        assert out.index("migrations") < out.index("db-backup") < out.index("migrate")
        assert out.rindex("install") < out.index("migrate") < out.index("activate")
        assert "every pending migration is additive" in out
    finally:
        box.stop_apps()  # type: ignore[attr-defined]


def test_a_contract_migration_is_refused_at_preflight_unless_allowed(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    box = with_database(tmp_path, fresh_postgres_url)
    try:
        assert box.rollout("deploy", "production", V1).returncode == 0  # type: ignore[attr-defined]
        (tmp_path / "migrations" / "003_drop_color.sql").write_text(
            "ALTER TABLE vehicles DROP COLUMN color;\n"
        )

        refused = box.rollout("deploy", "production", V2)  # type: ignore[attr-defined]

        assert refused.returncode == 1
        said = " ".join(refused.stdout.split())
        assert "migration 3 (003_drop_color.sql) is a contract migration" in said
        assert columns(fresh_postgres_url) == ["id", "make", "color"]  # nothing ran
        assert {box.current(h) for h in box.hosts} == {V1}  # type: ignore[attr-defined]

        allowed = box.rollout("deploy", "production", V2, "--allow-contract")  # type: ignore[attr-defined]

        assert allowed.returncode == 0, allowed.stdout + allowed.stderr
        assert columns(fresh_postgres_url) == ["id", "make"]
        assert "rolling back means `rollout db restore`" in " ".join(allowed.stdout.split())
    finally:
        box.stop_apps()  # type: ignore[attr-defined]


def test_a_restore_while_a_writer_keeps_writing_keeps_every_write_somewhere(
    tmp_path: Path, fresh_postgres_url: str
) -> None:
    import json
    import threading
    import time

    box = with_database(tmp_path, fresh_postgres_url)
    try:
        assert box.rollout("deploy", "production", V1).returncode == 0  # type: ignore[attr-defined]
        assert box.rollout("deploy", "production", V2).returncode == 0  # type: ignore[attr-defined]
        backup = json.loads(box.rollout("db", "list", "production", "--json").stdout)[0]["folder"]  # type: ignore[attr-defined]
        written: list[int] = []
        stop = threading.Event()

        def writer() -> None:  # another client of the database, which the app stop does not stop
            n = 0
            while not stop.is_set():
                try:
                    with psycopg.connect(
                        fresh_postgres_url, autocommit=True, connect_timeout=2
                    ) as conn:
                        while not stop.is_set():
                            n += 1
                            conn.execute("INSERT INTO vehicles (make) VALUES (%s)", (f"w{n}",))
                            written.append(n)
                            time.sleep(0.005)
                except psycopg.Error:
                    time.sleep(0.05)  # cut off by the swap, or refused during it: try again

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            time.sleep(0.3)
            restored = box.rollout("db", "restore", "production", backup)  # type: ignore[attr-defined]
            time.sleep(0.3)
        finally:
            stop.set()
            thread.join()

        assert restored.returncode == 0, restored.stdout + restored.stderr
        said = " ".join(restored.stdout.split())
        kept = said.split("kept aside in database ")[1].split()[0]
        base = fresh_postgres_url.rsplit("/", 1)[0]
        with psycopg.connect(fresh_postgres_url) as live, psycopg.connect(f"{base}/{kept}") as old:
            after = {r[0] for r in live.execute("SELECT make FROM vehicles")}
            before = {r[0] for r in old.execute("SELECT make FROM vehicles")}
        # every acknowledged write is in the kept database (before the swap) or the live one (after)
        assert {f"w{n}" for n in written} <= before | after
        assert before and after  # writes landed on both sides of the swap
        assert not (before & after)  # the restored database started from the backup, without them
    finally:
        box.stop_apps()  # type: ignore[attr-defined]
