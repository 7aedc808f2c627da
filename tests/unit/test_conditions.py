"""Endpoint conditions in Gatus notation, failing closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout.checks.conditions import Response, evaluate, parse
from rollout.config import load_runbook
from rollout.errors import BadInput, ConfigError
from rollout.runtimes.template import render

OK = Response(status=200, body='{"status": "ok", "db": {"latency": 12}}', elapsed_ms=150.0)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("[STATUS] == 200", True),
        ("[STATUS] != 200", False),
        ("[STATUS] == any(200, 302)", True),
        ("[STATUS] == any(301, 302)", False),
        ("[STATUS] < 400", True),
        ("[RESPONSE_TIME] < 2000", True),
        ("[RESPONSE_TIME] < 100", False),
        ("[BODY].status == ok", True),
        ("[BODY].db.latency <= 12", True),
        ("[BODY].status == degraded", False),
    ],
)
def test_conditions(condition: str, expected: bool) -> None:
    assert evaluate(condition, OK).ok is expected


def test_a_missing_field_fails_instead_of_reading_as_zero() -> None:
    verdict = evaluate("[BODY].latency < 500", OK)
    assert not verdict.ok and "fails closed" in verdict.explanation


def test_a_non_number_compared_as_a_number_fails() -> None:
    assert not evaluate("[BODY].status < 5", OK).ok


def test_a_body_that_is_not_json_fails_body_paths() -> None:
    assert not evaluate("[BODY].status == ok", Response(200, "<html>", 1.0)).ok


def test_a_condition_without_operator_is_bad_input() -> None:
    with pytest.raises(BadInput, match="no operator"):
        evaluate("[STATUS]", OK)


def test_templates_refuse_unknown_placeholders() -> None:
    assert render("http://127.0.0.1:{port}/", {"port": "80"}, where="x") == "http://127.0.0.1:80/"
    with pytest.raises(BadInput, match=r"runtime.health_url: unknown placeholder \{prot\}"):
        render("http://127.0.0.1:{prot}/", {"port": "80"}, where="runtime.health_url")


HEADERS = Response(
    200,
    '{"items": [{"id": 7}], "version": "v1"}',
    12.0,
    {"content-type": "application/json; charset=utf-8"},
)


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("[HEADER].content-type == pat(application/json*)", True),
        ("[HEADER].Content-Type == pat(text/*)", False),
        ("[BODY].items[0].id == 7", True),
        ("[BODY].items[1].id == 7", False),
        ("len([BODY].items) == 1", True),
        ("has([BODY].version) == true", True),
        ("has([BODY].nothing) == false", True),
        ("[HEADER].x-missing == anything", False),
    ],
)
def test_headers_paths_and_functions(condition: str, expected: bool) -> None:
    assert evaluate(condition, HEADERS).ok is expected


@pytest.mark.parametrize(
    "broken",
    [
        "[STATUS]==200",
        "[STAUTS] == 200",
        "[STATUS] < any(200, 300)",
        "[BODY].x == any()",
        "len([BODY] == 1",
    ],
)
def test_conditions_that_do_not_parse_are_refused(broken: str) -> None:
    with pytest.raises(BadInput):
        parse(broken)


def test_a_broken_condition_is_a_config_error_with_its_line(tmp_path: Path) -> None:
    config = tmp_path / "rollout.yml"
    config.write_text(
        "app: shop\nruntime: {kind: release-dir, start: 'true'}\n"
        "environments: {production: {hosts: [{name: a, address: 10.0.0.1}]}}\n"
        "verify:\n  endpoints:\n    - {path: /, conditions: ['[STATUS] = 200']}\n"
        "  load: {thresholds: ['p95 < 2000']}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_runbook(config)
    lines = str(error.value).splitlines()
    assert any(
        line.startswith(f"{config}:6: verify.endpoints[0].conditions") and "no operator" in line
        for line in lines
    )
    assert any(line.startswith(f"{config}:7: verify.load.thresholds") for line in lines)
