"""ssh.persist: a local holder keeps SSH connections open between runs, safely, against real sshd."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.config import HostConfig, SshSettings
from rollout.errors import CommandFailed
from rollout.hosts.mux import MuxHost, disconnect
from tests.fixtures.sshd import TEST_USER, Fleet, SshdHost

RUNBOOK = """\
app: shop
runtime: {{kind: release-dir, path: srv/app, start: 'true'}}
ssh: {{known_hosts: '{known_hosts}', key_file: '{key}', agent: false, connect_timeout: 3s,
       persist: {persist}, control_dir: '{control}'}}
environments:
  production:
    hosts:
{hosts}
"""


@pytest.fixture
def control(fleet: Fleet) -> Iterator[Path]:
    """The holder's folder; the holder a test started is ended by its pid afterwards."""
    directory = fleet.base / "control"
    yield directory
    pidfile = directory / "holder.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text()), signal.SIGTERM)


def setup(fleet: Fleet, hosts: list[SshdHost], control: Path, persist: str = "60s") -> Path:
    entries = "\n".join(f"      - {h.yaml()}" for h in hosts)
    config = fleet.base / "rollout.yml"
    config.write_text(
        RUNBOOK.format(
            known_hosts=fleet.known_hosts,
            key=fleet.client_key,
            persist=persist,
            control=control,
            hosts=entries,
        )
    )
    return config


def rollout(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    at = args.index("--") if "--" in args else len(args)
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args[:at], "--config", str(config), *args[at:]],
        capture_output=True,
        text=True,
        timeout=60,
    )


def logins(server: SshdHost) -> int:
    return (server.directory / "sshd.log").read_text().count("Accepted publickey")


def holder_pid(control: Path) -> int | None:
    pidfile = control / "holder.pid"
    return int(pidfile.read_text()) if pidfile.exists() else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def held_host(fleet: Fleet, server: SshdHost, control: Path, persist: str) -> MuxHost:
    spec = HostConfig.model_validate(
        {"name": server.name, "address": server.address, "port": server.port, "user": TEST_USER}
    )
    settings = SshSettings.model_validate(
        {
            "known_hosts": str(fleet.known_hosts),
            "key_file": str(fleet.client_key),
            "agent": False,
            "persist": persist,
            "control_dir": str(control),
        }
    )
    return MuxHost(spec, settings, fleet.base)


def test_a_second_run_reuses_the_held_connection_until_disconnect(
    fleet: Fleet, control: Path
) -> None:
    hosts = [fleet.add("web-1", "127.0.0.2"), fleet.add("web-2", "127.0.0.3")]
    config = setup(fleet, hosts, control)

    for _ in range(3):
        done = rollout(config, "exec", "production", "--", "printf", "%s", "a b; $(id)")
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("a b; $(id)") == 2  # quoted argument, per host
    assert [logins(h) for h in hosts] == [1, 1]  # three runs, one login per host

    pid = holder_pid(control)
    assert pid is not None and alive(pid)
    assert (control.stat().st_mode & 0o777, (control / "holder.sock").stat().st_mode & 0o777) == (
        0o700,
        0o600,
    )

    done = rollout(config, "hosts", "disconnect")
    assert done.returncode == 0 and "closed" in done.stdout
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid) and not (control / "holder.sock").exists()

    assert rollout(config, "exec", "production", "--", "true").returncode == 0
    assert [logins(h) for h in hosts] == [2, 2]  # a new holder logs in afresh


def test_recording_a_key_makes_the_next_run_verify_again(fleet: Fleet, control: Path) -> None:
    host = fleet.add("web-1", "127.0.0.2")
    config = setup(fleet, [host], control)
    assert rollout(config, "exec", "production", "--", "true").returncode == 0

    fleet.known_hosts.write_text(fleet.known_hosts.read_text() + "# edited\n")
    assert rollout(config, "exec", "production", "--", "true").returncode == 0
    assert logins(host) == 2


def test_an_unknown_host_key_is_refused_through_the_holder(fleet: Fleet, control: Path) -> None:
    host = fleet.add("stranger", "127.0.0.2", trust=False)
    config = setup(fleet, [host], control)

    done = rollout(config, "exec", "production", "--", "true")

    said = " ".join((done.stderr + done.stdout).split())  # as one line, whatever the wrapping
    assert done.returncode == 3
    assert f"stranger: [127.0.0.2]:{host.port}: unknown host key ssh-ed25519 SHA256:" in said
    assert logins(host) == 0


def test_a_control_folder_others_can_open_is_refused(fleet: Fleet, control: Path) -> None:
    host = fleet.add("web-1", "127.0.0.2")
    config = setup(fleet, [host], control)
    control.mkdir(mode=0o755)
    control.chmod(0o755)

    done = rollout(config, "exec", "production", "--", "true")

    assert done.returncode == 3
    assert f"{control} is not a private folder" in done.stderr
    assert holder_pid(control) is None and logins(host) == 0


def test_the_holder_ends_by_itself_after_persist(fleet: Fleet, control: Path) -> None:
    host = fleet.add("web-1", "127.0.0.2")
    config = setup(fleet, [host], control, persist="1s")
    assert rollout(config, "exec", "production", "--", "true").returncode == 0
    pid = holder_pid(control)
    assert pid is not None

    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)

    assert not alive(pid)
    assert "Close session" in (host.directory / "sshd.log").read_text() or logins(host) == 1


def test_commands_files_and_streams_go_through_the_holder(
    fleet: Fleet, control: Path, tmp_path: Path
) -> None:
    server = fleet.add("web-1", "127.0.0.2")
    host = held_host(fleet, server, control, persist="30s")
    local = tmp_path / "artifact.bin"
    local.write_bytes(bytes(range(256)) * 1000)

    async def scenario() -> tuple[str, list[str], bytes]:
        remote = str(server.root / "up.bin")
        await host.put(local, remote)
        await host.get(remote, tmp_path / "down.bin")
        stdout = (await host.run(["env"], env={"RELEASE": "v1; rm -rf /"})).stdout
        lines = [line async for line in host.stream(["printf", "one\\ntwo\\n"])]
        with pytest.raises(CommandFailed, match=r"web-1: `sh -c 'echo no >&2; exit 3'` exited 3"):
            await host.run(["sh", "-c", "echo no >&2; exit 3"])
        return stdout, lines, (tmp_path / "down.bin").read_bytes()

    stdout, lines, copied = asyncio.run(scenario())
    assert "RELEASE=v1; rm -rf /" in stdout.splitlines()
    assert lines == ["one", "two"]
    assert copied == local.read_bytes()
    assert logins(server) == 1


def test_a_run_keeps_its_connection_between_commands_longer_apart_than_persist(
    fleet: Fleet, control: Path
) -> None:
    """A run's commands for a host share one session with the holder, and the holder does not
    close a connection a session still uses; once the run ends, persist counts again."""
    server = fleet.add("web-1", "127.0.0.2")
    host = held_host(fleet, server, control, persist="1s")

    async def scenario() -> list[str]:
        try:
            first = (await host.run(["echo", "one"])).stdout
            await asyncio.sleep(2.5)  # the holder looks for idle connections every 0.5 s
            return [first, (await host.run(["echo", "two"])).stdout]
        finally:
            await host.close()

    assert asyncio.run(scenario()) == ["one\n", "two\n"]
    assert logins(server) == 1
    # The run's end lets the holder close the connection and leave, removing its pidfile (it
    # is this test process's child, so its pid lingers as a zombie: the pidfile tells).
    deadline = time.monotonic() + 10
    while holder_pid(control) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holder_pid(control) is None and not (control / "holder.sock").exists()


def test_a_run_goes_on_when_its_holder_is_stopped_between_commands(
    fleet: Fleet, control: Path
) -> None:
    """`rollout hosts disconnect` while a run holds a session: its next command starts a new
    holder, which logs in afresh, instead of failing on the ended session."""
    server = fleet.add("web-1", "127.0.0.2")
    host = held_host(fleet, server, control, persist="30s")

    async def scenario() -> list[str]:
        try:
            first = (await host.run(["echo", "one"])).stdout
            pid = holder_pid(control)
            assert pid is not None and await disconnect(control)
            deadline = time.monotonic() + 10
            while not ended(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert ended(pid)
            return [first, (await host.run(["echo", "two"])).stdout]
        finally:
            await host.close()

    assert asyncio.run(scenario()) == ["one\n", "two\n"]
    assert logins(server) == 2


def test_a_quiet_stream_left_by_its_caller_frees_the_connection(
    fleet: Fleet, control: Path
) -> None:
    """Ctrl-C on `logs --follow` of a quiet log: the holder sees the caller's socket close,
    ends the stream, and the connection is reaped after persist like any other."""
    server = fleet.add("web-1", "127.0.0.2")
    host = held_host(fleet, server, control, persist="1s")

    async def scenario() -> None:
        async def follow() -> None:
            async for _ in host.stream(["sleep", "120"]):  # says nothing for two minutes
                pass

        following = asyncio.create_task(follow())
        await asyncio.sleep(1.5)  # the holder is up and the remote command runs
        following.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await following
        await host.close()

    asyncio.run(scenario())
    assert logins(server) == 1
    deadline = time.monotonic() + 20
    while holder_pid(control) is not None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert holder_pid(control) is None  # nothing kept it busy: it closed the connection and left


def ended(pid: int) -> bool:
    """Exited, as a child of this process (a zombie until reaped) or any other."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_answers_never_cross_between_requests_on_reused_sessions(
    fleet: Fleet, control: Path
) -> None:
    server = fleet.add("web-1", "127.0.0.2")
    host = held_host(fleet, server, control, persist="30s")

    async def scenario() -> list[str]:
        said = []
        lines = host.stream(["sh", "-c", "for i in $(seq 1 2000); do echo line-$i; done"])
        said.append(await anext(lines))
        await lines.aclose()  # left after one line: the rest must not reach the next request
        said.append((await host.run(["echo", "next"])).stdout)
        with pytest.raises(CommandFailed):
            await host.run(["sh", "-c", "echo no >&2; exit 3"])
        said.append((await host.run(["echo", "after an error"])).stdout)
        return said

    assert asyncio.run(scenario()) == ["line-1", "next\n", "after an error\n"]
    # a later event loop cannot use the first one's sessions, and does not need to be told
    assert asyncio.run(host.run(["echo", "new loop"])).stdout == "new loop\n"
    asyncio.run(host.close())
    assert logins(server) == 1


# --- the quick path: a later `rollout exec` is answered by the holder itself ---------------------


@pytest.fixture
def runtime_dir() -> Iterator[Path]:
    """An XDG_RUNTIME_DIR of the test's own: the holder's default folder is ``<it>/rollout``."""
    directory = Path(tempfile.mkdtemp(prefix="xdg-"))  # short: a socket path has ~100 bytes
    yield directory
    pidfile = directory / "rollout" / "holder.pid"
    if pidfile.exists():
        os.kill(int(pidfile.read_text()), signal.SIGTERM)
    shutil.rmtree(directory, ignore_errors=True)


def default_setup(fleet: Fleet, hosts: list[SshdHost]) -> Path:
    """A runbook with ssh.persist and no control_dir, and a host variable from ${DEPLOY_TOKEN}."""
    entries = "\n".join(f"      - {h.yaml()}" for h in hosts)
    entries = entries.replace("{name:", "{vars: {token: '${DEPLOY_TOKEN}'}, name:", 1)
    config = fleet.base / "rollout.yml"
    config.write_text(
        RUNBOOK.replace(", control_dir: '{control}'", "").format(
            known_hosts=fleet.known_hosts, key=fleet.client_key, persist="60s", hosts=entries
        )
    )
    return config


def quick_rollout(
    config: Path, runtime_dir: Path, *args: str, token: str = "s3cret-one"
) -> subprocess.CompletedProcess[str]:
    """`rollout exec` as a user runs it, telling which modules the process imported (stderr)."""
    at = args.index("--") if "--" in args else len(args)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "DEPLOY_TOKEN": token}
    return subprocess.run(
        [
            sys.executable,
            "-X",
            "importtime",
            "-m",
            "rollout",
            *args[:at],
            "-c",
            str(config),
            *args[at:],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def untimed(stdout: str) -> list[str]:
    """The output lines without each host's seconds, which differ from run to run."""
    return [re.sub(r" [0-9.]+ s$", "", line) for line in stdout.splitlines()]


def imported(done: subprocess.CompletedProcess[str], module: str) -> bool:
    return any(line.rstrip().endswith(f"| {module}") for line in done.stderr.splitlines())


def test_a_held_run_is_answered_by_the_holder_without_loading_the_cli(
    fleet: Fleet, runtime_dir: Path
) -> None:
    hosts = [fleet.add("web-1", "127.0.0.2"), fleet.add("web-2", "127.0.0.3")]
    config = default_setup(fleet, hosts)
    command = ("exec", "production", "--", "sh", "-c", 'echo "$0 $1"; exit 4', "a b;", "$(id)")

    first = quick_rollout(config, runtime_dir, *command)
    second = quick_rollout(config, runtime_dir, *command)

    assert imported(first, "typer") and not imported(second, "typer")
    assert not imported(second, "pydantic") and not imported(second, "asyncssh")
    lines = untimed(second.stdout)
    assert lines == untimed(first.stdout)
    assert lines == ["── web-1 exit 4", "a b; $(id)", "── web-2 exit 4", "a b; $(id)"]
    assert (first.returncode, second.returncode) == (1, 1)
    assert [logins(h) for h in hosts] == [1, 1]


def test_the_holder_reads_the_runbook_with_the_callers_secrets_and_redacts_them(
    fleet: Fleet, runtime_dir: Path
) -> None:
    config = default_setup(fleet, [fleet.add("web-1", "127.0.0.2")])
    quick_rollout(config, runtime_dir, "exec", "production", "--", "true", token="s3cret-one")

    done = quick_rollout(
        config, runtime_dir, "exec", "production", "--", "echo", "s3cret-two", token="s3cret-two"
    )

    assert not imported(done, "typer")
    assert done.returncode == 0 and "s3cret-two" not in done.stdout
    assert done.stdout.splitlines()[1] == "[secret:DEPLOY_TOKEN]"


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (("exec", "staging", "--", "true"), 2, "no environment named 'staging'"),
        (("exec", "production", "--role", "db", "--", "true"), 2, "no host of production has role"),
        (("exec", "production", "--json", "--", "true"), 0, '"exit_status": 0'),
    ],
)
def test_what_the_holder_cannot_answer_exactly_takes_the_normal_path(
    fleet: Fleet, runtime_dir: Path, args: tuple[str, ...], code: int, said: str
) -> None:
    config = default_setup(fleet, [fleet.add("web-1", "127.0.0.2")])
    assert quick_rollout(config, runtime_dir, "exec", "production", "--", "true").returncode == 0

    done = quick_rollout(config, runtime_dir, *args)

    assert imported(done, "typer")
    assert done.returncode == code
    assert said in done.stdout + done.stderr


def test_the_quick_path_sends_nothing_through_a_folder_others_can_open(
    fleet: Fleet, runtime_dir: Path
) -> None:
    config = default_setup(fleet, [fleet.add("web-1", "127.0.0.2")])
    assert quick_rollout(config, runtime_dir, "exec", "production", "--", "true").returncode == 0
    (runtime_dir / "rollout").chmod(0o755)

    done = quick_rollout(config, runtime_dir, "exec", "production", "--", "true")

    assert done.returncode == 3
    assert "is not a private folder" in done.stderr
