"""Fan-out over 20 SSH hosts: rollout beside pyinfra, Fabric and plain OpenSSH, in one run.

Starts 20 real sshd servers on 127.0.0.2-127.0.0.21 with the helpers of tests/fixtures/sshd.py
(each its own host key and port; the lean-shell uid-0 login `rollout-test`, so no host runs a
shell start-up file). One client key, one user, and one known_hosts file that every tool uses
with strict host-key checking:

  rollout   ssh.known_hosts in the generated rollout.yml (asyncssh always verifies)
  pyinfra   host data ssh_known_hosts_file + ssh_strict_host_key_checking: 'yes'
  Fabric    client.load_system_host_keys(<file>) + paramiko RejectPolicy on every Connection
  ssh       -o UserKnownHostsFile=<file> -o StrictHostKeyChecking=yes -o BatchMode=yes

Before timing, every tool is pointed at a 21st sshd whose key is NOT in that file and must
refuse it, so the strict checking is proven rather than assumed.

Then, round by round (the tools interleaved, their order rotated each round; round 0 warms
everything and is not counted), it times:

 (a) one command (`uname -n`) on all 20 hosts, 20 at once, each tool as a fresh process:
     `rollout exec bench --config <rollout.yml> -- uname -n` (`--config` goes before `--`:
     after it every word is the command; with ssh.persist a later run is answered by the
     holder process, cli/quick.py, as OpenSSH's client hands its work to a ControlMaster), `pyinfra -y --parallel 20 inventory.py exec -- uname
     -n`, a Python script running Fabric's `ThreadingGroup(...).run("uname -n")`, and 20 `ssh`
     processes at once (the floor; with the curve25519 key exchange the Python tools negotiate,
     and once more with OpenSSH's default post-quantum one, which costs far more CPU).
 (b) ten short commands on every host over one connection per host, each tool as a fresh
     process: a script using rollout's library (`open_targets` once, `fleet.run_everywhere` ten
     times, `close_targets`), pyinfra running a deploy file of ten `server.shell` operations,
     a script running ten `ThreadingGroup.run` calls on one group, and OpenSSH with one
     ControlMaster per host and ten commands through it (the floor asked for, though its 200
     `ssh` client processes cost ~2.5 s of CPU here). rollout's library and Fabric are also
     timed in this process (imports already done), for the work alone.
 (c) once per run: `rollout deploy bench <tag>` of the United Cars example to the 20 hosts
     (release-dir runtime, built-in launcher, batches of 5, each host its own root and port),
     a first install and then a rolling upgrade; wall time and rollout's stage timings.
     The 20 apps are stopped by their pidfiles afterwards.

Beside each wall time it prints the CPU the tool used (its process and children) and the CPU
the 20 sshd servers used meanwhile: client and servers share this machine's CPUs, so the
servers' part is a floor no tool can go under.

Run:  uv sync --group bench --compile-bytecode && .venv/bin/python benchmarks/fanout.py
      [--rounds N] [--no-deploy]   (about 4 minutes)
      (as root: it creates the `rollout-test` login, like the SSH tests)
Goals: (a) rollout <= 0.75x and (b) rollout <= 0.5x the wall time of the faster of pyinfra and
Fabric, medians, every figure including process start. Prints figures, never fails a build.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO))

from tests.fixtures.sshd import (  # noqa: E402
    TEST_USER,
    ensure_test_user,
    free_port,
    start_server,
    stop,
    write_server,
)

HOSTS = 20
ROUNDS = 5
GOAL_ONE = 0.75
GOAL_TEN = 0.5
SETTLE = 0.2  # seconds of quiet before and after each timed run (not counted)
# The floors use the key exchange asyncssh and paramiko negotiate with this sshd; OpenSSH 9.x
# would pick sntrup761x25519, which costs ~0.13 s of client CPU per connection here.
FLOOR_KEX = "curve25519-sha256"
BIN = Path(sys.executable).parent
PYTHON = sys.executable
ROLLOUT = BIN / "rollout"
PYINFRA = BIN / "pyinfra"

# Ten short, deploy-like commands; every tool runs the same ones, in this order.
TEN = [
    ["uname", "-n"],
    ["id", "-u"],
    ["test", "-d", "/tmp"],
    ["mkdir", "-p", "{work}"],
    ["df", "-P", "/"],
    ["ls", "-ld", "{work}"],
    ["cat", "/proc/loadavg"],
    ["date", "+%s"],
    ["echo", "step-9"],
    ["true"],
]

FANOUT_RUNBOOK = """\
app: fanout
store: .rollout/rollout.db
ssh: {{known_hosts: '{known_hosts}', key_file: '{key}', agent: false, persist: {persist}}}
runtime: {{kind: release-dir, path: srv/app, start: 'true'}}
checks: {{cpu_max: 100%}}  # hosts share this machine with the benchmark itself
environments:
  bench:
    parallel: {parallel}
    hosts:
{bench}
  untrusted:
    hosts:
{untrusted}
"""

DEPLOY_RUNBOOK = """\
app: united-cars
store: .rollout/rollout.db
ssh: {{known_hosts: '{known_hosts}', key_file: '{key}', agent: false}}
release: {{artifact: 'dist/united-cars-{{tag}}.tar.gz', keep: 3}}
runtime:
  kind: release-dir
  path: srv/united-cars
  launcher:
    command: ['{{python}}', '-m', 'uvicorn', 'united_cars.main:app', '--host', '127.0.0.1', '--port', '{{port}}', '--no-access-log']
    env: {{PYTHONPATH: '{{release_dir}}', UNITED_CARS_DATABASE_URL: 'sqlite:///{{shared_dir}}/united-cars.db'}}
    stop_timeout: 10s
  health_url: 'http://127.0.0.1:{{port}}/api/health'
  health_timeout: 60s
checks: {{cpu_max: 100%, disk_max: 99%, disk_mounts: [/]}}  # hosts share this machine with the benchmark
environments:
  bench:
    batch: 5
    parallel: {parallel}
    hosts:
{hosts}
verify:
  endpoints:
    - {{path: /, conditions: ['[STATUS] == 200']}}
    - {{path: /api/health, conditions: ['[STATUS] == 200', '[BODY].status == ok']}}
    - {{path: /auth/signin, conditions: ['[STATUS] == any(200, 302)']}}
    - {{path: /api/vehicles, conditions: ['[STATUS] == any(200, 401)', '[RESPONSE_TIME] < 2000']}}
  version: {{path: /api/version, field: version}}
"""

# Fabric as its users write it: a group of connections, commands run on the whole group.
FABRIC_SCRIPT = """\
import json, sys
from fabric import ThreadingGroup
from paramiko import RejectPolicy

spec = json.load(open(sys.argv[1]))
group = ThreadingGroup(
    *(f"{h['address']}:{h['port']}" for h in spec["hosts"]),
    user=spec["user"],
    connect_kwargs={"key_filename": spec["key"], "look_for_keys": False, "allow_agent": False},
)
for connection in group:  # strict: only keys from the shared known_hosts, unknown ones refused
    connection.client.load_system_host_keys(spec["known_hosts"])
    connection.client.set_missing_host_key_policy(RejectPolicy())
try:
    for command in spec["commands"]:
        group.run(command, hide=True)
finally:
    group.close()
"""

# rollout as a library: targets opened once (one connection per host), ten fan-outs, closed.
ROLLOUT_SCRIPT = """\
import asyncio, json, sys
from pathlib import Path
from rollout.config import load_runbook
from rollout.engine import fleet
from rollout.engine.targets import close_targets, open_targets

spec = json.load(open(sys.argv[1]))

async def main():
    runbook = load_runbook(Path(spec["runbook"]))
    targets = open_targets(runbook, spec["env"])
    try:
        for argv in spec["argvs"]:
            results = await fleet.run_everywhere(
                list(targets.values()), argv, parallel=runbook.environment(spec["env"]).parallel
            )
            bad = [r for r in results if r.exit_status != 0]
            if bad:
                sys.exit(f"{bad[0].host}: {bad[0].exit_status} {bad[0].output}")
    finally:
        await close_targets(targets)

asyncio.run(main())
"""

PYINFRA_DEPLOY = """\
from pyinfra.operations import server

for number, command in enumerate({commands!r}, 1):
    server.shell(name=f"step {{number}}", commands=[command])
"""

SSH_ONE = """\
set -e
{lines}
for pid in $pids; do wait $pid; done
"""

SSH_TEN = """\
set -e
one() {{  # host port: a master connection, ten commands through it, then close it
  sock={base}/cm-$1
  ssh $OPTS -p $2 -o ControlMaster=yes -o ControlPath=$sock -fN {user}@$1
  for command in {commands}; do ssh $OPTS -p $2 -o ControlPath=$sock {user}@$1 "$command" > /dev/null; done
  ssh $OPTS -p $2 -o ControlPath=$sock -O exit {user}@$1 2> /dev/null
}}
{lines}
for pid in $pids; do wait $pid; done
"""


@dataclass
class Server:
    name: str
    address: str
    port: int
    root: Path
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    def key_line(self) -> str:
        key = (self.directory / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        return f"[{self.address}]:{self.port} {' '.join(key)}"


@dataclass
class Tool:
    name: str
    run: Callable[[], tuple[float, float]]  # seconds of wall time, seconds of client CPU
    includes: str


@dataclass
class Sample:
    wall: float
    client_cpu: float
    sshd_cpu: float


class Bench:
    def __init__(self, base: Path, rounds: int) -> None:
        self.base = base
        self.rounds = rounds
        self.servers: list[Server] = []
        self.untrusted: Server | None = None
        self.key = base / "client" / "id_ed25519"
        self.known_hosts = base / "known_hosts"
        self.work = base / "work"
        # The ssh.persist holder's folder: the default one, $XDG_RUNTIME_DIR/rollout, with
        # XDG_RUNTIME_DIR set to a folder of this run (main), as a user's session sets it.
        self.control = base / "xdg" / "rollout"
        self.app_pidfiles: list[Path] = []

    # --- hosts ---------------------------------------------------------------------------------

    def start_hosts(self) -> None:
        ensure_test_user()
        self.key.parent.mkdir(parents=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True
        )
        lines = []
        for i in range(HOSTS + 1):
            address = f"127.0.0.{i + 2}"
            name = f"bench-{i + 1:02d}" if i < HOSTS else "stranger"
            server = Server(
                name,
                address,
                free_port(address),
                self.base / "roots" / name,
                self.base / "servers" / name,
            )
            server.root.mkdir(parents=True)
            write_server(server.directory, address, server.port, self.key.with_suffix(".pub"))
            server.process = start_server(server.directory, address, server.port)
            if i < HOSTS:
                self.servers.append(server)
                lines.append(server.key_line())
            else:
                self.untrusted = server  # its key is never recorded
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def stop_hosts(self) -> None:
        for server in [*self.servers, self.untrusted]:
            if server is not None:
                stop(server.process)

    # --- files each tool reads ----------------------------------------------------------------

    def host_yaml(self, s: Server, **extra: str) -> str:
        fields = {
            "name": s.name,
            "kind": "ssh",
            "address": s.address,
            "port": str(s.port),
            "user": TEST_USER,
            "root": f"'{s.root}'",
            **extra,
        }
        return "      - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"

    def write_inputs(self) -> None:
        assert self.untrusted is not None
        for folder, persist in (("fanout", "0s"), ("fanout-held", "300s")):
            (self.base / folder).mkdir()
            (self.base / folder / "rollout.yml").write_text(
                FANOUT_RUNBOOK.format(
                    known_hosts=self.known_hosts,
                    key=self.key,
                    persist=persist,
                    parallel=HOSTS,
                    bench="\n".join(self.host_yaml(s) for s in self.servers),
                    untrusted=self.host_yaml(self.untrusted),
                )
            )
        ten = [shlex.join(a).replace("{work}", str(self.work)) for a in TEN]
        self.ten_argvs = [[w.replace("{work}", str(self.work)) for w in a] for a in TEN]
        self.ten_commands = ten
        for label, servers in (("bench", self.servers), ("untrusted", [self.untrusted])):
            self._write_tool_inputs(label, servers)
        (self.base / "fabric_run.py").write_text(FABRIC_SCRIPT)
        (self.base / "rollout_run.py").write_text(ROLLOUT_SCRIPT)
        (self.base / "deploy_ten.py").write_text(PYINFRA_DEPLOY.format(commands=ten))

    def _write_tool_inputs(self, label: str, servers: list[Server]) -> None:
        data = {
            "ssh_user": TEST_USER,
            "ssh_key": str(self.key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        hosts = [(s.name, {"ssh_hostname": s.address, "ssh_port": s.port, **data}) for s in servers]
        (self.base / f"inventory_{label}.py").write_text(f"hosts = {hosts!r}\n")
        for what, commands in (("one", ["uname -n"]), ("ten", self.ten_commands)):
            spec = {
                "hosts": [{"address": s.address, "port": s.port} for s in servers],
                "user": TEST_USER,
                "key": str(self.key),
                "known_hosts": str(self.known_hosts),
                "commands": commands,
            }
            (self.base / f"fabric_{label}_{what}.json").write_text(json.dumps(spec))
        for folder, name in (("fanout", "rollout"), ("fanout-held", "rollout_held")):
            spec = {
                "runbook": str(self.base / folder / "rollout.yml"),
                "env": label,
                "argvs": self.ten_argvs,
            }
            (self.base / f"{name}_{label}_ten.json").write_text(json.dumps(spec))
        opts = self.ssh_opts()
        for suffix, kex in (("", f" -o KexAlgorithms={FLOOR_KEX}"), ("_default_kex", "")):
            one = [
                f'ssh {opts}{kex} -p {s.port} {TEST_USER}@{s.address} uname -n > /dev/null & pids="$pids $!"'
                for s in servers
            ]
            (self.base / f"ssh_{label}_one{suffix}.sh").write_text(
                SSH_ONE.format(lines="\n".join(one))
            )
        ten = [f'one {s.address} {s.port} & pids="$pids $!"' for s in servers]
        (self.base / f"ssh_{label}_ten.sh").write_text(
            f"OPTS={shlex.quote(opts + ' -o KexAlgorithms=' + FLOOR_KEX)}\n"
            + SSH_TEN.format(
                base=self.base,
                user=TEST_USER,
                commands=" ".join(shlex.quote(c) for c in self.ten_commands),
                lines="\n".join(ten),
            )
        )

    def ssh_opts(self) -> str:
        return (
            f"-F /dev/null -i {self.key} -o IdentitiesOnly=yes -o BatchMode=yes"
            f" -o UserKnownHostsFile={self.known_hosts} -o GlobalKnownHostsFile=/dev/null"
            " -o StrictHostKeyChecking=yes -o ConnectTimeout=10"
        )

    # --- the commands timed ---------------------------------------------------------------------

    def argv(self, tool: str, what: str, label: str = "bench") -> list[str]:
        b = self.base
        return {
            ("rollout", "one"): [
                str(ROLLOUT), "exec", label, "--config", str(b / "fanout" / "rollout.yml"), "--", "uname", "-n",
            ],
            ("rollout held", "one"): [
                str(ROLLOUT), "exec", label, "--config", str(b / "fanout-held" / "rollout.yml"), "--", "uname", "-n",
            ],
            ("pyinfra", "one"): [
                str(PYINFRA), "-y", "--parallel", str(HOSTS), str(b / f"inventory_{label}.py"), "exec", "--", "uname", "-n",
            ],
            ("fabric", "one"): [PYTHON, str(b / "fabric_run.py"), str(b / f"fabric_{label}_one.json")],
            ("ssh", "one"): ["bash", str(b / f"ssh_{label}_one.sh")],
            ("ssh-default", "one"): ["bash", str(b / f"ssh_{label}_one_default_kex.sh")],
            ("rollout", "ten"): [PYTHON, str(b / "rollout_run.py"), str(b / f"rollout_{label}_ten.json")],
            ("rollout held", "ten"): [PYTHON, str(b / "rollout_run.py"), str(b / f"rollout_held_{label}_ten.json")],
            ("pyinfra", "ten"): [
                str(PYINFRA), "-y", "--parallel", str(HOSTS), str(b / f"inventory_{label}.py"), str(b / "deploy_ten.py"),
            ],
            ("fabric", "ten"): [PYTHON, str(b / "fabric_run.py"), str(b / f"fabric_{label}_ten.json")],
            ("ssh", "ten"): ["bash", str(b / f"ssh_{label}_ten.sh")],
        }[(tool, what)]  # fmt: skip

    def timed(self, argv: list[str]) -> tuple[float, float]:
        cpu = _children_cpu() + self.holder_cpu()
        started = time.perf_counter()
        done = subprocess.run(argv, cwd=self.base, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        cpu = _children_cpu() + self.holder_cpu() - cpu
        if done.returncode != 0:
            raise SystemExit(
                f"{shlex.join(argv[:4])} ... failed ({done.returncode}):\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return elapsed, cpu

    def sshd_cpu(self) -> float:
        """CPU seconds the 20 sshd servers and everything under them have used: the ended
        children through the listeners' own counters, the live ones (the sessions and shells
        of held connections) through theirs."""
        table = _process_table()
        under: dict[int, list[int]] = {}
        for pid, (parent, _) in table.items():
            under.setdefault(parent, []).append(pid)
        pending = [s.process.pid for s in self.servers if s.process is not None]
        ticks = 0
        while pending:
            pid = pending.pop()
            ticks += table.get(pid, (0, 0))[1]
            pending.extend(under.get(pid, []))
        return ticks / os.sysconf("SC_CLK_TCK")

    def holder_cpu(self) -> float:
        """CPU seconds rollout's connection holder has used, 0 before it runs: it works for the
        `rollout held` runs, so its CPU is theirs."""
        try:
            pid = int((self.control / "holder.pid").read_text())
            return _process_table([pid])[pid][1] / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, KeyError):
            return 0.0

    def check_strict(self) -> None:
        """Every tool must refuse the host whose key is not in known_hosts."""
        for tool, what in [
            *(
                (t, w)
                for t in ("rollout", "rollout held", "pyinfra", "fabric", "ssh")
                for w in ("one", "ten")
            ),
            ("ssh-default", "one"),
        ]:
            argv = self.argv(tool, what, "untrusted")
            done = subprocess.run(argv, cwd=self.base, capture_output=True, text=True)
            said = done.stdout + done.stderr
            if done.returncode == 0 or not re.search(
                r"host key|known_hosts|Host key verification failed", said, re.I
            ):
                raise SystemExit(
                    f"{tool} ({what}) did not refuse the unknown host key (exit"
                    f" {done.returncode}):\n{said[-3000:]}"
                )
        assert self.untrusted is not None
        log = (self.untrusted.directory / "sshd.log").read_text()
        if "Accepted publickey" in log:
            raise SystemExit("a tool logged in to the untrusted host")
        print(
            "strict host keys: rollout (with and without held connections), pyinfra, Fabric and ssh"
            " all refuse a host not in known_hosts"
        )

    # --- in-process library timings ---------------------------------------------------------

    def rollout_in_process(self) -> tuple[float, float]:
        from rollout.config import load_runbook
        from rollout.engine import fleet
        from rollout.engine.targets import close_targets, open_targets

        async def work() -> None:
            runbook = load_runbook(self.base / "fanout" / "rollout.yml")
            targets = open_targets(runbook, "bench")
            try:
                for argv in self.ten_argvs:
                    results = await fleet.run_everywhere(
                        list(targets.values()), argv, parallel=HOSTS
                    )
                    assert all(r.exit_status == 0 for r in results), results
            finally:
                await close_targets(targets)

        cpu = time.process_time()
        started = time.perf_counter()
        asyncio.run(work())
        return time.perf_counter() - started, time.process_time() - cpu

    def fabric_in_process(self) -> tuple[float, float]:
        from fabric import ThreadingGroup
        from paramiko import RejectPolicy

        cpu = time.process_time()
        started = time.perf_counter()
        group = ThreadingGroup(
            *(f"{s.address}:{s.port}" for s in self.servers),
            user=TEST_USER,
            connect_kwargs={
                "key_filename": str(self.key),
                "look_for_keys": False,
                "allow_agent": False,
            },
        )
        for connection in group:
            connection.client.load_system_host_keys(str(self.known_hosts))
            connection.client.set_missing_host_key_policy(RejectPolicy())
        try:
            for command in self.ten_commands:
                group.run(command, hide=True)
        finally:
            group.close()
        return time.perf_counter() - started, time.process_time() - cpu

    # --- rounds ---------------------------------------------------------------------------------

    def measure(self) -> dict[str, dict[str, list[Sample]]]:
        run = self.timed
        one = [
            Tool("rollout", lambda: run(self.argv("rollout", "one")), "`rollout exec` CLI process: interpreter start, imports, config load, 20 connections, the command, close, output"),
            Tool("rollout held", lambda: run(self.argv("rollout held", "one")), "the same `rollout exec` CLI process with ssh.persist: the connections opened by an earlier run (round 0) are kept by rollout's holder process, as OpenSSH's ControlPersist does"),
            Tool("pyinfra", lambda: run(self.argv("pyinfra", "one")), "`pyinfra -y --parallel 20 inventory.py exec` CLI process: start, imports, inventory, 20 connections, the command, output"),
            Tool("fabric", lambda: run(self.argv("fabric", "one")), "`python fabric_run.py` process: interpreter start, `import fabric`, ThreadingGroup of 20, group.run, close"),
            Tool("ssh", lambda: run(self.argv("ssh", "one")), f"bash starting 20 `ssh` processes at once, waiting for all; kex {FLOOR_KEX} like the Python tools (the floor)"),
            Tool("ssh pq-kex", lambda: run(self.argv("ssh-default", "one")), "the same with OpenSSH's default kex (sntrup761x25519, post-quantum): shows what that kex costs here"),
        ]  # fmt: skip
        ten = [
            Tool("rollout", lambda: run(self.argv("rollout", "ten")), "`python rollout_run.py` process: interpreter start, rollout imports, load runbook, open_targets, 10x fleet.run_everywhere, close_targets"),
            Tool("rollout held", lambda: run(self.argv("rollout held", "ten")), "the same script with ssh.persist: open_targets gets the held connections, commands go through the holder"),
            Tool("pyinfra", lambda: run(self.argv("pyinfra", "ten")), "`pyinfra -y --parallel 20 inventory.py deploy_ten.py` CLI process: start, imports, 20 connections, 10 server.shell operations"),
            Tool("fabric", lambda: run(self.argv("fabric", "ten")), "`python fabric_run.py` process: interpreter start, `import fabric`, one ThreadingGroup, 10x group.run, close"),
            Tool("ssh", lambda: run(self.argv("ssh", "ten")), f"bash; per host, all hosts at once: `ssh -fNM` master, 10 `ssh` processes through it, `-O exit`; kex {FLOOR_KEX} (the floor)"),
            Tool("rollout lib", self.rollout_in_process, "in this (warm) process, no start-up or imports: load runbook, open_targets, 10x run_everywhere, close_targets"),
            Tool("fabric lib", self.fabric_in_process, "in this (warm) process, no start-up or imports: ThreadingGroup, 10x group.run, close"),
        ]  # fmt: skip
        self.includes = {"one": one, "ten": ten}
        samples: dict[str, dict[str, list[Sample]]] = {
            "one": {t.name: [] for t in one},
            "ten": {t.name: [] for t in ten},
        }
        for round_ in range(self.rounds + 1):  # round 0 warms up and is not counted
            for what, tools in (("one", one), ("ten", ten)):
                shift = round_ % len(tools)  # rotate the order, so no tool always goes first
                for tool in tools[shift:] + tools[:shift]:
                    time.sleep(SETTLE)  # the previous run's sessions end and are reaped
                    sshd = self.sshd_cpu()
                    wall, cpu = tool.run()
                    time.sleep(SETTLE)
                    if round_ > 0:
                        samples[what][tool.name].append(Sample(wall, cpu, self.sshd_cpu() - sshd))
            done = "warm-up" if round_ == 0 else f"round {round_}/{self.rounds}"
            print(f"  {done} done", flush=True)
        return samples

    # --- (c) a rolling deploy ------------------------------------------------------------------

    def deploy(self) -> None:
        from rollout.sandbox.build import Release, build_artifacts

        where = self.base / "deploy"
        where.mkdir()
        tags = ["v2026.02.01-aaaaaaa", "v2026.02.02-bbbbbbb"]
        build_artifacts(where, [Release(t, t, None) for t in tags])
        hosts = []
        for s in self.servers:
            port = free_port()
            hosts.append(
                self.host_yaml(
                    s,
                    url="'http://127.0.0.1:{port}'",
                    vars=f"{{port: '{port}', python: '{PYTHON}'}}",
                )
            )
            self.app_pidfiles.append(s.root / "srv" / "united-cars" / "run" / "app.pid")
        (where / "rollout.yml").write_text(
            DEPLOY_RUNBOOK.format(
                known_hosts=self.known_hosts, key=self.key, parallel=HOSTS, hosts="\n".join(hosts)
            )
        )
        for label, tag in zip(("first install", "rolling upgrade"), tags, strict=True):
            argv = [str(ROLLOUT), "deploy", "bench", tag, "--config", str(where / "rollout.yml")]
            env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
            started = time.perf_counter()
            done = subprocess.run(argv, cwd=where, capture_output=True, text=True, env=env)
            elapsed = time.perf_counter() - started
            if done.returncode != 0:
                raise SystemExit(
                    f"rollout deploy failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}"
                )
            print(f"(c) {label}: `rollout deploy bench {tag}` to {HOSTS} hosts, batches of 5:"
                  f" wall {elapsed:.2f} s (CLI process: start, imports, store, lock, all stages)")  # fmt: skip
            print(_stage_table(done.stdout))
            print(_deploy_breakdown(where))

    def stop_holder(self) -> None:
        """`rollout hosts disconnect`, then the holder's pid if it is still there."""
        config = self.base / "fanout-held" / "rollout.yml"
        if config.exists():
            subprocess.run(
                [str(ROLLOUT), "hosts", "disconnect", "--config", str(config)], capture_output=True
            )
        with contextlib.suppress(OSError, ValueError):
            os.kill(int((self.control / "holder.pid").read_text()), signal.SIGTERM)

    def stop_apps(self) -> None:
        pids = []
        for pidfile in self.app_pidfiles:
            with contextlib.suppress(OSError, ValueError):
                pid = int(pidfile.read_text())
                os.kill(pid, signal.SIGTERM)
                pids.append(pid)
        deadline = time.monotonic() + 15
        for pid in pids:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    with contextlib.suppress(OSError):  # a zombie (not our child, reaped by init later) is gone
        status = Path(f"/proc/{pid}/status").read_text()
        if re.search(r"^State:\s+Z", status, re.M):
            return False
    return True


def _stage_table(stdout: str) -> str:
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if "stage timings" in line:
            return "\n".join("    " + x for x in lines[i:] if x.strip())
    return "    (no stage table found)\n" + "\n".join("    " + x for x in lines[-12:])


def _deploy_breakdown(where: Path) -> str:
    """The deploy phase from the newest event log: the install span, then each batch's span."""
    log = max(where.rglob("events/*.jsonl"), key=lambda p: p.stat().st_mtime)
    events = [json.loads(line) for line in log.read_text().splitlines()]
    steps = [
        e
        for e in events
        if e["event"] in ("StepStarted", "StepFinished") and e["step"]["phase"] == "deploy"
    ]

    def span(chosen: list[dict[str, object]]) -> float:
        times = [datetime.fromisoformat(str(e["at"])) for e in chosen]
        return (max(times) - min(times)).total_seconds() if times else 0.0

    def per_host(name: str) -> str:
        secs = [
            e["seconds"]
            for e in steps
            if e["event"] == "StepFinished" and e["step"]["name"] == name
        ]
        return (
            f"per host median {statistics.median(secs):.2f} s, max {max(secs):.2f} s"
            if secs
            else ""
        )

    install = [e for e in steps if e["step"]["name"] == "install"]
    lines = [
        f"    deploy phase: install on all {HOSTS} hosts {span(install):.2f} s ({per_host('install')})"
    ]
    hosts = [f"bench-{i + 1:02d}" for i in range(HOSTS)]
    for b in range(0, HOSTS, 5):
        batch = set(hosts[b : b + 5])
        chosen = [e for e in steps if e["step"]["name"] != "install" and e["step"]["host"] in batch]
        lines.append(
            f"      batch {b // 5 + 1} ({hosts[b]}..{hosts[b + 4]}): stop/switch/start + health {span(chosen):.2f} s"
        )
    lines.append(f"      activate {per_host('activate')}; health wait {per_host('health')}")
    return "\n".join(lines)


def _process_table(pids: list[int] | None = None) -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, clock ticks used: utime stime cutime cstime), from /proc."""
    table = {}
    chosen = pids if pids is not None else [int(p) for p in os.listdir("/proc") if p.isdigit()]
    for pid in chosen:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile: its time is in its parent's counters now
        table[pid] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return table


def _children_cpu() -> float:
    times = os.times()
    return times.children_user + times.children_system


def report(bench: Bench, samples: dict[str, dict[str, list[Sample]]]) -> tuple[float, float]:
    titles = {
        "one": f"(a) one command (`uname -n`) on {HOSTS} hosts, 20 at once",
        "ten": f"(b) ten short commands on each of {HOSTS} hosts, one connection per host",
    }
    cpus = os.cpu_count() or 1
    ratios = {}
    for what, per_tool in samples.items():
        print(titles[what])
        wall = {name: statistics.median(x.wall for x in v) for name, v in per_tool.items()}
        for tool in bench.includes[what]:
            values = per_tool[tool.name]
            client = statistics.median(x.client_cpu for x in values)
            sshd = statistics.median(x.sshd_cpu for x in values)
            print(
                f"  {tool.name:12} median {wall[tool.name]:6.3f} s  (min {min(x.wall for x in values):.3f},"
                f" max {max(x.wall for x in values):.3f}, {len(values)} runs)"
                f"  CPU: client {client:.2f} s, sshd {sshd:.2f} s"
            )
        print("  what each timing includes:")
        for tool in bench.includes[what]:
            print(f"    {tool.name:12} {tool.includes}")
        best = min(("pyinfra", "fabric"), key=lambda n: wall[n])
        ratios[what] = wall["rollout held"] / wall[best]
        for name in ("rollout", "rollout held"):
            sshd_floor = statistics.median(x.sshd_cpu for x in per_tool[name]) / cpus
            print(
                f"  {name} / {best} (the faster of pyinfra and Fabric): {wall[name] / wall[best]:.2f};"
                f" {name} / ssh floor: {wall[name] / wall['ssh']:.2f};"
                f" the servers' own CPU alone needs >= {sshd_floor:.2f} s of wall on {cpus} CPUs"
            )
        if what == "ten":
            print(
                f"  work only (in-process, no start-up): rollout lib / fabric lib"
                f" {wall['rollout lib'] / wall['fabric lib']:.2f}"
                f" ({wall['rollout lib']:.3f} s vs {wall['fabric lib']:.3f} s)"
            )
    print(
        "  CPU: client = the tool's process and its children (os.times; for `lib` rows this"
        " process's CPU) and rollout's connection holder; sshd = the 20 servers and everything"
        " under them, ended or live (/proc/<pid>/stat)"
    )
    return ratios["one"], ratios["ten"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="counted rounds (>= 5)")
    parser.add_argument("--no-deploy", action="store_true", help="skip (c), the rolling deploy")
    args = parser.parse_args()
    for tool in (ROLLOUT, PYINFRA):
        if not tool.exists():
            raise SystemExit(f"{tool} is missing: run `uv sync --group bench` first")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up on SIGTERM too
    base = Path(tempfile.mkdtemp(prefix="rollout-fanout-"))
    os.chmod(base, 0o755)
    (base / "xdg").mkdir(mode=0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(base / "xdg")  # every tool's process inherits it
    bench = Bench(base, max(args.rounds, 1))
    try:
        started = time.perf_counter()
        bench.start_hosts()
        bench.write_inputs()
        print(
            f"{HOSTS} sshd hosts up in {time.perf_counter() - started:.1f} s; {os.cpu_count()} CPUs;"
            f" load average {os.getloadavg()[0]:.2f} (other work on this machine adds noise)"
        )
        bench.check_strict()
        samples = bench.measure()
        one, ten = report(bench, samples)
        if not args.no_deploy:
            try:
                bench.deploy()
            finally:
                bench.stop_apps()
    finally:
        bench.stop_holder()
        bench.stop_hosts()
        shutil.rmtree(base, ignore_errors=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    verdict = "met" if one <= GOAL_ONE and ten <= GOAL_TEN else "missed"
    print(
        f"goal: fan-out ratios (rollout with ssh.persist) one-command {one:.2f} (target <= {GOAL_ONE}),"
        f" ten-commands {ten:.2f} (target <= {GOAL_TEN}) {verdict}"
    )


if __name__ == "__main__":
    main()
