"""SSH hosts against real sshd servers: commands, files, one connection, and every refusal."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from rollout.config import HostConfig, SshSettings
from rollout.errors import CommandFailed, HostError
from rollout.hosts.ssh import SshHost
from tests.fixtures.sshd import TEST_USER, Fleet, SshdHost


def ssh_host(fleet: Fleet, server: SshdHost, **overrides: object) -> SshHost:
    fields: dict[str, object] = {
        "name": server.name,
        "address": server.address,
        "port": server.port,
        "user": TEST_USER,
        "root": str(server.root),
        "key_file": str(fleet.client_key),
        **overrides,
    }
    settings = SshSettings(known_hosts=str(fleet.known_hosts), agent=False, connect_timeout="2s")  # type: ignore[arg-type]
    return SshHost(HostConfig.model_validate(fields), settings, fleet.base)


def accepted_logins(server: SshdHost) -> int:
    return (server.directory / "sshd.log").read_text().count("Accepted publickey")


def test_commands_run_quoted_over_one_reused_connection(fleet: Fleet) -> None:
    server = fleet.add("web-1", "127.0.0.2")
    host = ssh_host(fleet, server)

    async def scenario() -> list[str]:
        try:
            outputs = []
            for _ in range(5):
                outputs.append((await host.run(["printf", "%s", "v1; rm -rf / $(id)"])).stdout)
            return outputs
        finally:
            await host.close()

    assert asyncio.run(scenario()) == ["v1; rm -rf / $(id)"] * 5  # an argument, never shell syntax
    assert accepted_logins(server) == 1


def test_aes_gcm_is_negotiated_first_and_a_chacha20_only_server_is_still_reached(
    fleet: Fleet,
) -> None:
    """asyncssh's ChaCha20-Poly1305 costs ~6x the CPU per packet of its AES-GCM, and a deploy
    sends many small packets, so AES-GCM is asked for first; ChaCha20 stays a fallback."""
    default = fleet.add("web-1", "127.0.0.2")
    chacha_only = fleet.add(
        "web-2", "127.0.0.3", sshd_config="Ciphers chacha20-poly1305@openssh.com\n"
    )

    async def scenario(server: SshdHost) -> tuple[str, str, str]:
        host = ssh_host(fleet, server)
        try:
            conn = await host.connection()
            said = (await host.run(["echo", "ok"])).stdout
            return conn.get_extra_info("send_cipher"), conn.get_extra_info("recv_cipher"), said
        finally:
            await host.close()

    gcm, chacha = "aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"
    assert asyncio.run(scenario(default)) == (gcm, gcm, "ok\n")
    assert asyncio.run(scenario(chacha_only)) == (chacha, chacha, "ok\n")


def test_a_failing_command_names_host_command_and_output(fleet: Fleet) -> None:
    host = ssh_host(fleet, fleet.add("web-1", "127.0.0.2"))
    with pytest.raises(
        CommandFailed, match=r"web-1: `sh -c 'echo broken >&2; exit 4'` exited 4\nbroken"
    ):
        asyncio.run(_run_and_close(host, ["sh", "-c", "echo broken >&2; exit 4"]))


def test_files_go_up_and_come_back(fleet: Fleet, tmp_path: Path) -> None:
    server = fleet.add("web-1", "127.0.0.2")
    host = ssh_host(fleet, server)
    local = tmp_path / "artifact.bin"
    local.write_bytes(bytes(range(256)) * 100)

    async def scenario() -> None:
        try:
            await host.put(local, str(server.root / "up.bin"))
            await host.get(str(server.root / "up.bin"), tmp_path / "down.bin")
        finally:
            await host.close()

    asyncio.run(scenario())
    assert (tmp_path / "down.bin").read_bytes() == local.read_bytes()


def test_sudo_runs_commands_through_sudo(fleet: Fleet) -> None:
    host = ssh_host(fleet, fleet.add("web-1", "127.0.0.2"), sudo=True)
    result = asyncio.run(_run_and_close(host, ["sh", "-c", "echo sudo-command=$SUDO_COMMAND"]))
    # sudo sets SUDO_COMMAND for what it ran; without sudo the variable is empty.
    assert result.stdout.strip() == "sudo-command=/usr/bin/sh -c echo sudo-command=$SUDO_COMMAND"


def test_an_unknown_host_key_is_refused_showing_its_fingerprint(fleet: Fleet) -> None:
    server = fleet.add("web-1", "127.0.0.2", trust=False)
    fingerprint = subprocess.run(
        ["ssh-keygen", "-lf", str(server.directory / "ssh_host_ed25519_key.pub")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[1]
    with pytest.raises(HostError) as refused:
        asyncio.run(_run_and_close(ssh_host(fleet, server), ["true"]))
    assert "unknown host key" in refused.value.message and fingerprint in refused.value.message
    assert "rollout hosts trust" in str(refused.value.hint)


def test_a_changed_host_key_is_refused_as_such(fleet: Fleet) -> None:
    server = fleet.add("web-1", "127.0.0.2")
    # The server is rebuilt with a new key (or someone sits in between).
    (server.directory / "ssh_host_ed25519_key").unlink()
    (server.directory / "ssh_host_ed25519_key.pub").unlink()
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            str(server.directory / "ssh_host_ed25519_key"),
        ],
        check=True,
    )
    from tests.fixtures.sshd import start_server, stop

    stop(server.process)
    server.process = start_server(server.directory, server.address, server.port)
    with pytest.raises(HostError, match="HOST KEY CHANGED"):
        asyncio.run(_run_and_close(ssh_host(fleet, server), ["true"]))


def test_a_wrong_user_is_refused_in_one_line(fleet: Fleet) -> None:
    host = ssh_host(fleet, fleet.add("web-1", "127.0.0.2"), user="nobody-here")
    with pytest.raises(HostError, match="login refused for nobody-here") as refused:
        asyncio.run(_run_and_close(host, ["true"]))
    assert "\n" not in refused.value.message


def test_a_missing_key_file_is_named(fleet: Fleet) -> None:
    host = ssh_host(fleet, fleet.add("web-1", "127.0.0.2"), key_file="/nonexistent/id_ed25519")
    with pytest.raises(HostError, match="key file /nonexistent/id_ed25519 does not exist"):
        asyncio.run(_run_and_close(host, ["true"]))


def test_a_host_that_never_answers_times_out(fleet: Fleet) -> None:
    # A TCP port that accepts and then says nothing, like a host behind a black hole.
    silent = socket.socket()
    silent.bind(("127.0.0.9", 0))
    silent.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    ghost = SshdHost("ghost", "127.0.0.9", silent.getsockname()[1], fleet.base, fleet.base)
    with fleet.known_hosts.open("a") as f:
        f.write(
            f"[127.0.0.9]:{ghost.port} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBdvJd7L8Xr3kTP0B3cWvw1ckHCLwRXYOLhFJGjaPx8n\n"
        )
    try:
        with pytest.raises(HostError, match="no answer within 2s"):
            asyncio.run(_run_and_close(ssh_host(fleet, ghost), ["true"]))
    finally:
        silent.close()
        for s in accepted:
            s.close()


def test_a_refused_port_is_unreachable(fleet: Fleet) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.9", 0))
        port = s.getsockname()[1]
    ghost = SshdHost("ghost", "127.0.0.9", port, fleet.base, fleet.base)
    with pytest.raises(HostError, match="unreachable"):
        asyncio.run(_run_and_close(ssh_host(fleet, ghost), ["true"]))


def test_a_jump_host_carries_the_connection(fleet: Fleet) -> None:
    bastion = fleet.add("bastion", "127.0.0.2")
    inner = fleet.add("web-1", "127.0.0.3")
    host = ssh_host(fleet, inner, proxy_jump=f"{TEST_USER}@{bastion.address}:{bastion.port}")
    assert asyncio.run(_run_and_close(host, ["echo", "through"])).stdout.strip() == "through"
    assert accepted_logins(bastion) == 1 and accepted_logins(inner) == 1


async def _run_and_close(host: SshHost, argv: list[str]):  # type: ignore[no-untyped-def]
    try:
        return await host.run(argv)
    finally:
        await host.close()


def sessions_started(server: SshdHost) -> int:
    """Sessions sshd started (each exec or shell request is one)."""
    return (server.directory / "sshd.log").read_text().count("Starting session")


def test_many_commands_share_a_few_long_lived_shells(fleet: Fleet) -> None:
    server = fleet.add("web-1", "127.0.0.2")
    host = ssh_host(fleet, server)

    async def scenario() -> list[tuple[int, str, str]]:
        try:
            results = []
            for n in range(12):
                done = await host.run(
                    ["sh", "-c", f"printf out-{n}; printf err-{n} >&2; exit {n % 3}"], check=False
                )
                results.append((done.exit_status, done.stdout, done.stderr))
            return results
        finally:
            await host.close()

    # stdout and stderr kept apart, output without a final newline kept exact, statuses per command
    assert asyncio.run(scenario()) == [(n % 3, f"out-{n}", f"err-{n}") for n in range(12)]
    assert sessions_started(server) == 1


def test_a_command_cannot_change_or_end_the_shell_it_runs_in(fleet: Fleet) -> None:
    host = ssh_host(fleet, fleet.add("web-1", "127.0.0.2"))

    async def scenario() -> list[str]:
        try:
            await host.run(["cd", "/"])
            first = (await host.run(["pwd"])).stdout
            await host.run(["exit", "7"], check=False)
            await host.run(["cat"])  # stdin is /dev/null, so the commands after it survive
            return [first, (await host.run(["pwd"])).stdout]
        finally:
            await host.close()

    first, after = asyncio.run(scenario())
    assert first == after != "/\n"  # still the login folder


def test_concurrent_commands_on_one_host_each_get_their_own_output(fleet: Fleet) -> None:
    server = fleet.add("web-1", "127.0.0.2")
    host = ssh_host(fleet, server)

    async def scenario() -> list[str]:
        try:
            done = await asyncio.gather(
                *(host.run(["sh", "-c", f"sleep 0.2; echo {n}"]) for n in range(10))
            )
            return [d.stdout for d in done]
        finally:
            await host.close()

    assert asyncio.run(scenario()) == [f"{n}\n" for n in range(10)]
    assert sessions_started(server) <= 4  # the pool's limit, not one session per command


def test_a_command_past_its_timeout_is_abandoned_and_the_next_one_runs(fleet: Fleet) -> None:
    host = ssh_host(fleet, fleet.add("web-1", "127.0.0.2"))

    async def scenario() -> str:
        try:
            with pytest.raises(HostError, match=r"web-1: `sleep` timed out after 0.3s"):
                await host.run(["sleep", "5"], timeout=0.3)
            return (await host.run(["echo", "after"])).stdout
        finally:
            await host.close()

    assert asyncio.run(scenario()) == "after\n"
