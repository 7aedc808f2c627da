"""Persistent SSH connections: a local holder process keeps them open between rollout runs.

With ``ssh.persist`` above zero (OpenSSH's ControlPersist, Ansible's default), `kind: ssh` hosts
are ``MuxHost`` objects: each command, stream or file copy is one request over a Unix socket to
a holder process (``rollout.hosts.holder``), which owns the real ``SshHost`` connections and
keeps each open for ``persist`` after its last use. A second ``rollout exec`` within that time
skips the key exchange, the login and the import of asyncssh, which are most of its cost.

Safety, because whoever can talk to the socket can run commands on the servers:

- the socket lives in a folder that must belong to this user with mode 0700 (refused otherwise,
  like ssh-agent and tmux do), and the socket itself is 0600;
- the holder also checks each peer's uid (SO_PEERCRED) and serves only its own user;
- host keys are verified by the holder when it connects, exactly as without it; a connection is
  tied to the known_hosts file's identity and modification time, so recording or replacing a key
  (`rollout hosts trust`) makes the next request verify afresh on a new connection;
- `rollout hosts disconnect` closes every held connection and ends the holder.

The wire format is one JSON object per line: a request, then its answers (``ok``, ``line``s of a
stream, ``end``, or ``error`` carrying the exception to raise here). A socket connection is a
session for one host: its first request names the destination, and the run sends its later
commands for that host on the same socket (the holder keeps the host's connection open while a
session lasts), which spares both processes a socket and the destination's lookup per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import weakref
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from rollout.config import HostConfig, SshSettings
from rollout.control_dir import SOCKET, default_control_dir
from rollout.errors import CommandFailed, HostError, InfrastructureError
from rollout.hosts.base import CommandResult

PIDFILE = "holder.pid"
LOG = "holder.log"
START_TIMEOUT = 15.0  # the holder imports asyncssh and pydantic before it listens
_spawn_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


def control_dir(settings: SshSettings, config_dir: Path) -> Path:
    """The holder's private folder: ssh.control_dir, $XDG_RUNTIME_DIR/rollout or /tmp/rollout-UID."""
    if settings.control_dir:
        path = Path(settings.control_dir).expanduser()
        return path if path.is_absolute() else config_dir / path
    return default_control_dir()


def private_dir(path: Path) -> Path:
    """Create ``path`` 0700, or check an existing one is ours alone; refuse anything else."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise InfrastructureError(
            f"{path} is not a private folder of this user (owner uid {info.st_uid},"
            f" mode {stat.S_IMODE(info.st_mode):o})",
            hint="persistent SSH connections need a folder only you can open:"
            f" chmod 700 {path}, or set ssh.control_dir",
        )
    if len(str(path / SOCKET)) > 100:
        raise InfrastructureError(
            f"{path / SOCKET} is too long for a Unix socket", hint="set a shorter ssh.control_dir"
        )
    return path


def _data(model: BaseModel) -> dict[str, Any]:
    """A flat settings model as JSON data, durations in seconds (what the config parser reads).

    Not ``model_dump``: building pydantic's serializers would cost every command ~30 ms.
    """
    plain = {}
    for name in type(model).model_fields:
        value = getattr(model, name)
        plain[name] = value.total_seconds() if isinstance(value, timedelta) else value
    return plain


def destination(spec: HostConfig, settings: SshSettings, config_dir: Path) -> dict[str, Any]:
    """What names one held connection in a request: the host entry, the SSH settings, the folder."""
    return {"host": _data(spec), "ssh": _data(settings), "config_dir": str(config_dir)}


def error_from(data: Mapping[str, Any]) -> InfrastructureError:
    """The exception the holder reported, rebuilt on this side of the socket."""
    if data["type"] == "CommandFailed":
        return CommandFailed(data["host"], data["command"], data["exit_status"], data["output"])
    if data["type"] == "HostError":
        return HostError(data["host"], data["message"], hint=data.get("hint"))
    return InfrastructureError(data["message"], hint=data.get("hint"))


def error_data(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, CommandFailed):
        return {
            "type": "CommandFailed",
            "host": exc.host,
            "command": exc.command,
            "exit_status": exc.exit_status,
            "output": exc.output,
        }
    if isinstance(exc, HostError):
        message = exc.message.removeprefix(f"{exc.host}: ")
        return {"type": "HostError", "host": exc.host, "message": message, "hint": exc.hint}
    if isinstance(exc, InfrastructureError):
        return {"type": "InfrastructureError", "message": exc.message, "hint": exc.hint}
    return {"type": "InfrastructureError", "message": f"connection holder failed: {exc!r}"}


class MuxHost:
    """``Host`` whose SSH connection is kept by the holder process."""

    def __init__(self, spec: HostConfig, settings: SshSettings, config_dir: Path) -> None:
        self.spec = spec
        self.settings = settings
        self.config_dir = config_dir
        self.directory = control_dir(settings, config_dir)
        self._checked = False
        self._where = destination(spec, settings, config_dir)
        # Open sessions with the holder between requests, and the event loop they belong to.
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closings = 0  # close() calls: a session taken before one is not given back

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def root(self) -> str:
        return self.spec.root or "/"

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> CommandResult:
        request = {"op": "run", "argv": list(argv), "env": dict(env or {}), "timeout": timeout}
        async with self._exchange(request) as answers:
            answer = await anext(answers)
        done = answer["ok"]
        result = CommandResult(tuple(argv), done["exit_status"], done["stdout"], done["stderr"])
        return result.check(self.name) if check else result

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[str]:
        async with self._exchange({"op": "stream", "argv": list(argv)}) as answers:
            async for answer in answers:
                if "end" in answer:
                    return
                yield answer["line"]

    async def put(self, local: Path, remote: str) -> None:
        # The holder runs on this machine as this user, so it reads the local file itself.
        request = {"op": "put", "local": str(local.resolve()), "remote": remote}
        async with self._exchange(request) as answers:
            await anext(answers)

    async def get(self, remote: str, local: Path) -> None:
        request = {"op": "get", "remote": remote, "local": str(local.resolve())}
        async with self._exchange(request) as answers:
            await anext(answers)

    async def close(self) -> None:
        """End this run's sessions; the holder keeps the SSH connection for ``ssh.persist``."""
        self.closings += 1
        for _reader, writer in self._sessions():
            writer.close()
        self._idle = []

    # --- the socket ------------------------------------------------------------------------------

    def _exchange(self, request: dict[str, Any]) -> _Exchange:
        return _Exchange(self, request)

    def _sessions(self) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        """The idle sessions, when they belong to the running loop (a new loop cannot use them)."""
        if self._loop is not asyncio.get_running_loop():
            for _reader, writer in self._idle:
                # Their loop is gone, so their transports cannot be closed; shutting the socket
                # down still ends the session, and the holder may close the connection again.
                with contextlib.suppress(OSError):
                    writer.get_extra_info("socket").shutdown(socket.SHUT_RDWR)
            self._idle, self._loop = [], asyncio.get_running_loop()
        return self._idle

    def kept_session(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        """An idle session the holder has not ended, or None."""
        idle = self._sessions()
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer
        return None

    def first_request(self, request: dict[str, Any]) -> dict[str, Any]:
        """``request`` as a new session's first: it names the destination."""
        return {**request, **self._where}

    def give_back(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, closings: int
    ) -> None:
        """Keep a session for the next request, unless the host was closed since it was taken."""
        if closings != self.closings:
            writer.close()
        else:
            self._sessions().append((reader, writer))

    async def open_socket(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if not self._checked:  # the folder's ownership and mode, once per host and run
            private_dir(self.directory)
            self._checked = True
        path = self.directory / SOCKET
        try:
            return await asyncio.open_unix_connection(str(path), limit=2**24)
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        loop = asyncio.get_running_loop()
        lock = _spawn_locks.setdefault(loop, asyncio.Lock())
        async with lock:  # twenty hosts at once start one holder, not twenty
            try:
                return await asyncio.open_unix_connection(str(path), limit=2**24)
            except (FileNotFoundError, ConnectionRefusedError):
                return await start_holder(self.directory)


class _Exchange:
    """One request on a session; the answers as an async iterator.

    A session whose request was answered in full (``ok``, ``end`` or ``error``) goes back to
    the host's idle sessions; one left mid-answer (the caller stopped reading, or was
    cancelled) is closed, since unread answers would be taken for the next request's.
    """

    def __init__(self, host: MuxHost, request: dict[str, Any]) -> None:
        self.host = host
        self.request = request
        self.session: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.answered = False
        self.closings = 0

    async def __aenter__(self) -> AsyncIterator[dict[str, Any]]:
        self.closings = self.host.closings
        kept = self.host.kept_session()
        if kept is not None and await _sent(kept[1], self.request):
            self.session = kept
        else:  # none kept, or the holder ended it meanwhile: the request never left
            session = await self.host.open_socket()
            if not await _sent(session[1], self.host.first_request(self.request)):
                raise HostError(self.host.name, "the connection holder went away")
            self.session = session
        return self._answers(self.session[0])

    async def _answers(self, reader: asyncio.StreamReader) -> AsyncIterator[dict[str, Any]]:
        while True:
            line = await reader.readline()
            if not line:
                raise HostError(self.host.name, "the connection holder went away mid-request")
            answer = json.loads(line)
            if "error" in answer:
                self.answered = True
                raise error_from(answer["error"])
            self.answered = "line" not in answer
            yield answer

    async def __aexit__(self, *exc: object) -> None:
        if self.session is None:
            return
        if self.answered:
            self.host.give_back(*self.session, self.closings)
        else:
            self.session[1].close()


async def _sent(writer: asyncio.StreamWriter, request: dict[str, Any]) -> bool:
    """Send one request line; False (the session closed) when the holder has ended it."""
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
    except OSError:
        writer.close()
        return False
    return True


async def start_holder(directory: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """Start the holder detached from this process and wait until it listens."""
    log = (directory / LOG).open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "rollout.hosts.holder", str(directory)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        start_new_session=True,  # it outlives this run and ignores the terminal's Ctrl-C
    )
    log.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    while True:
        try:
            return await asyncio.open_unix_connection(str(directory / SOCKET), limit=2**24)
        except (FileNotFoundError, ConnectionRefusedError):
            exited = process.poll()
            if (exited is not None and exited != 0) or loop.time() > deadline:
                tail = (directory / LOG).read_text(errors="replace")[-1500:]
                raise InfrastructureError(
                    "the SSH connection holder did not start", hint=f"its log says: {tail}"
                ) from None
            await asyncio.sleep(0.02)


async def disconnect(directory: Path) -> bool:
    """Ask the holder in ``directory`` to close its connections and end; False when none runs."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(directory / SOCKET))
    except (FileNotFoundError, ConnectionRefusedError):
        return False
    writer.write(b'{"op": "stop"}\n')
    await writer.drain()
    await reader.read()  # the holder closes the socket when it has closed everything
    writer.close()
    return True
