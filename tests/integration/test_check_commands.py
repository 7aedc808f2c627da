"""`rollout check` and `rollout verify`: the suites on their own, one table, exit 1 on a failure."""

from __future__ import annotations

import json
import sqlite3

from tests.fixtures.sandbox import TAGS, Sandbox

V1, V2 = TAGS[:2]


def test_check_passes_on_a_healthy_environment_and_records_the_results(sandbox: Sandbox) -> None:
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    result = sandbox.rollout("check", "production", "--tag", V2)
    assert result.returncode == 0, result.stdout
    assert "none failed" in result.stdout
    report = json.loads(sandbox.rollout("check", "production", "--json").stdout)
    ids = {(c["id"], c["host"]) for c in report["checks"]}
    assert {
        ("cpu", "web-1"),
        ("memory", "web-2"),
        ("production-health", "web-1"),
        ("rollback-ready", "web-2"),
    } <= ids
    rows = (
        sqlite3.connect(sandbox.root / ".rollout" / "rollout.db")
        .execute(
            "select count(*) from check_results where deployment_id is null and phase = 'preflight'"
        )
        .fetchone()[0]
    )
    assert rows >= len(report["checks"])


def test_check_fails_when_production_is_down(sandbox: Sandbox) -> None:
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    sandbox.stop_apps()
    result = sandbox.rollout("check", "production", "--json")
    assert result.returncode == 1
    failed = {
        (c["id"], c["host"]) for c in json.loads(result.stdout)["checks"] if c["status"] == "fail"
    }
    assert failed == {("production-health", "web-1"), ("production-health", "web-2")}


def test_verify_checks_what_runs_or_the_tag_given(sandbox: Sandbox) -> None:
    nothing = sandbox.rollout("verify", "production")
    assert nothing.returncode == 2 and "--tag" in nothing.stderr
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    ok = sandbox.rollout("verify", "production", "--json")
    assert ok.returncode == 0
    assert {c["status"] for c in json.loads(ok.stdout)["checks"]} == {"pass"}
    wrong = sandbox.rollout("verify", "production", "--tag", V2, "--json")
    assert wrong.returncode == 1
    versions = [c for c in json.loads(wrong.stdout)["checks"] if c["id"] == "version"]
    assert [c["status"] for c in versions] == ["fail", "fail"] and versions[0]["value"] == V1


def test_the_readiness_review_gates_a_deploy_until_signed_off(sandbox: Sandbox) -> None:
    text = sandbox.config.read_text().replace(
        "checks: {cpu_max: 100%}",
        "checks: {cpu_max: 100%}\n"
        "readiness: {approvals: {count: 2, roles: [platform, product-owner]}, require: [ci-passed]}\n"
        "people: {roles: {deployer: platform, business: product-owner}}",
    )
    sandbox.config.write_text(text)
    refused = sandbox.rollout("deploy", "production", V1)
    assert refused.returncode == 1
    assert "product-owner" in refused.stdout and "ci-passed" in refused.stdout
    assert not (sandbox.root / "hosts").exists()  # refused before pre-flight touched a host
    missing = sandbox.rollout("readiness", "production", V1)
    assert missing.returncode == 1 and "missing" in missing.stdout

    assert (
        sandbox.rollout("approve", "production", V1, "--as", "platform", "--by", "ana").returncode
        == 0
    )
    assert (
        sandbox.rollout(
            "approve", "production", V1, "--as", "product-owner", "--by", "bo"
        ).returncode
        == 0
    )
    assert (
        sandbox.rollout("approve", "production", V1, "--item", "ci-passed", "--by", "ci").returncode
        == 0
    )
    assert sandbox.rollout("readiness", "production", V1).returncode == 0
    shipped = sandbox.rollout("deploy", "production", V1)
    assert shipped.returncode == 0, shipped.stdout
    both = sandbox.rollout("approve", "production", V1, "--as", "x", "--item", "y")
    assert both.returncode == 2


def test_verify_runs_the_configured_graders_against_the_public_url(sandbox: Sandbox) -> None:
    import re

    port = re.search(r"name: web-1.*?port: '(\d+)'", sandbox.config.read_text()).group(1)  # type: ignore[union-attr]
    text = (
        sandbox.config.read_text()
        .replace("  production:\n", f"  production:\n    url: 'http://127.0.0.1:{port}'\n", 1)
        .replace(
            "  version: {path: /api/version, field: version, settle: 2s}",
            "  version: {path: /api/version, field: version, settle: 2s}\n"
            "  headers: {required: [x-content-type-options]}\n"
            "  load: {requests: 60, concurrency: 5, thresholds: ['p(95)<2000', 'rate<0.01']}",
        )
    )
    sandbox.config.write_text(text)
    assert (
        sandbox.rollout("deploy", "production", V1).returncode == 1
    )  # python's http.server sends no headers
    latest = json.loads(sandbox.rollout("history", "--json").stdout)[0]
    assert latest["failed_step"] == "verify/security-headers" and latest["status"] == "rolled_back"

    sandbox.config.write_text(text.replace("  headers: {required: [x-content-type-options]}\n", ""))
    assert sandbox.rollout("deploy", "production", V1).returncode == 0
    report = json.loads(sandbox.rollout("verify", "production", "--json").stdout)
    load = {c["id"]: c["status"] for c in report["checks"] if c["id"].startswith("load")}
    assert load == {"load p(95)<2000": "pass", "load rate<0.01": "pass"}
