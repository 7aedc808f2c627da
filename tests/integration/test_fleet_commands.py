"""Operator commands on SSH hosts: hosts trust, exec, logs, status drift, --keep-going."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.fixtures.sandbox import TAGS, build_artifact
from tests.fixtures.sshd import TEST_USER, Fleet, SshdHost, free_port, start_server, stop

V1, V2 = TAGS[:2]

RUNBOOK = """\
app: shop
release: {{artifact: 'dist/app-{{tag}}.tar.gz'}}
runtime:
  kind: release-dir
  path: srv/app
  launcher:
    command: ['{python}', '-m', 'http.server', '{{port}}', '--bind', '127.0.0.1']
  health_url: 'http://127.0.0.1:{{port}}/api/health'
  health_timeout: 10s
ssh: {{known_hosts: '{known_hosts}', key_file: '{key}', agent: false, connect_timeout: 3s}}
checks: {{cpu_max: 100%}}  # the test hosts share this machine with the test run
environments:
  production:
    hosts:
{hosts}
verify:
  version: {{path: /api/version, field: version}}
"""


def setup(fleet: Fleet, hosts: list[SshdHost], roles: dict[str, str] | None = None) -> Path:
    roles = roles or {}
    entries = "\n".join(
        f"      - {{name: {h.name}, address: {h.address}, port: {h.port}, user: {TEST_USER}, root: '{h.root}',"
        f" roles: [{roles.get(h.name, 'web')}], url: 'http://127.0.0.1:{{port}}', vars: {{port: '{free_port()}'}}}}"
        for h in hosts
    )
    config = fleet.base / "rollout.yml"
    config.write_text(
        RUNBOOK.format(
            python=sys.executable,
            known_hosts=fleet.known_hosts,
            key=fleet.client_key,
            hosts=entries,
        )
    )
    for tag in (V1, V2):
        build_artifact(fleet.base / "dist", tag)
    return config


def rollout(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI; --config goes before a `--`, after which everything is the remote command."""
    head, dash, tail = args, (), ()
    if "--" in args:
        at = args.index("--")
        head, dash, tail = args[:at], ("--",), args[at + 1 :]
    return subprocess.run(
        [sys.executable, "-m", "rollout", *head, "--config", str(config), *dash, *tail],
        capture_output=True,
        text=True,
        timeout=120,
    )


def stop_apps(hosts: list[SshdHost]) -> None:
    for host in hosts:
        pidfile = host.root / "srv" / "app" / "run" / "app.pid"
        if pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().strip()], capture_output=True)


def test_hosts_trust_records_keys_on_purpose_and_refuses_a_changed_one(fleet: Fleet) -> None:
    hosts = [
        fleet.add("web-1", "127.0.0.2", trust=False),
        fleet.add("web-2", "127.0.0.3", trust=False),
    ]
    config = setup(fleet, hosts)
    refused = rollout(config, "exec", "production", "--", "true")
    assert refused.returncode == 3 and "unknown host key" in refused.stdout

    trusted = rollout(config, "hosts", "trust", "production", "--yes")
    assert trusted.returncode == 0, trusted.stdout + trusted.stderr
    assert trusted.stdout.count("SHA256:") == 2 and "recorded 2 key(s)" in trusted.stdout
    assert rollout(config, "exec", "production", "--", "true").returncode == 0

    # web-2 is rebuilt with a new key: trust shows it as changed and leaves it alone.
    for suffix in ("", ".pub"):
        (hosts[1].directory / f"ssh_host_ed25519_key{suffix}").unlink()
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-f",
            str(hosts[1].directory / "ssh_host_ed25519_key"),
        ],
        check=True,
    )
    stop(hosts[1].process)
    hosts[1].process = start_server(hosts[1].directory, hosts[1].address, hosts[1].port)
    again = rollout(config, "hosts", "trust", "production", "--yes")
    assert again.returncode == 1 and "changed" in again.stdout
    assert "HOST KEY CHANGED" in rollout(config, "exec", "production", "--", "true").stdout
    replaced = rollout(config, "hosts", "trust", "production", "--yes", "--replace")
    assert replaced.returncode == 0
    assert rollout(config, "exec", "production", "--", "true").returncode == 0


def test_exec_groups_output_per_host_filters_by_role_and_reports_failures(fleet: Fleet) -> None:
    hosts = [fleet.add(f"web-{i}", f"127.0.0.{i + 1}") for i in (1, 2)] + [
        fleet.add("db-1", "127.0.0.4")
    ]
    config = setup(fleet, hosts, roles={"db-1": "db"})
    result = rollout(
        config, "exec", "production", "--json", "--", "sh", "-c", 'echo "on $(hostname)"; echo two'
    )
    assert result.returncode == 0
    outputs = json.loads(result.stdout)
    assert [o["host"] for o in outputs] == ["web-1", "web-2", "db-1"]
    assert all(o["exit_status"] == 0 and o["output"].endswith("two") for o in outputs)

    only_db = json.loads(
        rollout(config, "exec", "production", "--role", "db", "--json", "--", "true").stdout
    )
    assert [o["host"] for o in only_db] == ["db-1"]
    failing = rollout(config, "exec", "production", "--", "sh", "-c", "exit 7")
    assert failing.returncode == 1 and failing.stdout.count("exit 7") == 3
    unknown_role = rollout(config, "exec", "production", "--role", "cache", "--", "true")
    assert unknown_role.returncode == 2 and "roles there: db, web" in unknown_role.stderr


def test_logs_show_each_hosts_app_log_prefixed_by_host(fleet: Fleet) -> None:
    hosts = [fleet.add("web-1", "127.0.0.2"), fleet.add("web-2", "127.0.0.3")]
    config = setup(fleet, hosts)
    try:
        assert rollout(config, "deploy", "production", V1).returncode == 0
        logs = rollout(config, "logs", "production", "--tail", "50")
        assert logs.returncode == 0
        lines = logs.stdout.splitlines()
        for host in ("web-1", "web-2"):
            assert any(line.startswith(f"{host} |") and "GET /api/" in line for line in lines), (
                logs.stdout
            )
    finally:
        stop_apps(hosts)


def test_status_flags_drift_between_hosts(fleet: Fleet) -> None:
    hosts = [fleet.add("web-1", "127.0.0.2"), fleet.add("web-2", "127.0.0.3")]
    config = setup(fleet, hosts)
    try:
        assert rollout(config, "deploy", "production", V1).returncode == 0
        assert (
            json.loads(rollout(config, "status", "production", "--json").stdout)["drift"] is False
        )
        # Someone switched web-2 by hand behind rollout's back.
        app = hosts[1].root / "srv" / "app"
        subprocess.run(
            ["sh", "-c", f"cd {app} && mkdir -p releases/hand && ln -sfn releases/hand current"],
            check=True,
        )
        status = json.loads(rollout(config, "status", "production", "--json").stdout)
        assert status["drift"] is True
        assert [(h["current"], h["runs"]) for h in status["hosts"]] == [(V1, V1), (V1, "hand")]
    finally:
        stop_apps(hosts)


def test_keep_going_leaves_out_a_host_whose_install_fails(fleet: Fleet) -> None:
    hosts = [fleet.add("web-1", "127.0.0.2"), fleet.add("web-2", "127.0.0.3")]
    config = setup(fleet, hosts)
    blocker = hosts[1].root / "srv" / "app" / "releases"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")  # web-2 cannot install anything
    try:
        strict = rollout(config, "deploy", "production", V1)
        assert strict.returncode == 1 and "install" in strict.stdout
        assert not (hosts[0].root / "srv" / "app" / "current").exists()  # nothing switched anywhere

        lenient = rollout(config, "deploy", "production", V1, "--keep-going", "--json")
        assert lenient.returncode == 0, lenient.stdout + lenient.stderr
        assert json.loads(lenient.stdout)["skipped_hosts"] == ["web-2"]
        assert (
            hosts[0].root / "srv" / "app" / ".current-production-version"
        ).read_text().strip() == V1
        assert not (hosts[1].root / "srv" / "app" / "current").exists()
    finally:
        stop_apps(hosts)
