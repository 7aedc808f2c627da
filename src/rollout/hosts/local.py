"""A host that is a folder on this machine: commands run as local subprocesses.

Each local host has its own root folder, so one machine can stand in for a fleet (the demo, the
tests). Commands run with that folder as their working directory; paths the engine builds are
absolute and already under the root, so nothing here rewrites arguments.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path

from rollout.errors import HostError
from rollout.hosts.base import CommandResult


class LocalHost:
    """``Host`` backed by asyncio subprocesses on this machine."""

    def __init__(self, name: str, root: Path) -> None:
        self._name = name
        self._root = root.resolve()

    @property
    def name(self) -> str:
        return self._name

    @property
    def root(self) -> str:
        return str(self._root)

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> CommandResult:
        self._root.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **env} if env else None
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                cwd=self._root,
                env=full_env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise HostError(self._name, f"cannot start {argv[0]!r}: {exc.strerror}") from exc
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except TimeoutError as exc:
            proc.kill()
            await proc.wait()
            raise HostError(self._name, f"`{argv[0]}` timed out after {timeout:.0f}s") from exc
        except asyncio.CancelledError:
            # Ctrl-C: leave no orphan behind; the caller's cleanup decides what happens next.
            proc.kill()
            await proc.wait()
            raise
        result = CommandResult(
            tuple(argv),
            proc.returncode if proc.returncode is not None else -1,
            out.decode(errors="replace"),
            err.decode(errors="replace"),
        )
        return result.check(self._name) if check else result

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[str]:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=self._root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        assert proc.stdout is not None
        try:
            async for line in proc.stdout:
                yield line.decode(errors="replace").rstrip("\n")
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()

    async def put(self, local: Path, remote: str) -> None:
        await asyncio.to_thread(self._copy, local, Path(remote))

    async def get(self, remote: str, local: Path) -> None:
        await asyncio.to_thread(self._copy, Path(remote), local)

    def _copy(self, src: Path, dst: Path) -> None:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
        except OSError as exc:
            raise HostError(self._name, f"cannot copy {src} to {dst}: {exc.strerror}") from exc

    async def close(self) -> None:
        return None
