"""The SSH connection holder: ``python -m rollout.hosts.holder CONTROL_DIR`` (see hosts/mux.py).

One holder per user and control folder. It listens on ``CONTROL_DIR/holder.sock``, serves only
its own uid, keeps one ``SshHost`` per destination (the host entry, the SSH settings and the
known_hosts file as it is now), closes each after its ``persist`` time without use, and ends
when it holds nothing. A second holder started at the same time finds the folder's lock taken
and leaves at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout.config import HostConfig, SshSettings
from rollout.control_dir import SOCKET
from rollout.hosts.mux import PIDFILE, control_dir, destination, error_data, private_dir
from rollout.hosts.ssh import SshHost, known_hosts_path

REAP_EVERY = 0.5  # seconds between looks for idle connections
STREAM_CLOSE_WAIT = 1.0  # seconds a left stream's channel gets to close before the session ends


@dataclass
class Held:
    host: SshHost
    persist: float
    last_used: float
    busy: int = 0


@dataclass
class Holder:
    directory: Path
    held: dict[str, Held] = field(default_factory=dict)
    last_request: float = 0.0
    persist: float = 5.0  # how long to wait for the first request before leaving
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    # Validated (host, settings, known_hosts path) by the request's raw data: every command
    # of a run names the same few destinations, and validating them again costs the CPU the
    # caller shares with this process.
    parsed: dict[str, tuple[HostConfig, SshSettings, Path]] = field(default_factory=dict)

    def destination(self, request: dict[str, Any]) -> Held:
        """The held connection for this request's host, made (not yet connected) when new."""
        raw = json.dumps([request["host"], request["ssh"], request["config_dir"]], sort_keys=True)
        if raw not in self.parsed:
            settings = SshSettings.model_validate(request["ssh"])
            self.parsed[raw] = (
                HostConfig.model_validate(request["host"]),
                settings,
                known_hosts_path(settings, Path(request["config_dir"])),
            )
        spec, settings, known = self.parsed[raw]
        config_dir = Path(request["config_dir"])
        try:
            trust = known.stat()
            trusted_as = [trust.st_ino, trust.st_mtime_ns, trust.st_size]
        except OSError:
            trusted_as = None  # SshHost says what is wrong when it connects
        key = hashlib.sha256(f"{raw}{trusted_as}".encode()).hexdigest()
        now = asyncio.get_running_loop().time()
        persist = settings.persist.total_seconds()
        self.persist = max(self.persist, persist)
        if key not in self.held:
            self.held[key] = Held(SshHost(spec, settings, config_dir), persist, now)
        held = self.held[key]
        held.last_used, held.persist = now, persist
        return held

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One socket connection: a one-off request (stop, exec) or a session for one host."""
        try:
            if not self._same_user(writer):
                return
            line = await reader.readline()
            if not line:
                return
            request = json.loads(line)
            self.last_request = asyncio.get_running_loop().time()
            if request["op"] == "stop":
                # Close first, then end: ending first would cancel this task mid-close.
                await self.close_all()
                self.stopping.set()
                return
            if request["op"] == "exec":
                await _send(writer, await self.run_exec(request))
                return
            await self.session(self.destination(request), request, reader, writer)
        finally:
            writer.close()

    async def session(
        self,
        held: Held,
        request: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        """Answer requests for one host until the caller closes the socket.

        The host's connection counts as busy while the session lasts, so it is not reaped
        between a run's commands; the session is tied to the connection (and so to the
        known_hosts file) its first request found.
        """
        loop = asyncio.get_running_loop()
        held.busy += 1
        try:
            while True:
                try:
                    await self.answer(held.host, request, reader, writer)
                except CallerGone:
                    return
                except Exception as exc:  # every failure goes back to the caller, typed
                    if not isinstance(exc, (OSError, ConnectionError)) or writer.is_closing():
                        traceback.print_exc(file=sys.stderr)
                    if writer.is_closing():
                        return
                    with contextlib.suppress(OSError):
                        await _send(writer, {"error": error_data(exc)})
                held.last_used = self.last_request = loop.time()
                line = await reader.readline()
                if not line:
                    return
                request = json.loads(line)
        finally:
            held.busy -= 1
            held.last_used = loop.time()

    async def answer(
        self,
        host: SshHost,
        request: dict[str, Any],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        op = request["op"]
        if op == "run":
            done = await host.run(
                request["argv"], timeout=request["timeout"], env=request["env"] or None, check=False
            )
            result = {"exit_status": done.exit_status, "stdout": done.stdout, "stderr": done.stderr}
            await _send(writer, {"ok": result})
        elif op == "stream":
            await _stream(host, request["argv"], reader, writer)
        elif op == "put":
            await host.put(Path(request["local"]), request["remote"])
            await _send(writer, {"ok": None})
        elif op == "get":
            await host.get(request["remote"], Path(request["local"]))
            await _send(writer, {"ok": None})
        else:
            raise ValueError(f"unknown request {op!r}")

    async def run_exec(self, request: dict[str, Any]) -> dict[str, Any]:
        """``rollout exec`` done here for the quick path (cli/quick.py), on the held connections.

        ``{"ok": results}`` only when this is exactly what the normal path would do; otherwise
        ``{"fallback": why}``, and the caller runs the normal path, which reports any error.
        """
        from rollout.config import load_runbook
        from rollout.engine import fleet
        from rollout.engine.targets import targets_for
        from rollout.errors import RolloutError

        name = request["env"]
        try:
            runbook = load_runbook(Path(request["config"]), environ=request["environ"])
            specs = runbook.environment(name).hosts
            if runbook.ssh.persist.total_seconds() <= 0 or any(s.kind != "ssh" for s in specs):
                return {"fallback": "not every host is an SSH host with ssh.persist"}
            if control_dir(runbook.ssh, runbook.config_dir).resolve() != self.directory.resolve():
                return {"fallback": "the runbook's ssh.control_dir is another folder"}
            held = {
                s.name: self.destination(destination(s, runbook.ssh, runbook.config_dir))
                for s in specs
            }
            targets = targets_for(runbook, name, {n: h.host for n, h in held.items()})
            chosen = fleet.select(runbook, name, targets, request["role"])
        except RolloutError as exc:
            return {"fallback": exc.message}
        for h in held.values():
            h.busy += 1
        try:
            done = await fleet.run_everywhere(
                chosen, request["command"], parallel=runbook.environment(name).parallel
            )
        finally:
            now = asyncio.get_running_loop().time()
            for h in held.values():
                h.busy -= 1
                h.last_used = now
        results = [{**r.__dict__, "output": runbook.redactor.redact(r.output)} for r in done]
        return {"ok": results}

    @staticmethod
    def _same_user(writer: asyncio.StreamWriter) -> bool:
        sock: socket.socket = writer.get_extra_info("socket")
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", creds)
        return bool(uid == os.getuid())

    async def reap(self) -> None:
        """Close connections idle past their persist time; stop when nothing is held."""
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            await asyncio.sleep(REAP_EVERY)
            now = loop.time()
            for key, held in list(self.held.items()):
                if not held.busy and now - held.last_used > held.persist:
                    del self.held[key]
                    await held.host.close()
            if not self.held and now - self.last_request > self.persist:
                self.stopping.set()

    async def close_all(self) -> None:
        held, self.held = list(self.held.values()), {}
        await asyncio.gather(*(h.host.close() for h in held), return_exceptions=True)


async def _stream(
    host: SshHost, argv: list[str], reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    """Send a stream's lines until it ends or the caller goes away (Ctrl-C on `logs --follow`).

    A caller that leaves is noticed by its socket closing, not only by the next line failing
    to send: a quiet stream would otherwise keep its remote command, and the connection busy,
    for as long as the command runs. The caller sends nothing while a stream runs.
    """

    async def pump() -> None:
        async for text in host.stream(argv):
            await _send(writer, {"line": text})
        await _send(writer, {"end": True})

    pumping = asyncio.ensure_future(pump())
    gone = asyncio.ensure_future(reader.read(1))
    try:
        await asyncio.wait({pumping, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pumping, gone):
            task.cancel()
        # A stream's channel closes when the server says so, which for a command without a
        # terminal is when the command ends: a quiet one may not for long. So wait a little,
        # not for it; the channel goes at the latest with the connection, when it is reaped.
        await asyncio.wait({pumping, gone}, timeout=STREAM_CLOSE_WAIT)
    if pumping.done() and not pumping.cancelled():
        pumping.result()  # its failure, if any, goes back to the caller
        return
    raise CallerGone


class CallerGone(Exception):
    """The caller closed its session while a request ran: nobody to answer."""


async def _send(writer: asyncio.StreamWriter, answer: dict[str, Any]) -> None:
    writer.write(json.dumps(answer).encode() + b"\n")
    await writer.drain()


async def main(directory: Path) -> int:
    private_dir(directory)
    lock = (directory / "holder.lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # another holder serves this folder
    path = directory / SOCKET
    path.unlink(missing_ok=True)  # left by a holder that was killed
    holder = Holder(directory, last_request=asyncio.get_running_loop().time())
    old_umask = os.umask(0o177)  # the socket is created 0600, never briefly wider
    try:
        server = await asyncio.start_unix_server(holder.serve, str(path), limit=2**24)
    finally:
        os.umask(old_umask)
    (directory / PIDFILE).write_text(f"{os.getpid()}\n")
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, holder.stopping.set)
    reaper = asyncio.create_task(holder.reap())
    try:
        await holder.stopping.wait()
    finally:
        server.close()
        path.unlink(missing_ok=True)
        (directory / PIDFILE).unlink(missing_ok=True)
        reaper.cancel()
        await holder.close_all()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(Path(sys.argv[1]))))
