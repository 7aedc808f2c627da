"""The audit trail's hash chain, as pure functions over plain values.

Each row's hash covers its own content and the previous row's hash, so changing, removing or
re-linking any row breaks the chain at a row ``verify_chain`` can name. What a chain cannot
show by itself is that its newest rows were cut off: the shortened chain is still valid. To
catch that, record the ``head`` hash somewhere else (a ticket, a CI log) and compare later.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit trail, as stored."""

    id: int
    at: datetime
    actor: str
    action: str
    subject: str
    details: Mapping[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditReport:
    """What walking the chain found; ``head`` is the newest hash, to anchor elsewhere."""

    ok: bool
    rows: int
    head: str
    problems: list[str] = field(default_factory=list)


def canonical_json(value: Any) -> str:
    """One spelling per value, so the same content always hashes the same."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plain(details: Mapping[str, Any]) -> dict[str, Any]:
    """Details as they will read back from JSON (tuples become lists, odd types strings), so
    the hash taken now matches the one recomputed later."""
    result: dict[str, Any] = json.loads(json.dumps(dict(details), default=str))
    return result


def entry_hash(
    *,
    id: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> str:
    payload = [id, at.astimezone(UTC).isoformat(), actor, action, subject, details, prev_hash]
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def seal(
    *,
    id: int,
    at: datetime,
    actor: str,
    action: str,
    subject: str,
    details: Mapping[str, Any],
    prev_hash: str,
) -> AuditEntry:
    """The entry that follows a row whose hash is ``prev_hash``."""
    entry = AuditEntry(id, at, actor, action, subject, details, prev_hash, hash="")
    return replace(entry, hash=_hash_of(entry))


def verify_chain(entries: Iterable[AuditEntry]) -> AuditReport:
    """Walk entries in id order and report every row that does not fit the chain."""
    problems: list[str] = []
    head, rows, expected_id = GENESIS, 0, 1
    for entry in entries:
        problems.extend(_row_problems(entry, expected_id=expected_id, prev_hash=head))
        head, rows, expected_id = entry.hash, rows + 1, entry.id + 1
    return AuditReport(ok=not problems, rows=rows, head=head, problems=problems)


def _row_problems(entry: AuditEntry, *, expected_id: int, prev_hash: str) -> list[str]:
    found = []
    if entry.id != expected_id:
        found.append(f"row {entry.id}: expected id {expected_id}; rows before it are missing")
    if entry.prev_hash != prev_hash:
        found.append(f"row {entry.id}: prev_hash does not match the previous row's hash")
    if entry.hash != _hash_of(entry):
        found.append(f"row {entry.id}: hash does not match its content (edited)")
    return found


def _hash_of(entry: AuditEntry) -> str:
    return entry_hash(
        id=entry.id,
        at=entry.at,
        actor=entry.actor,
        action=entry.action,
        subject=entry.subject,
        details=entry.details,
        prev_hash=entry.prev_hash,
    )
