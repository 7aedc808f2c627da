"""Turning an environment's host entries into ``Host`` objects."""

from __future__ import annotations

from pathlib import Path

from rollout.config import Environment, HostConfig
from rollout.errors import BadInput
from rollout.hosts.base import Host
from rollout.hosts.local import LocalHost


def make_host(spec: HostConfig, config_dir: Path) -> Host:
    if spec.kind == "local":
        assert spec.root is not None  # the config requires a root for local hosts
        root = Path(spec.root)
        return LocalHost(spec.name, root if root.is_absolute() else config_dir / root)
    raise BadInput(
        f"host {spec.name}: kind {spec.kind!r} is not available in this version",
        hint="use kind: local hosts for now; SSH hosts arrive with the fleet work (issue 3)",
    )


def connect_hosts(env: Environment, config_dir: Path) -> dict[str, Host]:
    return {spec.name: make_host(spec, config_dir) for spec in env.hosts}
