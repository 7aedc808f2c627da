"""The monitoring window's database source: a timed `SELECT 1` on the app's real database.

Its samples are the `database down` symptom (an error sample) and the database query time KPI.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import timedelta
from pathlib import Path

from rollout.config import Incidents, Metric
from rollout.monitor.incidents import Responder
from rollout.monitor.sources import DB_QUERY, DatabaseSource, Sample
from rollout.monitor.window import Outcome, Window, WindowResult
from tests.fixtures.example_app import free_port


def collect(url: str, config_dir: Path) -> Sample:
    (sample,) = asyncio.run(DatabaseSource(url, config_dir, timeout=2).collect())
    return sample


def test_a_postgresql_database_answers_with_the_time_of_its_query(
    fresh_postgres_url: str, tmp_path: Path
) -> None:
    sample = collect(fresh_postgres_url, tmp_path)

    assert (sample.metric, sample.source, sample.error) == (DB_QUERY, "database", None)
    assert sample.value is not None and 0 < sample.value < 1


def test_a_database_that_does_not_answer_is_an_error_sample_without_its_password(
    tmp_path: Path,
) -> None:
    url = f"postgresql://app:s3cret-pw@127.0.0.1:{free_port()}/shop"

    sample = collect(url, tmp_path)

    assert sample.value is None and sample.error
    assert "s3cret-pw" not in sample.error
    assert "refused" in sample.error.lower() or "connect" in sample.error.lower()


def watch(database: Path, *, lose_it_after: int) -> tuple[WindowResult, list[Sample]]:
    """A window on an SQLite database alone, which is deleted after some intervals."""
    metrics = {"db_query_time": Metric(source="database", max="100ms")}
    recorded: list[Sample] = []

    def on_samples(samples: list[Sample]) -> None:
        recorded.extend(samples)
        if len(recorded) == lose_it_after:
            database.unlink()

    window = Window(
        metrics=metrics,
        sources=[DatabaseSource(f"sqlite:///{database}", database.parent)],
        responder=Responder(Incidents(), metrics),  # level 3 by default: database down
        interval=timedelta(milliseconds=100),
        duration=timedelta(seconds=3),
        on_samples=on_samples,
    )
    return asyncio.run(window.run()), recorded


def test_a_database_gone_mid_window_is_level_3_and_rolls_back(tmp_path: Path) -> None:
    database = tmp_path / "app.db"
    sqlite3.connect(database).close()

    result, samples = watch(database, lose_it_after=3)

    assert result.outcome is Outcome.ROLLBACK
    assert result.decision is not None and result.decision.finding is not None
    assert result.decision.finding.level == 3
    assert "database down" in result.decision.finding.symptoms
    assert [s.value is not None for s in samples] == [True, True, True, False]
    assert all(s.value is not None and s.value < 0.1 for s in samples[:3])
    assert samples[3].error is not None and "does not exist" in samples[3].error
