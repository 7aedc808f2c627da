"""The command line as a user meets it: init, validate, clear errors and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def rollout(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_init_writes_a_starter_that_validates_and_refuses_to_overwrite(tmp_path: Path) -> None:
    assert rollout("init", cwd=tmp_path).returncode == 0
    assert "# " in (tmp_path / "rollout.yml").read_text()  # commented
    validated = rollout("config", "validate", cwd=tmp_path)
    assert validated.returncode == 0 and "ok" in validated.stdout
    again = rollout("init", cwd=tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr


def test_a_broken_runbook_reports_every_problem_with_its_line_and_exits_2(tmp_path: Path) -> None:
    (tmp_path / "rollout.yml").write_text(
        "app: shop\n"
        "runtime: {kind: release-dir, start: 'true'}\n"
        "environments:\n"
        "  production:\n"
        "    hosts:\n"
        "      - {name: web-1}\n"
        "    colour: blue\n"
        "checks: {disk_max: lots}\n"
    )
    result = rollout("config", "validate", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert any(
        line.startswith(
            "error: rollout.yml:6: environments.production.hosts[0].address: field required"
        )
        for line in lines
    )
    assert any("rollout.yml:7: environments.production.colour" in line for line in lines)
    assert any("rollout.yml:8: checks.disk_max" in line for line in lines)


def test_a_missing_secret_is_named_with_its_line_and_never_shown(tmp_path: Path) -> None:
    (tmp_path / "rollout.yml").write_text(
        "app: shop\n"
        "runtime: {kind: release-dir, start: 'true'}\n"
        "environments:\n"
        "  production:\n"
        "    hosts: [{name: web-1, address: 10.0.0.1}]\n"
        "    database: {url: '${SHOP_DB_URL}'}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "SHOP_DB_URL"}
    missing = subprocess.run(
        [sys.executable, "-m", "rollout", "config", "validate"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=env,
    )
    assert missing.returncode == 2
    assert "rollout.yml:6" in missing.stderr and "SHOP_DB_URL is not set" in missing.stderr
    secret = "postgresql://shop:hunter2-pw@db/shop"
    shown = rollout("config", "validate", cwd=tmp_path, env={"SHOP_DB_URL": secret})
    assert shown.returncode == 0 and "hunter2-pw" not in shown.stdout + shown.stderr


def test_help_lists_every_command(tmp_path: Path) -> None:
    result = rollout("--help", cwd=tmp_path)
    for command in (
        "deploy",
        "rollback",
        "status",
        "history",
        "init",
        "config",
        "lock",
        "audit",
        "demo",
    ):
        assert command in result.stdout


def test_an_unknown_environment_is_bad_input(tmp_path: Path) -> None:
    assert rollout("init", cwd=tmp_path).returncode == 0
    result = rollout("deploy", "prod", "v2026.01.01-aaaaaaa", cwd=tmp_path)
    assert result.returncode == 2 and "production" in result.stderr


def test_an_unknown_command_or_option_is_a_usage_error_not_a_traceback(tmp_path: Path) -> None:
    unknown = rollout("deplyo", "production", cwd=tmp_path)
    bad_option = rollout("deploy", "production", "v1", "--bogus", cwd=tmp_path)

    assert unknown.returncode == 2 and "No such command 'deplyo'" in unknown.stderr
    assert bad_option.returncode == 2 and "No such option: --bogus" in bad_option.stderr
    assert "Traceback" not in unknown.stderr + bad_option.stderr


def test_a_command_s_own_help_works_when_only_its_group_is_loaded(tmp_path: Path) -> None:
    for command in (["exec"], ["db", "backup"], ["hosts", "trust"], ["ack"]):
        shown = rollout(*command, "--help", cwd=tmp_path)
        assert shown.returncode == 0 and f"rollout {' '.join(command)} [OPTIONS]" in shown.stdout
