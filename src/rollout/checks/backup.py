"""Backup freshness before a deploy: the newest database backup must be recent.

Backups themselves are taken and verified by `rollout db backup` (a later piece of work); this
check reads what is there: the newest file in the environment's backup folder, on the host that
holds it (`database.via`) or here, against `checks.backup_max_age`.
"""

from __future__ import annotations

import time
from datetime import timedelta

from rollout.hosts.base import Host
from rollout.model import CheckResult, CheckStatus


async def check_backup_age(host: Host, folder: str, max_age: timedelta) -> CheckResult:
    """The age of the newest regular file under ``folder`` (find -printf: one round trip)."""
    script = 'find "$1" -type f -printf "%T@ %p\\n" 2>/dev/null | sort -n | tail -n 1'
    result = await host.run(["sh", "-c", script, "sh", folder], check=False)
    threshold = f"newer than {_hours(max_age)}"
    newest = result.stdout.strip()
    if not newest:
        return CheckResult(
            "backup",
            CheckStatus.FAIL,
            "none found",
            threshold,
            f"no backup file under {folder} on {host.name}",
            "take a backup before deploying (rollout db backup ENV, or your own job)",
            host.name,
        )
    stamp, _, path = newest.partition(" ")
    age = timedelta(seconds=max(0.0, time.time() - float(stamp)))
    ok = age <= max_age
    return CheckResult(
        "backup",
        CheckStatus.PASS if ok else CheckStatus.FAIL,
        f"{_hours(age)} old",
        threshold,
        f"newest: {path}",
        "" if ok else "the newest backup is too old: take a fresh one first",
        host.name,
    )


def _hours(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h" if hours < 48 else f"{hours / 24:.1f} d"
