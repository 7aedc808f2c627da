"""Restoring a verified backup over the live database without ever being without one.

The order is the safety (reference/db-safety.md 3.2):

1. ``check``: the backup verifies at L1 and L2 now and at L3 on record (or now), and it is a
   backup of *this* database. Nothing is touched yet.
2. (the caller stops the app: maintenance)
3. (the caller takes a safety backup of the live database and verifies it)
4. ``Database.stage``: the backup restored beside the live database under a new name and
   compared with its manifest. A failure drops only that copy: the live one is untouched.
5. ``Database.swap``: live renamed to its kept name (with every write since the backup's point
   in time) and the restored copy renamed to the live name. ``swap_back`` undoes it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rollout.database.base import Database, Staged
from rollout.database.verify import Verification, verify_backup
from rollout.errors import BackupBad, BadInput


@dataclass(frozen=True)
class Swapped:
    staged: Staged

    def kept_aside(self, safety: Path | None) -> str:
        m = self.staged.manifest
        where = f"database {self.staged.kept}"
        if safety is not None:
            where += f" and the safety backup {safety}"
        position = f" (WAL {m.position})" if m.position else ""
        return (
            f"{self.staged.live} is back at {m.started_at}{position};"
            f" writes made after that point are kept aside in {where}"
        )


def check(database: Database, folder: Path, *, recorded_level: int) -> Verification:
    """L1 and L2 now, L3 on record or now; and the backup must be of this very database."""
    result = verify_backup(folder, 2, database=database)  # L1 and L2, now
    if result.status == "verified" and recorded_level < 3:
        result = verify_backup(folder, 3, database=database, cached_level=2)  # L3 never done
    if result.status != "verified":
        raise BackupBad(
            f"{folder.name} cannot be restored: {result.summary}", hint="nothing was touched"
        )
    assert result.manifest is not None
    identity = database.identity()
    if result.manifest.identity != identity:
        raise BadInput(
            f"{folder.name} is a backup of {result.manifest.identity}, not of this database"
            f" ({identity})",
            hint="restore a backup taken from this environment's database",
        )
    return result
