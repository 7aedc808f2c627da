"""Time to detect and time to recover: a fault in a running release, caught by the window.

Two local hosts run the United Cars example. A good release is deployed first without a
monitoring window; then, in each run, a faulty release is deployed with the window on
(`monitor.interval: 2s`, incident level 3 on `error_rate > 10x` and `health down`, action
rollback). Its faults begin a known time after the app starts (`after_s`, past verification and
once the window's 5-interval look-back is full), so the fault hits a release already running:

  errors   /api/vehicles answers HTTP 500 (error_rate 1.0 on that route; health stays up)
  health   /api/health and /api/vehicles answer HTTP 500: the window's health probe sees it
           down. (`health_down: true` cannot be delayed: the health route reads it from the
           start, `after_s` only delays the middleware; so the middleware's 500 does it.)

The runs alternate the two kinds, and each run shifts the fault's start by a fraction of the
probe interval, so that every phase of the fault against the window's ticks is sampled.

Measured from the outside, independently of rollout's records: the benchmark's own probe reads
/api/version, /api/health and /api/vehicles on both hosts every 100 ms.

  fault start   the first failing answer (5xx or none) once both hosts serve the new release
  detect        the incident's `detected_at` (`rollout incidents --json`) - fault start,
                also in probe intervals (/ 2 s)
  recover       the first moment from which both hosts answer healthy with the previous
                release's version again - fault start

Beside them, rollout's own stage timings from its records (event log, samples, incident): its
first failing sample, the rollback phase, the incident's mitigated_at.

Run:  .venv/bin/python benchmarks/recovery.py [--runs N]   (default 5 runs, about 3 minutes)
Goal (issue): detect within 3 intervals and recover within 15 s, max over the runs. Prints
figures, never fails a build.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fixtures

from rollout.sandbox.build import Release, build_artifacts, free_port
from tests.fixtures.example_app import runtime_yaml

ROLLOUT = Path(sys.executable).with_name("rollout")
INTERVAL = 2.0  # monitor.interval, seconds
POLL = 0.1  # the benchmark's own probe, seconds
AFTER_S = 16.0  # fault start after the app's start: deploy + verify + a full 5-interval look-back
GOAL_INTERVALS, GOAL_SECONDS = 3.0, 15.0
PATHS = ("/api/version", "/api/health", "/api/vehicles")
KINDS = {
    "errors": {"error_rate": 1.0, "routes": ["/api/vehicles"]},
    "health": {"error_rate": 1.0, "routes": ["/api/health", "/api/vehicles"]},
}

RUNBOOK = """\
app: united-cars
store: .rollout/rollout.db
release: {{artifact: 'dist/united-cars-{{tag}}.tar.gz', keep: 50}}
{runtime}environments:
  production:
    batch: 1
    hosts:
      - {{name: web-1, kind: local, address: 127.0.0.1, root: hosts/web-1, url: 'http://127.0.0.1:{{port}}', vars: {{port: '{p1}'}}}}
      - {{name: web-2, kind: local, address: 127.0.0.1, root: hosts/web-2, url: 'http://127.0.0.1:{{port}}', vars: {{port: '{p2}'}}}}
verify:
  endpoints:
    - {{path: /api/health, conditions: ['[STATUS] == 200']}}
  version: {{path: /api/version, field: version}}
monitor:
  window: 90s
  interval: 2s
  paths: [/api/health, /api/vehicles]
  metrics:
    response_time_p95: {{source: probe, max: 500ms}}
    error_rate: {{source: probe, max: 1%}}
  failure_limit: 3
incidents:
  level1: {{when: ['response_time_p95 > 1x'], respond_within: 15m, actions: [notify, watch]}}
  level3: {{when: ['health down', 'error_rate > 10x'], respond_within: 5m, actions: [rollback, postmortem]}}
"""


@dataclass
class Answer:
    sent: datetime
    received: datetime
    host: str
    path: str
    status: int | None  # None: no answer
    version: str | None = None

    @property
    def failing(self) -> bool:
        return self.status is None or self.status >= 500


@dataclass
class Run:
    number: int
    kind: str
    tag: str
    started: datetime
    answers: list[Answer] = field(default_factory=list)
    outcome: str = "?"
    reason: str = ""
    fault: datetime | None = None
    fault_host: str | None = None
    detected: datetime | None = None
    recovered: datetime | None = None
    first_sample: datetime | None = None  # rollout's first failing probe sample
    rollback_started: datetime | None = None
    rollback_seconds: float | None = None
    restores: dict[str, float] = field(default_factory=dict)
    mitigated: datetime | None = None
    readings: int | None = None  # window readings from the fault to the decision

    def since_fault(self, moment: datetime | None) -> float | None:
        if moment is None or self.fault is None:
            return None
        return (moment - self.fault).total_seconds()

    @property
    def detect(self) -> float | None:
        return self.since_fault(self.detected)

    @property
    def recover(self) -> float | None:
        return self.since_fault(self.recovered)


def utc(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def probe(client: httpx.AsyncClient, host: str, base: str, path: str) -> Answer:
    sent = datetime.now(UTC)
    try:
        response = await client.get(base + path)
    except httpx.HTTPError:
        return Answer(sent, datetime.now(UTC), host, path, None)
    version = None
    if path == "/api/version" and response.status_code == 200:
        with contextlib.suppress(ValueError, AttributeError):
            version = response.json().get("version")
    return Answer(sent, datetime.now(UTC), host, path, response.status_code, version)


async def watch(hosts: dict[str, str], answers: list[Answer], stop: asyncio.Event) -> None:
    """Every POLL seconds, every path on every host at once, until told to stop."""
    async with httpx.AsyncClient(timeout=0.5) as client:
        while not stop.is_set():
            tick = time.monotonic()
            answers += await asyncio.gather(
                *(probe(client, h, base, p) for h, base in hosts.items() for p in PATHS)
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, POLL - (time.monotonic() - tick)))


def rollout(folder: Path, *args: str) -> list[str]:
    return [str(ROLLOUT), *args, "--config", str(folder / "rollout.yml")]


async def call(folder: Path, *args: str) -> tuple[int, str]:
    """A rollout command; on cancellation (SIGTERM, Ctrl-C) it is stopped the way it expects."""
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    proc = await asyncio.create_subprocess_exec(
        *rollout(folder, *args),
        cwd=folder,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await proc.communicate()
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # rollout puts the hosts back and frees its lock
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), 60)
        raise
    return proc.returncode or 0, out.decode(errors="replace")


def analyse(run: Run, good: str, hosts: list[str]) -> None:
    """Fault start and recovery from the benchmark's own answers."""
    answers = sorted(run.answers, key=lambda a: a.sent)
    # The release is in place once every host has answered its version; faults come after.
    serving: dict[str, datetime] = {}
    for a in answers:
        if a.version == run.tag and a.host not in serving:
            serving[a.host] = a.received
    if len(serving) < len(hosts):
        return
    in_place = max(serving.values())
    failing = [a for a in answers if a.sent > in_place and a.failing]
    if not failing:
        return
    run.fault, run.fault_host = failing[0].sent, failing[0].host
    # Recovery: each host's last streak of healthy answers on the previous release, to the end.
    healthy_since: dict[str, datetime | None] = {}
    for h in hosts:
        mine = [a for a in answers if a.host == h and a.sent > run.fault]
        since = None
        for a in mine:
            ok = not a.failing and (a.path != "/api/version" or a.version == good)
            if not ok:
                since = None
            elif since is None:
                since = a.received
        healthy_since[h] = since
    if all(healthy_since.values()):
        run.recovered = max(s for s in healthy_since.values() if s is not None)


def records(run: Run, folder: Path, deployment: dict[str, object]) -> None:
    """rollout's own view: its incident, its first failing sample, its rollback's stages."""
    listed = subprocess.run(
        rollout(folder, "incidents", "--json"), capture_output=True, text=True, cwd=folder
    )
    incidents = json.loads(listed.stdout or "[]")
    mine = [i for i in incidents if i.get("deployment_id") == deployment.get("deployment_id")]
    if mine:
        run.detected = utc(mine[0]["detected_at"])
        if mine[0].get("mitigated_at"):
            run.mitigated = utc(mine[0]["mitigated_at"])
    with contextlib.closing(sqlite3.connect(folder / ".rollout" / "rollout.db")) as db:
        (first,) = db.execute(
            "SELECT min(at) FROM samples WHERE deployment_id = ? AND metric = 'http_error'"
            " AND value = 1.0",
            (deployment.get("deployment_id"),),
        ).fetchone()
    run.first_sample = utc(first) if first else None
    log = deployment.get("event_log")
    if not log or not Path(str(log)).exists():
        return
    readings = []
    for line in Path(str(log)).read_text().splitlines():
        event = json.loads(line)
        step = event.get("step") or {}
        if event["event"] == "PhaseStarted" and event.get("phase") == "rollback":
            run.rollback_started = utc(event["at"])
        elif event["event"] == "PhaseFinished" and event.get("phase") == "rollback":
            run.rollback_seconds = float(event["seconds"])
        elif event["event"] == "StepFinished" and step.get("name") == "restore":
            run.restores[str(step.get("host"))] = float(event["seconds"])
        elif event["event"] == "Note" and re.match(r"\d\d:\d\d:\d\d ", event.get("message", "")):
            readings.append(utc(event["at"]))
    if run.fault is not None and run.detected is not None:
        run.readings = sum(1 for r in readings if run.fault < r <= run.detected)


def show(value: float | None, unit: str = "s", width: int = 5) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:{width}.1f}{unit and ' ' + unit}"


def report(run: Run) -> None:
    into = (run.fault - run.started).total_seconds() if run.fault else None
    detect_iv = run.detect / INTERVAL if run.detect is not None else None
    rb_start = run.since_fault(run.rollback_started)
    rb_end = (
        rb_start + run.rollback_seconds
        if rb_start is not None and run.rollback_seconds is not None
        else None
    )
    print(
        f"run {run.number} {run.kind:6} {run.outcome:11} fault +{show(into, '', 4)} s into the"
        f" deploy ({run.fault_host or '-'}); detect {show(run.detect)} ({show(detect_iv, '', 3)}"
        f" intervals, {run.readings if run.readings is not None else '-'} reading(s));"
        f" recover {show(run.recover)}",
        flush=True,
    )
    restores = ", ".join(f"{h} {s:.1f} s" for h, s in sorted(run.restores.items()))
    print(
        f"      after the fault: rollout's first failing sample {show(run.since_fault(run.first_sample))},"
        f" detected {show(run.detect)}, rollback {show(rb_start)} -> {show(rb_end)}"
        f" ({restores or '-'}), mitigated {show(run.since_fault(run.mitigated))},"
        f" both hosts healthy on the previous release {show(run.recover)}",
        flush=True,
    )
    if run.outcome != "rolled_back":
        print(f"      {run.reason[:300]}", flush=True)


async def bench(folder: Path, runs: list[Run], hosts: dict[str, str], good: str) -> None:
    code, out = await call(folder, "deploy", "production", good, "--no-monitor")
    if code != 0:
        raise SystemExit(f"deploying the good release failed ({code}):\n{out[-3000:]}")
    for run in runs:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(hosts, run.answers, stop))
        run.started = datetime.now(UTC)
        try:
            code, out = await call(folder, "deploy", "production", run.tag, "--json")
            await asyncio.sleep(1.0)  # answers after the rollback: recovery must hold
        finally:
            stop.set()
            await watcher
        try:
            deployment = json.loads(out[out.index("{") :])
        except ValueError:
            deployment = {"outcome": f"exit {code}", "reason": out[-500:]}
        run.outcome = str(deployment.get("outcome", f"exit {code}"))
        run.reason = str(deployment.get("reason") or "")
        analyse(run, good, list(hosts))
        records(run, folder, deployment)
        report(run)
        if run.outcome != "rolled_back":  # never caught: put the good release back by hand
            await call(folder, "rollback", "production", "--to", good, "--reason", "benchmark")


def stop_apps(folder: Path) -> None:
    pids = []
    for pidfile in folder.glob("hosts/*/srv/united-cars/run/app.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError, OSError):
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
    deadline = time.monotonic() + 10
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def summary(runs: list[Run]) -> None:
    detects = [r.detect for r in runs]
    recovers = [r.recover for r in runs]
    print()
    for name, values, unit in (
        ("time to detect ", detects, "s"),
        ("time to recover", recovers, "s"),
    ):
        known = [v for v in values if v is not None]
        if known:
            print(
                f"{name}  median {statistics.median(known):5.1f} {unit}  max {max(known):5.1f} {unit}"
                + (
                    f"  (median {statistics.median(known) / INTERVAL:.1f}, max"
                    f" {max(known) / INTERVAL:.1f} intervals of {INTERVAL:g} s)"
                    if "detect" in name
                    else ""
                )
                + (
                    f"  {len(values) - len(known)} run(s) without a figure"
                    if None in values
                    else ""
                )
            )
    parts: dict[str, list[float | None]] = {
        "fault -> rollout's first failing sample": [
            r.since_fault(r.first_sample) for r in runs if r.first_sample
        ],
        "first failing sample -> detected": [
            (r.detected - r.first_sample).total_seconds()
            for r in runs
            if r.detected and r.first_sample
        ],
        "detected -> rollback starts": [
            (r.rollback_started - r.detected).total_seconds()
            for r in runs
            if r.detected and r.rollback_started
        ],
        "rollback phase (rollout's record)": [
            r.rollback_seconds for r in runs if r.rollback_seconds is not None
        ],
        "rollback recorded done -> hosts seen healthy": [
            (r.recovered - r.rollback_started).total_seconds() - r.rollback_seconds
            for r in runs
            if r.recovered and r.rollback_started and r.rollback_seconds is not None
        ],
    }
    print("where the time goes, median and max (negative: seen before rollout recorded it):")
    for name, part in parts.items():
        vals = [v for v in part if v is not None]
        if vals:
            print(f"  {name:44} {statistics.median(vals):5.2f} s  {max(vals):5.2f} s")
    for kind in KINDS:
        of_kind = [r for r in runs if r.kind == kind and r.detect is not None]
        if of_kind:
            print(
                f"  {kind:6} runs: detect median {statistics.median(r.detect or 0 for r in of_kind):.1f} s"
                f", recover median {statistics.median(r.recover or 0 for r in of_kind):.1f} s"
            )


def interrupted(signum: int, frame: object) -> None:
    # SIGTERM as Ctrl-C: asyncio cancels the run (a running deploy is stopped the way rollout
    # expects, see call), then the finally below stops the apps and removes the folder.
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    day = datetime.now(UTC).strftime("%Y.%m.%d")
    good = f"v{day}-a0a0a0a"
    kinds = list(KINDS)
    runs = [
        Run(
            number=i + 1,
            kind=kinds[i % len(kinds)],
            tag=f"v{day}-{i + 1:07x}",
            started=datetime.now(UTC),
        )
        for i in range(args.runs)
    ]
    # Each run shifts the fault's start by a fraction of the interval: every phase is sampled.
    shifts = [INTERVAL * i / max(1, args.runs) for i in range(args.runs)]
    folder = Path(tempfile.mkdtemp(prefix="rollout-recovery-bench-"))
    signal.signal(signal.SIGTERM, interrupted)
    try:
        build_artifacts(
            folder,
            [Release("good", good, None)]
            + [
                Release(r.kind, r.tag, {**KINDS[r.kind], "after_s": AFTER_S + shift})
                for r, shift in zip(runs, shifts, strict=True)
            ],
        )
        ports = {"web-1": free_port(), "web-2": free_port()}
        (folder / "rollout.yml").write_text(
            RUNBOOK.format(runtime=runtime_yaml(), p1=ports["web-1"], p2=ports["web-2"])
        )
        hosts = {h: f"http://127.0.0.1:{p}" for h, p in ports.items()}
        print(
            f"{args.runs} runs, 2 local hosts, monitor interval {INTERVAL:g} s, faults"
            f" {AFTER_S:g}..{AFTER_S + shifts[-1]:.1f} s after each app's start,"
            f" own probe every {POLL * 1000:.0f} ms",
            flush=True,
        )
        asyncio.run(bench(folder, runs, hosts, good))
    except KeyboardInterrupt:
        print("interrupted: stopping the apps and removing the folder", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # cleanup is not interrupted again
        stop_apps(folder)
        shutil.rmtree(folder, ignore_errors=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    summary(runs)
    detects = [r.detect for r in runs]
    recovers = [r.recover for r in runs]
    complete = None not in detects and None not in recovers
    worst_detect = max((d for d in detects if d is not None), default=float("nan")) / INTERVAL
    worst_recover = max((r for r in recovers if r is not None), default=float("nan"))
    met = complete and worst_detect <= GOAL_INTERVALS and worst_recover <= GOAL_SECONDS
    print(
        "note (arithmetic, not measured): Flagger's defaults, a 60 s analysis interval x a failed-"
        "check threshold of 1..5 = 60-300 s to decide a rollback; the runbook allows 5 min."
    )
    print(
        f"goal: max time to detect, to recover over {len(runs)} runs"
        f" {worst_detect:.1f} intervals, {worst_recover:.1f} s"
        f" (target <= {GOAL_INTERVALS:g} intervals, <= {GOAL_SECONDS:g} s)"
        f" {'met' if met else 'missed'}"
    )


if __name__ == "__main__":
    main()
