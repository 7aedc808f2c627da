"""The ``Runtime`` protocol and what every runtime is told about a host."""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rollout.hosts.base import Host
from rollout.model import CheckResult, HostState


@dataclass(frozen=True)
class Target:
    """One host of one environment, with the values its templates may use."""

    host: Host
    env: str
    vars: dict[str, str]
    url: str | None  # where this host's app answers, rendered

    @property
    def name(self) -> str:
        return self.host.name

    def path(self, *parts: str) -> str:
        """An absolute path on the host, always under the host's root (even for "/x" parts)."""
        return posixpath.join(self.host.root, *(part.lstrip("/") for part in parts))


@dataclass(frozen=True)
class Artifact:
    """A release artifact on the controller, with the checksum it must have on arrival."""

    path: Path
    sha256: str


class Runtime(Protocol):
    """How releases live on a host: install, activate, health, state, clean up."""

    async def preflight(self, target: Target, tag: str) -> list[CheckResult]:
        """The runtime's own pre-flight checks on a host (compose: the compose file and the
        image exist), run before anything changes; [] when it has none."""
        ...

    async def installed(self, target: Target, tag: str) -> bool:
        """Whether ``tag`` is fully installed (and so may be switched to) on the host."""
        ...

    async def install(self, target: Target, tag: str, artifact: Artifact | None) -> None:
        """Make ``tag`` ready to run on the host without changing what runs."""
        ...

    async def activate(self, target: Target, tag: str, *, previous: str | None) -> None:
        """Switch the host to ``tag`` (fully installed) and (re)start it."""
        ...

    async def deactivate(self, target: Target) -> None:
        """Stop the app and unlink ``current``: undo a first deployment that failed."""
        ...

    def health_url(self, target: Target, tag: str) -> str | None:
        """The URL that tells whether ``tag`` is healthy on the host, if one is configured."""
        ...

    def check_templates(self, target: Target, tag: str) -> None:
        """Fill every template for this host once, raising ``BadInput`` on an unknown name."""
        ...

    async def wait_healthy(self, target: Target, tag: str) -> str:
        """Wait until the host's app answers healthy; return evidence, raise on the deadline."""
        ...

    async def state(self, target: Target) -> HostState:
        """What the host says runs, from its files and its processes."""
        ...

    def logs_argv(
        self, target: Target, *, service: str | None, tail: int, follow: bool
    ) -> list[str]:
        """The command that prints (and with ``follow`` keeps printing) the app's log."""
        ...

    async def prune(self, target: Target, keep: int) -> list[str]:
        """Remove old releases beyond ``keep``, never the current or previous one."""
        ...
