"""Recording SSH host keys on purpose: ``rollout hosts trust ENV``.

Host keys are never accepted silently while deploying. This is the one place a key gets into
known_hosts: the operator runs it, sees each fingerprint, and a key that differs from the one
already recorded is only replaced when asked for by name (``--replace``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncssh

from rollout.config import HostConfig
from rollout.errors import HostError
from rollout.hosts.ssh import Endpoint


@dataclass(frozen=True)
class Offered:
    host: str
    where: str  # how known_hosts names it: address or [address]:port
    fingerprint: str
    line: str  # the known_hosts line that trusts it
    status: str  # new | known | changed


async def offered_key(spec: HostConfig, known: Path) -> Offered:
    where = Endpoint(spec.address, spec.port, spec.user)
    try:
        key = await asyncssh.get_server_host_key(spec.address, spec.port, config=None)
    except (OSError, asyncssh.Error) as exc:
        raise HostError(spec.name, f"{where}: cannot read its host key: {exc}") from exc
    if key is None:
        raise HostError(spec.name, f"{where}: offered no host key")
    public = key.export_public_key("openssh").decode().split()[:2]
    recorded = _recorded(known, where)
    status = "new" if not recorded else ("known" if key.public_data in recorded else "changed")
    return Offered(
        spec.name,
        str(where),
        f"{key.get_algorithm()} {key.get_fingerprint('sha256')}",
        f"{where} {' '.join(public)}",
        status,
    )


def _recorded(known: Path, where: Endpoint) -> list[bytes]:
    if not known.is_file():
        return []
    keys = asyncssh.read_known_hosts(str(known)).match(where.address, "", where.port)[0]
    return [k.public_data for k in keys]


def record(known: Path, offers: list[Offered], *, replace: bool) -> list[Offered]:
    """Write the accepted keys; a changed key is replaced only with ``replace``. Returns what was written."""
    known.parent.mkdir(parents=True, exist_ok=True)
    lines = known.read_text().splitlines() if known.is_file() else []
    written = []
    for offer in offers:
        if offer.status == "known" or (offer.status == "changed" and not replace):
            continue
        if offer.status == "changed":
            lines = [line for line in lines if line.split(" ", 1)[0] != offer.where]
        lines.append(offer.line)
        written.append(offer)
    tmp = known.with_name(known.name + ".tmp")
    tmp.write_text("".join(f"{line}\n" for line in lines))
    tmp.replace(known)
    return written
