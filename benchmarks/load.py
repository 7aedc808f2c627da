"""How fast rollout's load check drives a server, next to wrk against the same one, in one run.

Both load the United Cars example app, started here under uvicorn (one worker, the way the
example's runbook runs it) on a free loopback port, at concurrency 10 over keep-alive
connections. The URL is /api/health: it is what a deploy verifies under load, and being the
cheapest route (one SELECT 1, a small JSON body) it leaves the most room for the client to be
the bottleneck, so it is the harshest test of the client's speed. The tools take turns, ROUNDS
rounds each after one uncounted warm-up round, and the medians are compared. rollout's figures
come from the library call the CLI makes (``rollout.checks.load.run``), in this process.

Run: .venv/bin/python benchmarks/load.py
Goal (V4): rollout's requests per second at least half of wrk's.
Note: wrk is C with its own event loop; the client and the Python server share this machine's
CPUs, so what either client spends per request is taken from the server.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))  # the example app's test helper

from rollout.checks import load  # noqa: E402
from tests.fixtures.example_app import start_example_app, stop  # noqa: E402

ROUNDS = 3
CONCURRENCY = 10
WRK_SECONDS = 5
ROLLOUT_REQUESTS = 3000  # about as long as wrk's run at this server's rate
GOAL = 0.5
WRK = shutil.which("wrk") or "/usr/bin/wrk"

# wrk's `done` hook: its own p95 (latency is in microseconds) and rate, machine-readable.
WRK_SCRIPT = """\
done = function(summary, latency, requests)
  io.write(string.format("rollout-bench rps %.3f p95_us %d requests %d errors %d\\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(95), summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout))
end
"""


def run_wrk(url: str, script: Path, seconds: int) -> tuple[float, float]:
    threads = min(2, os.cpu_count() or 1)
    argv = [WRK, f"-t{threads}", f"-c{CONCURRENCY}", f"-d{seconds}s", "--latency", "-s"]
    result = subprocess.run([*argv, str(script), url], capture_output=True, text=True, check=True)
    match = re.search(
        r"rollout-bench rps ([\d.]+) p95_us (\d+) requests \d+ errors (\d+)", result.stdout
    )
    if match is None:
        raise SystemExit(f"unexpected wrk output:\n{result.stdout}\n{result.stderr}")
    if int(match.group(3)):
        raise SystemExit(f"wrk saw errors:\n{result.stdout}")
    return float(match.group(1)), int(match.group(2)) / 1000


def run_rollout(url: str, requests: int, *, httpx_path: bool = False) -> tuple[float, float, str]:
    # httpx_path: the same call forced onto the httpx client (what https URLs use), to show why
    # plain http uses the lean asyncio client. Informational; the goal is judged on the default.
    lean = load._lean_path_applies
    if httpx_path:
        load._lean_path_applies = lambda parts: False
    try:
        report = asyncio.run(
            load.run(url, requests=requests, concurrency=CONCURRENCY, thresholds=["rate==0"])
        )
    finally:
        load._lean_path_applies = lean
    if report.error_rate or report.latency is None:
        raise SystemExit("\n".join(report.lines()))
    return report.rps, report.latency.p95, report.client


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="rollout-bench-load-"))
    script = folder / "p95.lua"
    script.write_text(WRK_SCRIPT)
    proc, base = start_example_app(folder)
    url = f"{base}/api/health"
    names = ("wrk", "rollout", "rollout (httpx path)")
    rps: dict[str, list[float]] = {name: [] for name in names}
    p95: dict[str, list[float]] = {name: [] for name in names}
    client = ""
    try:
        run_wrk(url, script, 1)  # warm-up, not counted
        run_rollout(url, 500)
        for _ in range(ROUNDS):  # interleaved, so machine noise hits both alike
            r, p = run_wrk(url, script, WRK_SECONDS)
            rps["wrk"].append(r)
            p95["wrk"].append(p)
            r, p, client = run_rollout(url, ROLLOUT_REQUESTS)
            rps["rollout"].append(r)
            p95["rollout"].append(p)
            r, p, _ = run_rollout(url, ROLLOUT_REQUESTS // 2, httpx_path=True)
            rps["rollout (httpx path)"].append(r)
            p95["rollout (httpx path)"].append(p)
    finally:
        stop(proc)
    print(
        f"server: example app, uvicorn 1 worker, GET /api/health; concurrency {CONCURRENCY},"
        f" {ROUNDS} rounds (wrk {WRK_SECONDS} s each, rollout {ROLLOUT_REQUESTS} requests each,"
        f" client {client})"
    )
    medians = {name: statistics.median(values) for name, values in rps.items()}
    for name in names:
        print(
            f"{name:21} median {medians[name]:7.1f} req/s  p95 {statistics.median(p95[name]):6.2f} ms"
            "   runs: " + " ".join(f"{v:.1f}" for v in rps[name])
        )
    httpx_ratio = medians["rollout (httpx path)"] / medians["wrk"]
    print(f"httpx path / wrk {httpx_ratio:.2f} (why plain http:// URLs use the asyncio client)")
    ratio = medians["rollout"] / medians["wrk"]
    verdict = "met" if ratio >= GOAL else "missed"
    print(f"goal: rollout load rate / wrk rate {ratio:.2f} (target >= {GOAL}) {verdict}")


if __name__ == "__main__":
    main()
