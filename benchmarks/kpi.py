"""How long `rollout kpi` takes over a big history, on SQLite and on PostgreSQL.

Fills a store with 100 000 production deployments over the last 80 days (4 % rolled back
automatically, 2 % undone by a `rollout rollback` record, 1 % followed by a hotfix, 3 % with
one or two incidents), 10 000 staging deployments that must not count, the changes each
deployment ships (1 to 3 commits: its own and older ones merged with it, some squash-merged;
2 % also ship the previous deployment's commit again, and 2 % redeploy one same commit: each
change counts once), and 1 000 000 monitoring samples (a third each `http_error`,
`latency_seconds` and `db_query_seconds`, 0.1 % of the database queries unanswered). The
rows are written with the drivers' bulk paths (sqlite3 executemany, PostgreSQL COPY) into a
store created and migrated by rollout itself, changes after their deployments as rollout
writes them; the facts rollout derives from them (each change's lead times, samples counted
per hour; see migrations 0004 and 0005) are written by the store's own triggers as the rows
go in, as for any write.

Then it times, on each backend:
  library   `rollout.kpi.compute` in this process, best of 5 (what the figures cost)
  CLI       `python -m rollout kpi --json` in a child process, best of 3, and the same
            command over an empty store of the same backend: the difference is what the
            data costs; the rest is the interpreter, imports and connecting

Run:  .venv/bin/python benchmarks/kpi.py   (a few minutes, mostly filling: the triggers run
      once per row on SQLite; PostgreSQL from the test fixture)
Goal (issue): the KPIs of 100 000 deployments and 1 000 000 samples in under 1 s on each
backend. Prints figures, never fails a build.
"""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rollout.kpi import Report, Window, compute  # noqa: E402
from rollout.store import open_store  # noqa: E402

DEPLOYMENTS = 100_000
STAGING = 10_000
SAMPLES = 1_000_000
NOW = datetime.now(UTC).replace(microsecond=0)
SPAN = timedelta(days=80)

RUNBOOK = """\
app: bench
store: {store}
runtime: {{kind: release-dir, path: srv/app, launcher: {{command: ['true']}}}}
environments:
  production:
    hosts: [{{name: web-1, kind: local, address: 127.0.0.1, root: hosts/web-1}}]
  staging:
    hosts: [{{name: web-2, kind: local, address: 127.0.0.1, root: hosts/web-2}}]
incidents:
  level1: {{respond_within: 15m}}
  level2: {{respond_within: 10m}}
  level3: {{respond_within: 5m, actions: [rollback]}}
"""

DEPLOY_COLUMNS = [
    "id",
    "app",
    "env",
    "kind",
    "tag",
    "previous_tag",
    "commit_sha",
    "committed_at",
    "merged_at",
    "actor",
    "roles",
    "status",
    "started_at",
    "finished_at",
    "reason",
    "rollback_of",
]
INCIDENT_COLUMNS = [
    "deployment_id",
    "env",
    "level",
    "title",
    "symptoms",
    "status",
    "impact_start",
    "detected_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
]
CHANGE_COLUMNS = ["deployment_id", "env", "sha", "committed_at", "merged_at"]
SAMPLE_COLUMNS = ["env", "metric", "source", "at", "value", "labels"]

Rows = list[tuple[object, ...]]


def history(rng: random.Random) -> tuple[Rows, Rows, Rows]:
    """Deployment, incident and change rows, as tuples in the column orders above."""
    deployments: Rows = []
    incidents: Rows = []
    changes: Rows = []
    previous: dict[str, tuple[object, ...]] = {}  # each environment's last change
    step = SPAN / (DEPLOYMENTS + STAGING)
    hotfix_next = False
    for n in range(1, DEPLOYMENTS + STAGING + 1):
        started = NOW - SPAN + step * n
        finished = started + timedelta(seconds=rng.uniform(30, 300))
        env = "staging" if n % 11 == 0 else "production"
        sha = f"{rng.getrandbits(160):040x}" if rng.random() > 0.02 else "0" * 40
        committed = started - timedelta(minutes=rng.lognormvariate(4.5, 1.2))
        merged = committed if rng.random() < 0.3 else committed + (started - committed) / 2
        status = "rolled_back" if rng.random() < 0.04 else "succeeded"
        tag = f"v{n}-hotfix" if hotfix_next else f"v{n}"
        hotfix_next = env == "production" and rng.random() < 0.01
        ident = len(deployments) + 1
        own = (sha, committed, merged)
        shipped = [own] + [older(rng, committed, merged) for _ in range(rng.choice((0, 1, 2)))]
        if env in previous and previous[env][0] != sha and rng.random() < 0.02:
            shipped.append(previous[env])  # shipped again in this range: counts at the first
        previous[env] = own
        changes += [(ident, env, *change) for change in shipped]
        deployments.append(
            (
                ident,
                "bench",
                env,
                "deploy",
                tag,
                f"v{n - 1}",
                sha,
                committed,
                merged,
                "bench",
                "[]",
                status,
                started,
                finished,
                None,
                None,
            )
        )
        if env == "production" and rng.random() < 0.02:  # undone by `rollout rollback`
            back = finished + timedelta(minutes=5)
            deployments.append(
                (
                    ident + 1,
                    "bench",
                    env,
                    "rollback",
                    f"v{n - 1}",
                    tag,
                    None,
                    None,
                    None,
                    "bench",
                    "[]",
                    "succeeded",
                    back,
                    back + timedelta(minutes=1),
                    "bad",
                    ident,
                )
            )
        if env == "production" and rng.random() < 0.03:
            for _ in range(rng.choice((1, 2))):
                incidents.append(incident(rng, ident, finished))
    return deployments, incidents, changes


def older(rng: random.Random, committed: datetime, merged: datetime) -> tuple[object, ...]:
    """A commit written before the deployed one and merged with it."""
    written = committed - timedelta(minutes=rng.lognormvariate(4.0, 1.0))
    return (f"{rng.getrandbits(160):040x}", written, merged)


def incident(rng: random.Random, deployment: int, finished: datetime) -> tuple[object, ...]:
    impact = finished + timedelta(minutes=rng.uniform(1, 30))
    detected = impact + timedelta(minutes=rng.uniform(0.5, 3))
    acked = detected + timedelta(minutes=rng.uniform(0.5, 20))
    mitigated = detected + timedelta(minutes=rng.lognormvariate(2.5, 0.8))
    level = rng.choice((1, 2, 3))
    return (
        deployment,
        "production",
        level,
        "bench",
        "error_rate",
        "resolved",
        impact,
        detected,
        acked,
        mitigated,
        mitigated + timedelta(hours=1),
    )


def samples(rng: random.Random) -> Iterator[tuple[object, ...]]:
    step = SPAN / SAMPLES
    for n in range(SAMPLES):
        at = NOW - SPAN + step * n
        if n % 3 == 0:
            yield ("production", "http_error", "probe", at, float(rng.random() < 0.0005), "{}")
        elif n % 3 == 1:
            latency = rng.lognormvariate(-2.5, 0.6)
            yield ("production", "latency_seconds", "probe", at, latency, "{}")
        elif rng.random() < 0.001:
            yield ("production", "db_query_seconds", "database", at, None, '{"error": "down"}')
        else:
            query = rng.lognormvariate(-5.5, 0.5)  # about 4 ms
            yield ("production", "db_query_seconds", "database", at, query, "{}")


def _sqlite_time(value: object) -> object:
    return (
        value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        if isinstance(value, datetime)
        else value
    )


def fill_sqlite(url: str, rng: random.Random) -> None:
    deployments, incidents, changes = history(rng)
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    db.execute("PRAGMA cache_size = -262144")  # 256 MB: a bulk load's indexes stay in memory
    with db:
        for table, columns, rows in (
            ("deployments", DEPLOY_COLUMNS, deployments),
            ("incidents", INCIDENT_COLUMNS, incidents),
            ("changes", CHANGE_COLUMNS, changes),
            ("samples", SAMPLE_COLUMNS, samples(rng)),
        ):
            marks = ", ".join("?" * len(columns))
            db.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                ([_sqlite_time(v) for v in row] for row in rows),
            )
    db.execute("ANALYZE")
    db.close()


def fill_postgres(url: str, rng: random.Random) -> None:
    import psycopg

    deployments, incidents, changes = history(rng)
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        for table, columns, rows in (
            ("deployments", DEPLOY_COLUMNS, deployments),
            ("incidents", INCIDENT_COLUMNS, incidents),
            ("changes", CHANGE_COLUMNS, changes),
            ("samples", SAMPLE_COLUMNS, samples(rng)),
        ):
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        cur.execute("SELECT setval('deployments_id_seq', (SELECT max(id) FROM deployments))")
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE")


def derived(url: str) -> str:
    """Whether the triggers kept lead_times whole over the bulk writes: one row per change
    that a production deployment recorded."""
    shipped = """SELECT count(*) FROM (SELECT DISTINCT c.env, c.sha FROM changes AS c
                 JOIN deployments AS d ON d.id = c.deployment_id
                 WHERE d.kind = 'deploy' AND d.status IN ('succeeded', 'rolled_back')) AS k"""
    with open_store(url) as store, store.engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM changes").scalar()
        changes = conn.exec_driver_sql(shipped).scalar()
        lead_times = conn.exec_driver_sql("SELECT count(*) FROM lead_times").scalar()
    same = "as many" if changes == lead_times else "MISMATCH:"
    return f"{rows} changes recorded, {changes} shipped, {same} {lead_times} lead times"


def time_library(url: str) -> tuple[float, Report]:
    best, report = float("inf"), None
    with open_store(url) as store:
        for _ in range(5):
            start = time.perf_counter()
            report = compute(
                store.engine,
                Window("production", NOW - timedelta(days=90), NOW + timedelta(seconds=1)),
            )
            best = min(best, time.perf_counter() - start)
    assert report is not None
    return best, report


def time_cli(config: Path) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "rollout", "kpi", "--json", "--config", str(config)],
            capture_output=True,
            text=True,
            check=False,
        )
        best = min(best, time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"rollout kpi failed: {done.stderr}")
    return best


def measure(
    name: str,
    url: str,
    empty_url: str,
    folder: Path,
    fill: Callable[[str, random.Random], None],
) -> float:
    empty = folder / f"empty-{name}"
    empty.mkdir()
    (empty / "rollout.yml").write_text(RUNBOOK.format(store=empty_url.removeprefix("sqlite:///")))
    config = folder / f"{name}.yml"
    config.write_text(RUNBOOK.format(store=url.removeprefix("sqlite:///")))
    open_store(url).close()  # rollout creates and migrates the schema
    start = time.perf_counter()
    fill(url, random.Random(7))
    print(f"{name}: filled in {time.perf_counter() - start:.1f} s; {derived(url)}")
    library, report = time_library(url)
    time_cli(empty / "rollout.yml")  # creates and migrates the empty store
    cli, baseline = time_cli(config), time_cli(empty / "rollout.yml")
    print(
        f"{name}: library {library:.3f} s; CLI {cli:.2f} s, CLI over an empty store "
        f"{baseline:.2f} s (the data's share: {cli - baseline:+.2f} s)"
    )
    show(report)
    return library


def show(report: Report) -> None:
    for f in report.figures:
        value = "-" if f.value is None else f"{f.value:.4g} {f.unit}"
        tiers = "/".join(t or "-" for t in f.tiers.values())
        met = {True: "met", False: "missed", None: ""}[f.met]
        print(f"  {f.label:52} {value:>16}  {f.target or '':>22} {met:6} {tiers}")


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.postgres import cluster

    with tempfile.TemporaryDirectory(prefix="rollout-kpi-bench-") as tmp:
        folder = Path(tmp)
        sqlite_s = measure(
            "sqlite",
            f"sqlite:///{folder / 'kpi.db'}",
            f"sqlite:///{folder / 'empty.db'}",
            folder,
            fill_sqlite,
        )
        with cluster() as running:
            import psycopg

            with psycopg.connect(running.url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE kpi")
                conn.execute("CREATE DATABASE empty")
            server = running.url.rsplit("/", 1)[0]
            postgres_s = measure(
                "postgres", f"{server}/kpi", f"{server}/empty", folder, fill_postgres
            )
    met = "met" if max(sqlite_s, postgres_s) < 1 else "missed"
    print(
        f"goal: rollout kpi on SQLite {sqlite_s:.2f} s, on PostgreSQL {postgres_s:.2f} s "
        f"(target < 1 s each) {met}"
    )


if __name__ == "__main__":
    main()
