"""Endpoint conditions in Gatus notation, failing closed."""

from __future__ import annotations

import pytest

from rollout.checks.conditions import Response, evaluate
from rollout.errors import BadInput
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
