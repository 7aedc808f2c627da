"""A backup with a manifest beside plain pg_dump, and what each verification level costs.

Starts a throwaway PostgreSQL cluster (tests/fixtures/postgres.py), fills a database of at
least 200 MB (a large table and a small one), then, alternating in each round:

  pg_dump   `pg_dump -Fc -f out.dump` of the database (what a cron job does)
  rollout   `rollout db backup bench --level 0`: the same pg_dump of an exported snapshot, the
            table fingerprints taken in that snapshot meanwhile, the dump hashed as it streams,
            pg_dumpall --globals-only, a manifest, fsync and rename; the CLI process included

and once, on the last rollout backup, `rollout db verify` at L1 (hashes), L2 (pg_restore
--list and a full read) and L3 (restore into a scratch database and compare).

Run:  .venv/bin/python benchmarks/backup.py [--rounds N] [--mb SIZE]   (about 3 minutes)
      (as root: the cluster runs as the postgres user)
Goal: rollout db backup <= 1.3x plain pg_dump (medians). Prints figures, never fails a build.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.postgres import cluster  # noqa: E402

GOAL = 1.3
ROLLOUT = Path(sys.executable).parent / "rollout"

RUNBOOK = """\
app: bench
store: .rollout/rollout.db
runtime: {{kind: release-dir, path: srv/app, start: 'true'}}
environments:
  bench:
    hosts: [{{name: db-1, kind: local, address: localhost, root: hosts/db-1}}]
    database: {{url: '{url}', backups: backups, sanity_queries: ['select count(*) > 0 from vehicles']}}
"""


def fill(url: str, megabytes: int) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE vehicles (id bigint PRIMARY KEY, make text, model text, notes text,"
            " year int, created_at timestamptz DEFAULT now())"
        )
        conn.execute("CREATE TABLE dealers (id int PRIMARY KEY, name text, city text)")
        conn.execute(
            "INSERT INTO dealers SELECT n, 'dealer ' || n, md5(n::text) FROM generate_series(1, 5000) n"
        )
        batch, start = 400_000, 0
        while True:
            conn.execute(
                "INSERT INTO vehicles (id, make, model, notes, year) SELECT n, md5(n::text),"
                " md5((n * 7)::text), repeat(md5((n * 13)::text), 2), 1980 + n %% 45"
                " FROM generate_series(%s, %s) n",
                (start + 1, start + batch),
            )
            start += batch
            row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
            assert row is not None
            if row[0] >= megabytes * 1024 * 1024:
                conn.execute("VACUUM ANALYZE")
                return int(row[0])


def timed(argv: list[str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
        )
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mb", type=int, default=200, help="database size to fill, at least")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="rollout-backup-bench-"))
    try:
        with cluster() as pg:
            with psycopg.connect(pg.url, autocommit=True) as conn:
                conn.execute("CREATE DATABASE bench")
            url = pg.url.rsplit("/", 1)[0] + "/bench"
            started = time.perf_counter()
            size = fill(url, args.mb)
            print(
                f"database: {size / 2**20:.0f} MB filled in {time.perf_counter() - started:.0f} s"
            )
            (base / "rollout.yml").write_text(RUNBOOK.format(url=url))
            env_url = psycopg.conninfo.conninfo_to_dict(url)
            plain_env = {
                "PGHOST": str(env_url["host"]), "PGPORT": str(env_url["port"]),
                "PGUSER": str(env_url["user"]), "PGDATABASE": "bench", "PATH": "/usr/bin:/bin",
            }  # fmt: skip
            plain, ours, folder = [], [], ""
            for round_ in range(args.rounds + 1):  # round 0 warms the caches, not counted
                order = ["pg_dump", "rollout"] if round_ % 2 else ["rollout", "pg_dump"]
                for tool in order:
                    if tool == "pg_dump":
                        out = base / "plain.dump"
                        t0 = time.perf_counter()
                        subprocess.run(
                            ["pg_dump", "-Fc", "-f", str(out)], env=plain_env, check=True
                        )
                        elapsed = time.perf_counter() - t0
                        dump_size = out.stat().st_size
                        out.unlink()
                        if round_:
                            plain.append(elapsed)
                    else:
                        elapsed, stdout = timed(
                            [str(ROLLOUT), "db", "backup", "bench", "--level", "0", "--json",
                             "--config", str(base / "rollout.yml")], base,
                        )  # fmt: skip
                        if folder:
                            shutil.rmtree(folder, ignore_errors=True)
                        folder = json.loads(stdout)["folder"]
                        if round_:
                            ours.append(elapsed)
                print(
                    f"  round {round_}/{args.rounds} done" if round_ else "  warm-up done",
                    flush=True,
                )
            levels = {}
            for level in (1, 2, 3):
                elapsed, _ = timed(
                    [str(ROLLOUT), "db", "verify", folder, "--level", str(level), "--env", "bench",
                     "--config", str(base / "rollout.yml")], base,
                )  # fmt: skip
                levels[level] = elapsed
                # each level on its own: forget the record, so the next one is not cached
                (base / ".rollout" / "rollout.db").unlink()
    finally:
        shutil.rmtree(base, ignore_errors=True)
    p, r = statistics.median(plain), statistics.median(ours)
    print(f"dump: {dump_size / 2**20:.0f} MB (custom format, default compression)")
    print(f"  pg_dump -Fc            median {p:6.2f} s  ({', '.join(f'{x:.2f}' for x in plain)})")
    print(
        f"  rollout db backup      median {r:6.2f} s  ({', '.join(f'{x:.2f}' for x in ours)})  {r / p:.2f}x"
    )
    for level, what in (
        (1, "SHA-256 of every file"),
        (2, "pg_restore --list + full read"),
        (3, "restore into scratch + compare"),
    ):
        print(
            f"  rollout db verify L{level}   {levels[level]:6.2f} s  {levels[level] / p:.2f}x  ({what})"
        )
    verdict = "met" if r / p <= GOAL else "missed"
    print(f"goal: backup with manifest / plain pg_dump {r / p:.2f} (target <= {GOAL}) {verdict}")


if __name__ == "__main__":
    main()
