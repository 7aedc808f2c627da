"""The ``Host`` protocol: run a command, put a file, get a file.

Commands are argument vectors, never shell strings: a host that needs one line (SSH) joins them
with ``shlex.join`` at its edge, so a release tag or a path can never become shell syntax. Code
that needs a pipe or a redirect builds ``["sh", "-c", script]`` with every value quoted.
"""

from __future__ import annotations

import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rollout.errors import CommandFailed


@dataclass(frozen=True)
class CommandResult:
    """What a finished command left behind."""

    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def output(self) -> str:
        return (self.stdout + self.stderr).strip()

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    def check(self, host: str) -> CommandResult:
        """Return self, or raise ``CommandFailed`` naming the host, command and output."""
        if not self.ok:
            raise CommandFailed(host, self.command, self.exit_status, self.output)
        return self


class Host(Protocol):
    """One server, as the engine sees it."""

    @property
    def name(self) -> str: ...

    @property
    def root(self) -> str:
        """The absolute path relative paths on this host are resolved against."""
        ...

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run ``argv``; raise ``CommandFailed`` on a non-zero exit when ``check``."""
        ...

    def stream(self, argv: Sequence[str]) -> AsyncIterator[str]:
        """Run ``argv`` and yield its output line by line as it comes (``logs --follow``)."""
        ...

    async def put(self, local: Path, remote: str) -> None:
        """Copy a local file to ``remote`` (absolute path on the host)."""
        ...

    async def get(self, remote: str, local: Path) -> None:
        """Copy ``remote`` (absolute path on the host) to a local file."""
        ...

    async def close(self) -> None: ...
