"""Endpoint conditions in Gatus's notation, evaluated fail-closed.

``[STATUS] == 200``, ``[STATUS] == any(200, 302)``, ``[BODY].status == ok``,
``[RESPONSE_TIME] < 2000``. Unlike Gatus, a placeholder that cannot be resolved, or a value that
is not a number where a number is compared, makes the condition fail (never a silent 0), as
reference/verification.md asks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from rollout.errors import BadInput

_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
_SPLIT = re.compile(r"^\s*(\S.*?)\s+(==|!=|<=|>=|<|>)\s+(.+?)\s*$")
_ANY = re.compile(r"^any\((.*)\)$")


@dataclass(frozen=True)
class Response:
    """What a condition can look at."""

    status: int
    body: str
    elapsed_ms: float


@dataclass(frozen=True)
class Verdict:
    ok: bool
    explanation: str


class _Missing(Exception):
    pass


def parse(condition: str) -> tuple[str, str, str]:
    match = _SPLIT.match(condition)
    if match is None:
        raise BadInput(
            f"condition {condition!r} has no operator",
            hint=f"write '<placeholder> <op> <value>' with one of {' '.join(_OPERATORS)}",
        )
    left, op, right = match.groups()
    return left, op, right


def evaluate(condition: str, response: Response) -> Verdict:
    left, op, right = parse(condition)
    try:
        actual = _resolve(left, response)
    except _Missing as exc:
        return Verdict(False, f"{condition}: {exc} (fails closed)")
    expected = _ANY.match(right)
    if expected is not None:
        choices = [c.strip() for c in expected.group(1).split(",")]
        if op not in ("==", "!="):
            raise BadInput(f"condition {condition!r}: any() works only with == and !=")
        hit = any(_equal(actual, c) for c in choices)
        ok = hit if op == "==" else not hit
    elif op in ("==", "!="):
        ok = _equal(actual, right) == (op == "==")
    else:
        compared = _compare(actual, op, right)
        if compared is None:
            return Verdict(False, f"{condition}: {actual!r} is not a number (fails closed)")
        ok = compared
    return Verdict(ok, f"{condition}: {left} = {_show(actual)}")


def _resolve(placeholder: str, response: Response) -> Any:
    if placeholder == "[STATUS]":
        return response.status
    if placeholder == "[RESPONSE_TIME]":
        return round(response.elapsed_ms, 1)
    if placeholder == "[BODY]":
        return response.body
    if placeholder.startswith("[BODY]."):
        try:
            data: Any = json.loads(response.body)
        except ValueError as exc:
            raise _Missing("body is not JSON") from exc
        for key in placeholder.removeprefix("[BODY].").split("."):
            if not isinstance(data, dict) or key not in data:
                raise _Missing(f"{placeholder} not in body")
            data = data[key]
        return data
    raise BadInput(
        f"unknown placeholder {placeholder!r}",
        hint="use [STATUS], [RESPONSE_TIME], [BODY] or [BODY].field",
    )


def _equal(actual: Any, expected: str) -> bool:
    number = _number(actual)
    if number is not None and _number(expected) is not None:
        return number == _number(expected)
    return str(actual) == expected


def _compare(actual: Any, op: str, expected: str) -> bool | None:
    a, b = _number(actual), _number(expected)
    if a is None or b is None:
        return None
    return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


def _show(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
