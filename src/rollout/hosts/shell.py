"""Commands through long-lived remote shells, one SSH session reused for many commands.

Every SSH ``exec`` makes the server start a session: sshd forks a child, sets up the login and
starts the user's shell, which costs the server far more CPU than the command itself when the
command is short (``mkdir``, ``test``, ``cat .current-version``). A deploy runs dozens of such
commands per host, so each connection keeps a few ``sh`` sessions open and feeds them commands:

    ( <quoted command> ) </dev/null; printf '\\n<token> %d\\n' $?; printf '\\n<token>\\n' >&2

The command runs in a subshell, so ``cd`` or ``exit`` cannot change the session, and with stdin
from /dev/null, so it cannot eat the commands that follow. ``<token>`` is random per session,
so no command output can fake the end of a command. A session that times out or breaks is
closed and never reused; its place is taken by a new one.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from dataclasses import dataclass

import asyncssh

MAX_SESSIONS = 4  # sshd's default MaxSessions is 10; leave room for SFTP and streams


@dataclass(frozen=True)
class ShellOutput:
    exit_status: int
    stdout: bytes
    stderr: bytes


class ShellSession:
    """One remote ``sh`` reading commands from its stdin."""

    def __init__(self, process: asyncssh.SSHClientProcess[bytes]) -> None:
        self._process = process
        token = f"__rollout_{secrets.token_hex(12)}__".encode()
        self._line = token
        self._out_end = re.compile(rb"\n" + token + rb" (\d+)\n")
        self._err_end = b"\n" + token + b"\n"

    @classmethod
    async def open(cls, conn: asyncssh.SSHClientConnection) -> ShellSession:
        process = await conn.create_process("exec /bin/sh", encoding=None)
        return cls(process)

    async def run(self, command: str) -> ShellOutput:
        token = self._line.decode()
        script = (
            f"( {command}\n) </dev/null; printf '\\n%s %d\\n' {token} $?;"
            f" printf '\\n%s\\n' {token} >&2\n"
        )
        self._process.stdin.write(script.encode())
        out, err = await asyncio.gather(
            self._process.stdout.readuntil(self._out_end, max_separator_len=len(token) + 16),
            self._process.stderr.readuntil(self._err_end),
        )
        match = self._out_end.search(out)
        assert match is not None  # readuntil returned because the pattern matched
        return ShellOutput(int(match.group(1)), out[: match.start()], err[: -len(self._err_end)])

    def close(self) -> None:
        self._process.close()


class ShellPool:
    """Idle shells of one connection; a busy pool opens another, up to ``MAX_SESSIONS``."""

    def __init__(self, conn: asyncssh.SSHClientConnection) -> None:
        self._conn = conn
        self._idle: list[ShellSession] = []
        self._open = 0
        self._freed = asyncio.Condition()

    async def run(self, command: str, timeout: float) -> ShellOutput:
        """Run ``command``; ``TimeoutError`` after ``timeout`` seconds (the shell is closed)."""
        session = await self._take()
        try:
            result = await asyncio.wait_for(session.run(command), timeout)
        except BaseException:
            session.close()  # half-read output or a command still running: never reuse it
            await self._drop()
            raise
        await self._give_back(session)
        return result

    async def _take(self) -> ShellSession:
        async with self._freed:
            while not self._idle and self._open >= MAX_SESSIONS:
                await self._freed.wait()
            if self._idle:
                return self._idle.pop()
            self._open += 1
        try:
            return await ShellSession.open(self._conn)
        except BaseException:
            await self._drop()
            raise

    async def _give_back(self, session: ShellSession) -> None:
        async with self._freed:
            self._idle.append(session)
            self._freed.notify()

    async def _drop(self) -> None:
        async with self._freed:
            self._open -= 1
            self._freed.notify()

    def close(self) -> None:
        for session in self._idle:
            session.close()
        self._idle.clear()
