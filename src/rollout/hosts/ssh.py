"""A host reached over SSH (asyncssh): one connection per host per run, host keys always checked.

Errors from asyncssh and the network are translated here, at the seam, into ``HostError`` with
one line that names the host and says what to do: an unknown or changed host key (with the key
the server offered), a refused login, a missing key file, a host that never answers.
"""

from __future__ import annotations

import asyncio
import shlex
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from rollout.config import HostConfig, SshSettings
from rollout.errors import CommandFailed, HostError
from rollout.hosts.base import CommandResult
from rollout.hosts.shell import ShellPool

# AES-GCM first: on CPUs with AES instructions it is the cheaper cipher on both ends, and
# asyncssh's ChaCha20-Poly1305 builds several cipher contexts per packet (~20 us against ~3.5
# us here), which a deploy's many short commands pay on every packet. ChaCha20 stays offered
# for servers that allow nothing else; all of these are in OpenSSH's default set.
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes256-ctr",
    "aes192-ctr",
    "aes128-ctr",
)


@dataclass(frozen=True)
class Endpoint:
    """Where an SSH server listens, as `[user@]host[:port]` or a host entry says."""

    address: str
    port: int
    user: str | None

    @classmethod
    def parse(cls, text: str) -> Endpoint:
        user, _, rest = text.rpartition("@")
        address, _, port = rest.partition(":")
        return cls(address, int(port) if port else 22, user or None)

    def __str__(self) -> str:
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"


def known_hosts_path(settings: SshSettings, config_dir: Path) -> Path:
    path = Path(settings.known_hosts).expanduser()
    return path if path.is_absolute() else config_dir / path


class SshHost:
    """``Host`` over one reused asyncssh connection, opened on first use."""

    def __init__(self, spec: HostConfig, settings: SshSettings, config_dir: Path) -> None:
        self.spec = spec
        self.settings = settings
        self.known_hosts = known_hosts_path(settings, config_dir)
        key = spec.key_file or settings.key_file
        self.key_file = None if key is None else _resolve(key, config_dir)
        self._conn: asyncssh.SSHClientConnection | None = None
        self._shells: ShellPool | None = None
        self._tunnel: asyncssh.SSHClientConnection | None = None
        self._connecting = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def root(self) -> str:
        return self.spec.root or "/"

    # --- connecting --------------------------------------------------------------------------

    def _options(self) -> dict[str, Any]:
        if not self.known_hosts.is_file():
            raise HostError(
                self.name,
                f"known_hosts file {self.known_hosts} does not exist",
                hint="record the hosts' keys on purpose: rollout hosts trust <env> (or set ssh.known_hosts)",
            )
        if self.key_file is not None and not self.key_file.is_file():
            raise HostError(
                self.name,
                f"key file {self.key_file} does not exist",
                hint="fix ssh.key_file or hosts[].key_file",
            )
        return {
            "known_hosts": str(self.known_hosts),
            "client_keys": [str(self.key_file)] if self.key_file else (),
            "agent_path": () if self.settings.agent else None,
            "config": None,  # ~/.ssh/config must not change what a runbook says
            "encryption_algs": CIPHERS,
            "connect_timeout": self.settings.connect_timeout.total_seconds(),
            "keepalive_interval": self.settings.keepalive_interval.total_seconds(),
            "keepalive_count_max": self.settings.keepalive_count_max,
        }

    async def connection(self) -> asyncssh.SSHClientConnection:
        async with self._connecting:
            if self._conn is None:
                self._conn = await self._connect()
                self._shells = ShellPool(self._conn)
            return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        options = self._options()
        target = Endpoint(self.spec.address, self.spec.port, self.spec.user)
        if self.spec.proxy_jump:
            jump = Endpoint.parse(self.spec.proxy_jump)
            self._tunnel = await self._open(jump, options, via="jump host ")
            options = {**options, "tunnel": self._tunnel}
        return await self._open(target, options)

    async def _open(
        self, where: Endpoint, options: dict[str, Any], via: str = ""
    ) -> asyncssh.SSHClientConnection:
        label = f"{via}{where}"
        try:
            return await asyncssh.connect(
                where.address, port=where.port, username=where.user, **options
            )
        except asyncssh.HostKeyNotVerifiable as exc:
            raise await self._key_error(where, label) from exc
        except asyncssh.PermissionDenied as exc:
            user = where.user or "the current user"
            raise HostError(
                self.name,
                f"{label}: login refused for {user} ({exc.reason})",
                hint="check hosts[].user and that the key is in the user's authorized_keys",
            ) from exc
        except TimeoutError as exc:
            raise HostError(
                self.name,
                f"{label}: no answer within {self.settings.connect_timeout.total_seconds():g}s",
                hint="is the host up and the address right? see ssh.connect_timeout",
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise HostError(self.name, f"{label}: unreachable: {_reason(exc)}") from exc

    async def _key_error(self, where: Endpoint, label: str) -> HostError:
        """Say whether the key is unknown or changed, and show the one the server offered."""
        try:
            known = asyncssh.read_known_hosts(str(self.known_hosts)).match(
                where.address, "", where.port
            )[0]
        except (OSError, ValueError):
            known = []
        try:
            key = await asyncssh.get_server_host_key(where.address, where.port, config=None)
            offered = f"{key.get_algorithm()} {key.get_fingerprint('sha256')}" if key else "none"
        except (OSError, asyncssh.Error):
            offered = "unknown"
        if known:
            return HostError(
                self.name,
                f"{label}: HOST KEY CHANGED: the server offers {offered}, known_hosts has another",
                hint="someone may be intercepting the connection; if the host was rebuilt, replace its entry "
                "with `rollout hosts trust <env> --replace` after checking the fingerprint",
            )
        return HostError(
            self.name,
            f"{label}: unknown host key {offered}",
            hint="check the fingerprint with the host's owner, then: rollout hosts trust <env>",
        )

    # --- the Host protocol ---------------------------------------------------------------------

    def _command(self, argv: Sequence[str], env: Mapping[str, str] | None) -> str:
        words = list(argv)
        if env:
            words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
        if self.spec.sudo:
            words = ["sudo", "-n", "--", *words]
        return shlex.join(words)

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = True,
    ) -> CommandResult:
        await self.connection()
        assert self._shells is not None  # opened with the connection
        limit = timeout if timeout is not None else self.settings.command_timeout.total_seconds()
        try:
            done = await self._shells.run(self._command(argv, env), limit)
        except TimeoutError as exc:
            raise HostError(self.name, f"`{argv[0]}` timed out after {limit:g}s") from exc
        except (OSError, asyncssh.Error, asyncio.IncompleteReadError) as exc:
            self._conn = None  # a lost connection is not reused; the next call reconnects
            raise HostError(self.name, f"connection lost: {_reason(exc)}") from exc
        result = CommandResult(
            tuple(argv), done.exit_status, _text(done.stdout), _text(done.stderr)
        )
        return result.check(self.name) if check else result

    async def stream(self, argv: Sequence[str]) -> AsyncIterator[str]:
        conn = await self.connection()
        try:
            async with conn.create_process(
                self._command(argv, None), stderr=asyncssh.STDOUT
            ) as process:
                async for line in process.stdout:
                    if not line:  # asyncssh's last read at end of output; a blank line is "\n"
                        break
                    yield _text(line).rstrip("\n")
        except (OSError, asyncssh.Error) as exc:
            raise HostError(self.name, f"connection lost: {_reason(exc)}") from exc

    async def put(self, local: Path, remote: str) -> None:
        conn = await self.connection()
        # With sudo, the login user may not write there: upload into its home (a relative SFTP
        # path), then move it as root; commands start in that same home folder.
        staging = f".rollout-upload-{uuid.uuid4().hex}" if self.spec.sudo else remote
        try:
            async with conn.start_sftp_client() as sftp:
                await sftp.put(str(local), staging)
        except asyncssh.SFTPError as exc:  # the host answered: a path or permission problem there
            raise CommandFailed(self.name, f"sftp put {staging}", 1, _reason(exc)) from exc
        except (OSError, asyncssh.Error) as exc:
            raise HostError(
                self.name, f"cannot upload {local.name} to {remote}: {_reason(exc)}"
            ) from exc
        if staging != remote:
            await self.run(["mv", "-f", staging, remote])

    async def get(self, remote: str, local: Path) -> None:
        conn = await self.connection()
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            async with conn.start_sftp_client() as sftp:
                await sftp.get(remote, str(local))
        except asyncssh.SFTPError as exc:
            raise CommandFailed(self.name, f"sftp get {remote}", 1, _reason(exc)) from exc
        except (OSError, asyncssh.Error) as exc:
            raise HostError(self.name, f"cannot download {remote}: {_reason(exc)}") from exc

    async def close(self) -> None:
        if self._shells is not None:
            self._shells.close()
            self._shells = None
        for conn in (self._conn, self._tunnel):
            if conn is not None:
                conn.close()
                await conn.wait_closed()
        self._conn = self._tunnel = None


def _resolve(path: str, config_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else config_dir / p


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the remote shell ended"
    if isinstance(exc, asyncssh.Error):
        return exc.reason or type(exc).__name__
    return str(exc) or type(exc).__name__
