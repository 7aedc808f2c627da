"""The quick path: ``rollout exec`` answered by a running SSH connection holder.

With ``ssh.persist``, a holder process (hosts/holder.py) keeps the SSH connections open between
runs, and it has already imported everything a run needs. A fresh ``rollout`` process, by
contrast, spends ~0.4 s importing Typer, pydantic and the engine before its first byte reaches a
host. So, like OpenSSH's client handing its work to a ControlMaster, ``rollout exec`` first asks
the holder to run the command itself, and this process only prints the answer: it imports
nothing beyond the standard library.

The holder answers only when it can do exactly what the normal path would: the runbook loads,
its control folder is this one, the environment and role exist and every chosen host is an SSH
host kept by it. For anything else (no holder, bad input, local hosts, ``--json``, ``--help``,
an option this parser does not know) it says "fall back" or cannot be reached, and the normal
path runs and reports, so every error message and exit code stays the normal path's.

The holder serves only its own uid (SO_PEERCRED) through a socket in a folder only this user
can open, the same checks the normal path makes; this process checks the folder too before
sending anything, because the request carries its environment (for ``${VAR}`` in the runbook).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

from rollout.control_dir import SOCKET, default_control_dir

TIMEOUT = 600.0  # seconds without a word from the holder before giving up (commands can be slow)


def attempt(argv: list[str]) -> int | None:
    """The exit code when the holder ran the command; None to take the normal path."""
    request = parse_exec(argv)
    if request is None:
        return None
    directory = default_control_dir()
    if not _private(directory):
        return None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        sock.connect(str(directory / SOCKET))
    except OSError:
        return None
    with sock:
        sock.sendall(json.dumps({**request, "environ": dict(os.environ)}).encode() + b"\n")
        try:
            answer = json.loads(sock.makefile("rb").readline() or b"{}")
        except (OSError, ValueError):
            return None  # the holder went away before answering: nothing ran, so start over
    if "ok" not in answer:
        return None
    return show(answer["ok"], tty=sys.stdout.isatty())


def parse_exec(argv: list[str]) -> dict[str, object] | None:
    """``exec ENV [--role R] [--config|-c PATH] -- CMD...`` as a request; None for anything else.

    Deliberately narrow: the command must follow ``--``, so no word of it is read as an option.
    """
    if len(argv) < 4 or argv[0] != "exec" or "--" not in argv:
        return None
    split = argv.index("--")
    words, command = argv[1:split], argv[split + 1 :]
    env, role, config = None, None, Path("rollout.yml")
    i = 0
    while i < len(words):
        word = words[i]
        if word in ("--role", "--config", "-c") and i + 1 < len(words):
            value = words[i + 1]
            if word == "--role":
                role = value
            else:
                config = Path(value)
            i += 2
        elif word.startswith(("--role=", "--config=")):
            name, value = word.split("=", 1)
            role, config = (value, config) if name == "--role" else (role, Path(value))
            i += 1
        elif not word.startswith("-") and env is None:
            env = word
            i += 1
        else:
            return None  # --json, --help, anything else: the normal path handles it
    if env is None or not command:
        return None
    config = config / "rollout.yml" if config.is_dir() else config
    return {
        "op": "exec",
        "config": str(config.absolute()),
        "env": env,
        "role": role,
        "command": command,
    }


def show(results: list[dict[str, object]], *, tty: bool) -> int:
    """Print each host's result, grouped, and give ``rollout exec``'s exit code: the one place
    both paths (the holder's answer and the normal run, cli/fleet.py) print it."""
    colour = tty and "NO_COLOR" not in os.environ
    bold, green, red, dim, plain = (
        ("\033[1m", "\033[32m", "\033[31m", "\033[2m", "\033[0m") if colour else ("",) * 5
    )
    out = sys.stdout
    for r in results:
        status = r["exit_status"]
        mark = (
            f"{green}ok{plain}"
            if status == 0
            else f"{red}exit {status}{plain}"
            if status is not None
            else f"{red}unreachable{plain}"
        )
        out.write(f"{bold}── {r['host']}{plain} {mark} {dim}{r['seconds']:.2f} s{plain}\n")
        if r["output"]:
            out.write(f"{r['output']}\n")  # redacted by whoever ran the commands
    out.flush()
    return show_code(results)


def show_code(results: list[dict[str, object]]) -> int:
    """3 when a host could not be reached, 1 when a command failed, else 0."""
    if any(r["exit_status"] is None for r in results):
        return 3
    return 1 if any(r["exit_status"] != 0 for r in results) else 0


def _private(directory: Path) -> bool:
    """The folder is ours alone (mode 0700, our uid), as hosts/mux.py's ``private_dir`` demands."""
    try:
        info = directory.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o077
