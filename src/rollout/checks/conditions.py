"""Endpoint conditions in Gatus's notation, parsed by a real tokenizer and evaluated fail-closed.

    [STATUS] == 200              [STATUS] == any(200, 302)      [RESPONSE_TIME] < 2000
    [BODY].status == ok          [BODY].items[0].id != 0        [HEADER].content-type == pat(application/json*)
    len([BODY].items) > 0        has([BODY].version) == true

Unlike Gatus (which finds the operator by substring search and reads anything unparseable as 0),
a condition is parsed once, when rollout.yml is loaded, so a typo is a config error with its
line; and at run time a placeholder that cannot be resolved, or a non-number compared as a
number, fails the condition instead of passing silently (reference/verification.md, V1).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rollout.errors import BadInput

_OPERATORS = ("==", "!=", "<=", ">=", "<", ">")
# Longest operators first, each surrounded by spaces as in Gatus, so "a<=b" inside a value
# (a URL, a glob) is never taken for an operator.
_SPLIT = re.compile(r"^\s*(?P<left>\S.*?)\s+(?P<op>==|!=|<=|>=|<|>)\s+(?P<right>.+?)\s*$")
_PLACEHOLDER = re.compile(
    r"^(?:(?P<func>len|has)\((?P<inner>.+)\)|(?P<plain>\[STATUS\]|\[RESPONSE_TIME\]|\[BODY\](?P<path>(?:\.[^.\[\]]+|\[\d+\])*)|\[HEADER\]\.(?P<header>[A-Za-z0-9-]+)))$"
)
_PATH_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")
_FUNCTION = re.compile(r"^(?P<name>any|pat)\((?P<args>.*)\)$")


@dataclass(frozen=True)
class Response:
    """What a condition can look at."""

    status: int
    body: str
    elapsed_ms: float
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    phases: Mapping[str, float] = field(
        default_factory=dict
    )  # connect, tls, first byte, transfer (ms)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    explanation: str


@dataclass(frozen=True)
class Condition:
    text: str
    placeholder: str
    function: str | None  # len | has around the placeholder
    op: str
    expected: tuple[str, ...]  # one value, or any()'s choices
    pattern: bool  # pat(): glob match


class _Missing(Exception):
    pass


def parse(text: str) -> Condition:
    """Parse one condition or raise ``BadInput`` saying what is wrong with it."""
    match = _SPLIT.match(text)
    if match is None:
        raise BadInput(
            f"condition {text!r} has no operator",
            hint=f"write '<placeholder> <op> <value>' with spaces around one of {' '.join(_OPERATORS)}",
        )
    left, op, right = match["left"], match["op"], match["right"]
    placeholder = _PLACEHOLDER.match(left)
    if placeholder is None or (
        placeholder["func"] and _PLACEHOLDER.match(placeholder["inner"]) is None
    ):
        raise BadInput(
            f"condition {text!r}: unknown placeholder {left!r}",
            hint="use [STATUS], [RESPONSE_TIME], [BODY], [BODY].a.b[0], [HEADER].name, len(...) or has(...)",
        )
    function = _FUNCTION.match(right)
    choices: tuple[str, ...] = (right,)
    pattern = False
    if function is not None:
        if op not in ("==", "!="):
            raise BadInput(f"condition {text!r}: {function['name']}() works only with == and !=")
        args = tuple(a.strip() for a in function["args"].split(","))
        if not all(args):
            raise BadInput(
                f"condition {text!r}: {function['name']}() needs values, e.g. any(200, 302)"
            )
        choices, pattern = args, function["name"] == "pat"
    return Condition(text, placeholder["inner"] or left, placeholder["func"], op, choices, pattern)


def evaluate(text: str, response: Response) -> Verdict:
    condition = parse(text)
    try:
        actual = _resolve(condition.placeholder, response)
    except _Missing as exc:
        if condition.function == "has":
            actual = False
        else:
            return Verdict(False, f"{text}: {exc} (fails closed)")
    else:
        if condition.function == "has":
            actual = True
        elif condition.function == "len":
            actual = (
                len(actual) if isinstance(actual, list | dict | str) else len(json.dumps(actual))
            )
    shown = (
        f"{condition.function}({condition.placeholder})"
        if condition.function
        else condition.placeholder
    )
    if condition.op in ("==", "!="):
        hit = any(_equal(actual, c, glob=condition.pattern) for c in condition.expected)
        return Verdict(hit == (condition.op == "=="), f"{text}: {shown} = {_show(actual)}")
    compared = _compare(actual, condition.op, condition.expected[0])
    if compared is None:
        return Verdict(False, f"{text}: {_show(actual)!r} is not a number (fails closed)")
    return Verdict(compared, f"{text}: {shown} = {_show(actual)}")


def _resolve(placeholder: str, response: Response) -> Any:
    if placeholder == "[STATUS]":
        return response.status
    if placeholder == "[RESPONSE_TIME]":
        return round(response.elapsed_ms, 1)
    if placeholder.startswith("[HEADER]."):
        name = placeholder.removeprefix("[HEADER].").lower()
        if name not in response.headers:
            raise _Missing(f"header {name} not sent")
        return response.headers[name]
    if placeholder == "[BODY]":
        return response.body
    try:
        data: Any = json.loads(response.body)
    except ValueError as exc:
        raise _Missing("body is not JSON") from exc
    for key, index in _PATH_PART.findall(placeholder.removeprefix("[BODY]")):
        if key and isinstance(data, dict) and key in data:
            data = data[key]
        elif index and isinstance(data, list) and int(index) < len(data):
            data = data[int(index)]
        else:
            raise _Missing(f"{placeholder} not in body")
    return data


def _equal(actual: Any, expected: str, *, glob: bool) -> bool:
    if glob:
        return fnmatch.fnmatchcase(str(actual), expected)
    if isinstance(actual, bool):
        return str(actual).lower() == expected.lower()
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
