"""Server resources measured on the host itself, over its ``Host`` connection."""

from __future__ import annotations

import posixpath

from rollout.hosts.base import Host
from rollout.model import CheckResult, CheckStatus


async def check_disk(host: Host, path: str, max_percent: float) -> CheckResult:
    """Use of the filesystem holding ``path`` (its nearest existing parent), as ``df`` reports it."""
    script = 'p="$1"; while [ ! -e "$p" ]; do p=$(dirname "$p"); done; df -P "$p" | tail -n 1'
    result = await host.run(["sh", "-c", script, "sh", path], check=False)
    check_id = f"disk {posixpath.normpath(path)}"
    threshold = f"< {max_percent:g} %"
    fields = result.stdout.split()
    if not result.ok or len(fields) < 6 or not fields[4].endswith("%"):
        return CheckResult(
            check_id,
            CheckStatus.FAIL,
            "unreadable",
            threshold,
            f"df failed: {result.output[-300:]}",
            "is df installed on the host?",
            host.name,
        )
    used = float(fields[4].rstrip("%"))
    free_gib = int(fields[3]) / 1024 / 1024
    ok = used < max_percent
    return CheckResult(
        check_id,
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        f"{used:g} % used ({free_gib:.1f} GiB free on {fields[5]})",
        threshold,
        f"df -P {path}: {' '.join(fields)}",
        "" if ok else "free space (old releases, logs, images) before deploying",
        host.name,
    )


def cpu_readings(text: str) -> list[list[int]]:
    """Every aggregate ``cpu`` line of /proc/stat output in ``text``, as jiffies per state."""
    return [
        [int(v) for v in line.split()[1:]]
        for line in text.splitlines()
        if line.startswith("cpu ")
        and len(line.split()) > 4  # user nice system idle, at least
        and all(v.isdigit() for v in line.split()[1:])
    ]


def cpu_spent(before: list[int], after: list[int]) -> tuple[int, int]:
    """Jiffies spent between two /proc/stat readings: (all states, idle + iowait)."""
    deltas = [b - a for a, b in zip(before, after, strict=False)]
    idle = deltas[3] + (deltas[4] if len(deltas) > 4 else 0)
    return sum(deltas), idle


def meminfo_fields(text: str) -> dict[str, int]:
    """/proc/meminfo output as ``{"MemTotal": kB, ...}``; lines that are not ``key: n`` are skipped."""
    fields = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if rest.split() and rest.split()[0].isdigit():
            fields[key] = int(rest.split()[0])
    return fields


# Two /proc/stat samples this far apart: long enough to smooth a spike, short enough for a gate.
CPU_SAMPLE_SECONDS = 0.5


async def check_cpu(
    host: Host, max_percent: float, interval: float = CPU_SAMPLE_SECONDS
) -> CheckResult:
    """CPU busy share over ``interval``, from two readings of /proc/stat (what `top` does)."""
    if max_percent >= 100:  # no limit: nothing to gate on, so no half second spent sampling
        return CheckResult(
            "cpu", CheckStatus.SKIP, "", "no limit", "checks.cpu_max is 100 %", host=host.name
        )
    script = f"head -n 1 /proc/stat; sleep {interval:g}; head -n 1 /proc/stat"
    result = await host.run(["sh", "-c", script], check=False)
    threshold = f"< {max_percent:g} %"
    lines = cpu_readings(result.stdout)
    if not result.ok or len(lines) != 2:
        return CheckResult(
            "cpu",
            CheckStatus.FAIL,
            "unreadable",
            threshold,
            f"/proc/stat: {result.output[-300:]}",
            "is this a Linux host?",
            host.name,
        )
    total, idle = cpu_spent(lines[0], lines[1])
    total = total or 1
    busy = 100 * (total - idle) / total
    ok = busy < max_percent
    return CheckResult(
        "cpu",
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        f"{busy:.0f} % busy",
        threshold,
        f"/proc/stat over {interval:g} s: {total} jiffies, {idle} idle",
        "" if ok else "find what loads the host (top) before adding a deploy to it",
        host.name,
    )


async def check_memory(host: Host, max_percent: float) -> CheckResult:
    """Memory in use, as MemTotal - MemAvailable (what the kernel could not hand out now)."""
    result = await host.run(["cat", "/proc/meminfo"], check=False)
    threshold = f"< {max_percent:g} %"
    fields = meminfo_fields(result.stdout)
    if not result.ok or "MemTotal" not in fields or "MemAvailable" not in fields:
        return CheckResult(
            "memory",
            CheckStatus.FAIL,
            "unreadable",
            threshold,
            f"/proc/meminfo: {result.output[-300:]}",
            "is this a Linux host?",
            host.name,
        )
    total, available = fields["MemTotal"], fields["MemAvailable"]
    used = 100 * (total - available) / total
    ok = used < max_percent
    return CheckResult(
        "memory",
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        f"{used:.0f} % used ({available / 1024 / 1024:.1f} GiB available)",
        threshold,
        f"/proc/meminfo: MemTotal {total} kB, MemAvailable {available} kB",
        "" if ok else "free memory (or add it) before deploying a second copy of the app",
        host.name,
    )
