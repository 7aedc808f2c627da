"""Turning an environment's host entries into ``Host`` objects."""

from __future__ import annotations

from pathlib import Path

from rollout.config import Environment, HostConfig, SshSettings
from rollout.hosts.base import Host
from rollout.hosts.local import LocalHost


def make_host(spec: HostConfig, config_dir: Path, ssh: SshSettings) -> Host:
    if spec.kind == "local":
        assert spec.root is not None  # the config requires a root for local hosts
        root = Path(spec.root)
        return LocalHost(spec.name, root if root.is_absolute() else config_dir / root)
    if ssh.persist.total_seconds() > 0:
        from rollout.hosts.mux import MuxHost  # the holder process imports asyncssh, not this one

        return MuxHost(spec, ssh, config_dir)
    from rollout.hosts.ssh import SshHost  # asyncssh is imported only when a host needs it

    return SshHost(spec, ssh, config_dir)


def connect_hosts(env: Environment, config_dir: Path, ssh: SshSettings) -> dict[str, Host]:
    """Host objects for every entry; connections open on first use, one per host."""
    return {spec.name: make_host(spec, config_dir, ssh) for spec in env.hosts}
