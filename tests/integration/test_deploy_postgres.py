"""Teams and CI runners share one history: the same deploy with the store on PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.fixtures.sandbox import TAGS, make_sandbox


@pytest.mark.postgres
def test_deploy_and_lock_with_a_postgresql_store(tmp_path: Path, fresh_postgres_url: str) -> None:
    box = make_sandbox(tmp_path, hosts=2, store=fresh_postgres_url)
    try:
        assert box.rollout("deploy", "production", TAGS[0]).returncode == 0
        assert box.rollout("deploy", "production", TAGS[1]).returncode == 0
        records = json.loads(box.rollout("history", "--json").stdout)
        assert [(r["tag"], r["status"]) for r in records] == [
            (TAGS[1], "succeeded"),
            (TAGS[0], "succeeded"),
        ]
        assert box.rollout("audit", "verify").returncode == 0
        assert not (tmp_path / ".rollout" / "rollout.db").exists()  # nothing went to SQLite
    finally:
        box.stop_apps()
