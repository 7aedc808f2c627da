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
