"""The security-headers grader against real HTTP(S) servers on 127.0.0.1.

Scores are the MDN HTTP Observatory's: 100, penalties always, bonuses only from 90 up.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout.checks import headers
from rollout.checks.headers import HeadersReport, grade, letter_for
from rollout.errors import HostError
from rollout.model import CheckStatus
from tests.fixtures.example_app import start_example_app, stop
from tests.fixtures.headers import HeadersCerts, Page, ServeFn

REPO = Path(__file__).resolve().parents[2]

HSTS = ("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
CSP_STRICT = ("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
XFO = ("X-Frame-Options", "DENY")
XCTO = ("X-Content-Type-Options", "nosniff")
REFERRER = ("Referrer-Policy", "no-referrer")
FULL = (HSTS, CSP_STRICT, XFO, XCTO, REFERRER)


def run(url: str, ca: Path | None = None) -> HeadersReport:
    return asyncio.run(grade(url, ca_file=ca, timeout=5))


def without(name: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(h for h in FULL if h[0].lower() != name.lower()) + extra


# --- scoring rules, no network


@pytest.mark.parametrize(
    ("score", "letter"),
    [(135, "A+"), (100, "A+"), (99, "A"), (90, "A"), (85, "A-"), (80, "B+"), (79, "B"),
     (70, "B"), (65, "B-"), (60, "C+"), (50, "C"), (45, "C-"), (40, "D+"), (30, "D"),
     (25, "D-"), (24, "F"), (0, "F"), (-20, "F")],
)  # fmt: skip
def test_grade_bands_are_the_observatory_chart(score: int, letter: str) -> None:
    assert letter_for(score) == letter


# --- good servers


def test_full_set_over_verified_https_is_a_plus(
    headers_server: ServeFn, headers_certs: HeadersCerts
) -> None:
    url = headers_server(Page(FULL), tls=True)
    report = run(url, headers_certs.ca)
    # 100 + CSP default-src 'none' (+10) + Referrer-Policy private (+5) + frame-ancestors (+5)
    assert (report.score, report.grade) == (120, "A+")
    assert all(t.passed for t in report.tests)
    assert report.hsts.max_age == 63072000 and report.hsts.include_subdomains
    assert report.hsts.verified
    # An explicit port: the http:// counterpart is unknown, so redirection is not tested (0).
    assert report.test("redirection").result == "redirection-not-tested"
    check = report.check(required=list(headers.REQUIRED_NAMES), min_grade="A")
    assert check.status is CheckStatus.PASS, check
    assert report.lines()[0].startswith("grade A+  score 120")
    assert report.to_json()["grade"] == "A+"


def test_less_strict_csp_gives_a(headers_server: ServeFn, headers_certs: HeadersCerts) -> None:
    # 'unsafe-eval' costs 10; XFO DENY without frame-ancestors and no Referrer-Policy earn 0.
    page = Page((HSTS, ("Content-Security-Policy", "default-src 'self' 'unsafe-eval'"), XFO, XCTO))
    report = run(headers_server(page, tls=True), headers_certs.ca)
    assert report.test("content-security-policy").modifier == -10
    assert (report.score, report.grade) == (90, "A")


def test_http_redirecting_to_https_on_same_host(
    headers_server: ServeFn, headers_certs: HeadersCerts
) -> None:
    target = headers_server(Page(FULL), tls=True)
    start = headers_server(Page(location=target))
    report = run(start, headers_certs.ca)
    assert report.final_url == target
    assert report.redirects == (start, target)
    assert report.test("redirection").result == "redirection-to-https"
    assert report.test("strict-transport-security").passed  # the final response is verified https
    assert report.grade == "A+"


def test_redirection_off_host_and_via_http(
    headers_server: ServeFn, headers_certs: HeadersCerts
) -> None:
    target = headers_server(Page(FULL), tls=True, host="localhost")
    off_host = run(headers_server(Page(location=target)), headers_certs.ca)
    assert off_host.test("redirection").result == "redirection-off-host-from-http"
    assert off_host.test("redirection").modifier == -5
    hop = headers_server(Page(location=target))
    via_http = run(headers_server(Page(location=hop)), headers_certs.ca)
    assert via_http.test("redirection").result == "redirection-not-to-https-on-initial-redirection"
    assert via_http.test("redirection").modifier == -10


# --- bad servers


def test_no_security_headers_is_f(headers_server: ServeFn) -> None:
    report = run(headers_server(Page()))
    # CSP -25, XFO -20, HSTS (no https) -20, redirection missing -20, XCTO -5: 100 - 90
    assert (report.score, report.grade) == (10, "F")
    failed = {t.name for t in report.tests if not t.passed}
    assert failed == {
        "content-security-policy",
        "x-frame-options",
        "strict-transport-security",
        "redirection",
        "x-content-type-options",
    }
    check = report.check(required=[], min_grade="B")
    assert check.failed and "below B" in check.evidence and check.remedy


@pytest.mark.parametrize(
    ("required", "page_headers", "test", "result", "modifier"),
    [
        ("hsts", without("strict-transport-security"), "strict-transport-security",
         "hsts-not-implemented", -20),
        ("csp", without("content-security-policy"), "content-security-policy",
         "csp-not-implemented", -25),
        ("x-content-type-options", without("x-content-type-options"), "x-content-type-options",
         "x-content-type-options-not-implemented", -5),
        # No XFO and no frame-ancestors: nothing stops framing.
        ("x-frame-options",
         (HSTS, XCTO, REFERRER, ("Content-Security-Policy", "default-src 'none'")),
         "x-frame-options", "x-frame-options-not-implemented", -20),
        # The Observatory passes a missing Referrer-Policy (0); a required one must be sent.
        ("referrer-policy", without("referrer-policy"), "referrer-policy",
         "referrer-policy-not-implemented", 0),
    ],
)  # fmt: skip
def test_each_missing_header(
    headers_server: ServeFn,
    headers_certs: HeadersCerts,
    required: str,
    page_headers: tuple[tuple[str, str], ...],
    test: str,
    result: str,
    modifier: int,
) -> None:
    report = run(headers_server(Page(page_headers), tls=True), headers_certs.ca)
    t = report.test(test)
    assert (t.result, t.modifier) == (result, modifier)
    check = report.check(required=[required], min_grade=None)
    assert check.failed
    assert check.evidence.startswith(f"{required}: ")
    assert check.remedy.startswith(f"{required}: ") and len(check.remedy) > len(required) + 5
    # Every other required header is still fine.
    others = [n for n in headers.REQUIRED_NAMES if n != required]
    if required != "csp":  # without a CSP, XFO DENY still counts
        assert report.check(required=others, min_grade=None).status is CheckStatus.PASS


@pytest.mark.parametrize(
    "hsts_lines",
    [
        [("Strict-Transport-Security", "max-age=63072000, max-age=63072000")],
        [HSTS, HSTS],  # sent twice: httpx joins the values with ", "
    ],
)
def test_hsts_with_a_comma_is_invalid(
    headers_server: ServeFn, headers_certs: HeadersCerts, hsts_lines: list[tuple[str, str]]
) -> None:
    page = Page((*without("strict-transport-security"), *hsts_lines))
    report = run(headers_server(page, tls=True), headers_certs.ca)
    t = report.test("strict-transport-security")
    assert (t.result, t.modifier, t.passed) == ("hsts-header-invalid", -20, False)
    assert report.check(required=["hsts"], min_grade=None).failed


def test_hsts_short_max_age(headers_server: ServeFn, headers_certs: HeadersCerts) -> None:
    page = Page(without("strict-transport-security", ("Strict-Transport-Security", "max-age=300")))
    report = run(headers_server(page, tls=True), headers_certs.ca)
    assert report.test("strict-transport-security").modifier == -10
    assert report.hsts.max_age == 300
    assert report.check(required=["hsts"], min_grade=None).failed


def test_hsts_needs_a_verified_chain(headers_server: ServeFn) -> None:
    report = run(headers_server(Page(FULL), tls=True))  # no ca_file: the chain does not verify
    t = report.test("strict-transport-security")
    assert (t.result, t.modifier) == ("hsts-invalid-cert", -20)
    assert report.status == 200  # still fetched and graded, as the Observatory does
    # 100 - 20 = 80 < 90: the CSP, Referrer-Policy and frame-ancestors bonuses are withheld.
    assert (report.score, report.grade) == (80, "B+")
    assert "bonuses withheld" in report.lines()[0]


def test_hsts_over_plain_http_does_not_count(headers_server: ServeFn) -> None:
    report = run(headers_server(Page(FULL)))
    t = report.test("strict-transport-security")
    assert (t.result, t.modifier) == ("hsts-not-implemented-no-https", -20)
    assert report.hsts.header == HSTS[1] and not report.hsts.https


@pytest.mark.parametrize(
    ("value", "result", "modifier"),
    [
        ("ALLOW-FROM https://example.com/", "x-frame-options-allow-from-origin", 0),
        ("ALLOWALL", "x-frame-options-header-invalid", -20),
        ("sameorigin", "x-frame-options-sameorigin-or-deny", 0),
    ],
)
def test_x_frame_options_values(
    headers_server: ServeFn, headers_certs: HeadersCerts, value: str, result: str, modifier: int
) -> None:
    page = Page(
        (
            HSTS,
            ("Content-Security-Policy", "default-src 'none'"),
            XCTO,
            REFERRER,
            ("X-Frame-Options", value),
        )
    )
    report = run(headers_server(page, tls=True), headers_certs.ca)
    t = report.test("x-frame-options")
    assert (t.result, t.modifier) == (result, modifier)
    required = report.check(required=["x-frame-options"], min_grade=None)
    # ALLOW-FROM scores 0 in the Observatory, but browsers ignore it: invalid for rollout.
    assert required.failed is (result != "x-frame-options-sameorigin-or-deny")


def test_frame_ancestors_star_is_not_framing_protection(
    headers_server: ServeFn, headers_certs: HeadersCerts
) -> None:
    page = Page((HSTS, ("Content-Security-Policy", "default-src 'none'; frame-ancestors *"), XCTO))
    report = run(headers_server(page, tls=True), headers_certs.ca)
    assert report.test("x-frame-options").result == "x-frame-options-implemented-via-csp"
    assert report.check(required=["x-frame-options"], min_grade=None).failed


def test_x_content_type_options_must_be_exactly_nosniff(
    headers_server: ServeFn, headers_certs: HeadersCerts
) -> None:
    page = Page(without("x-content-type-options", ("X-Content-Type-Options", "nosniff, nosniff")))
    report = run(headers_server(page, tls=True), headers_certs.ca)
    assert report.test("x-content-type-options").result == "x-content-type-options-header-invalid"
    assert report.check(required=["x-content-type-options"], min_grade=None).failed


@pytest.mark.parametrize(
    ("csp", "result", "modifier"),
    [
        ("default-src 'self'; script-src 'self' 'unsafe-inline'", "csp-implemented-with-unsafe-inline", -20),
        ("default-src 'self'; style-src 'self' 'unsafe-inline'", "csp-implemented-with-unsafe-inline-in-style-src-only", 0),
        ("default-src 'self'; img-src http://cdn.example", "csp-implemented-with-insecure-scheme-in-passive-content-only", -10),
        ("default-src 'self'; default-src 'none'", "csp-header-invalid", -25),
        ("default-src 'self'", "csp-implemented-with-no-unsafe", 5),
    ],
)  # fmt: skip
def test_csp_results(
    headers_server: ServeFn, headers_certs: HeadersCerts, csp: str, result: str, modifier: int
) -> None:
    page = Page((HSTS, XFO, XCTO, ("Content-Security-Policy", csp)))
    report = run(headers_server(page, tls=True), headers_certs.ca)
    t = report.test("content-security-policy")
    assert (t.result, t.modifier) == (result, modifier)


# --- cookies, CORS, SRI


@pytest.mark.parametrize(
    ("tls", "cookie", "result", "modifier"),
    [
        # Over https with HSTS: the missing HttpOnly (-30) is worse than the missing Secure (-10).
        (True, "sessionid=abc; Path=/", "cookies-session-without-httponly-flag", -30),
        # Over http there is no HSTS to protect it: -40.
        (False, "sessionid=abc; Path=/", "cookies-session-without-secure-flag", -40),
        (True, "theme=dark; Path=/", "cookies-without-secure-flag-but-protected-by-hsts", -5),
        (True, "sessionid=abc; Secure; HttpOnly; SameSite=Lax", "cookies-secure-with-httponly-sessions-and-samesite", 5),
        (True, "sessionid=abc; Secure; HttpOnly", "cookies-secure-with-httponly-sessions", 0),
        (True, "pref=1; Secure; SameSite=Bogus", "cookies-samesite-flag-invalid", -20),
    ],
)  # fmt: skip
def test_cookies(
    headers_server: ServeFn,
    headers_certs: HeadersCerts,
    tls: bool,
    cookie: str,
    result: str,
    modifier: int,
) -> None:
    report = run(headers_server(Page((*FULL, ("Set-Cookie", cookie))), tls=tls), headers_certs.ca)
    t = report.test("cookies")
    assert (t.result, t.modifier) == (result, modifier)
    assert report.cookies and report.cookies[0].name == cookie.split("=")[0]


def test_cors_reflecting_origin_with_credentials(
    headers_server: ServeFn, headers_certs: HeadersCerts
) -> None:
    page = Page(
        (
            *FULL,
            ("Access-Control-Allow-Origin", "<reflect>"),
            ("Access-Control-Allow-Credentials", "true"),
        )
    )
    report = run(headers_server(page, tls=True), headers_certs.ca)
    t = report.test("cross-origin-resource-sharing")
    assert (t.result, t.modifier) == (
        "cross-origin-resource-sharing-implemented-with-universal-access",
        -50,
    )


@pytest.mark.parametrize(
    ("script", "result", "modifier"),
    [
        ('<script src="http://cdn.example.com/x.js"></script>', "sri-not-implemented-and-external-scripts-not-loaded-securely", -50),
        ('<script src="https://cdn.example.com/x.js"></script>', "sri-not-implemented-but-external-scripts-loaded-securely", -5),
        ('<script src="https://cdn.example.com/x.js" integrity="sha384-abc" crossorigin="anonymous"></script>', "sri-implemented-and-external-scripts-loaded-securely", 5),
        ('<script src="/app.js"></script>', "sri-not-implemented-but-all-scripts-loaded-from-secure-origin", 0),
    ],
)  # fmt: skip
def test_subresource_integrity(
    headers_server: ServeFn, headers_certs: HeadersCerts, script: str, result: str, modifier: int
) -> None:
    body = f"<!doctype html><html><head>{script}</head><body>x</body></html>"
    report = run(headers_server(Page(FULL, body=body), tls=True), headers_certs.ca)
    t = report.test("subresource-integrity")
    assert (t.result, t.modifier) == (result, modifier)


def test_json_response_needs_no_sri(headers_server: ServeFn, headers_certs: HeadersCerts) -> None:
    page = Page(FULL, body='{"ok": true}', content_type="application/json")
    report = run(headers_server(page, tls=True), headers_certs.ca)
    assert report.test("subresource-integrity").result == "sri-not-implemented-response-not-html"


# --- unreachable


def test_unreachable_url_raises_host_error() -> None:
    with pytest.raises(HostError) as caught:
        run("http://127.0.0.1:1/")
    assert caught.value.exit_code == 3
    assert "127.0.0.1" in str(caught.value)


def test_unreachable_report_fails_its_check() -> None:
    report = HeadersReport.unreachable("http://127.0.0.1:1/", "connection refused")
    check = report.check(required=["hsts"], min_grade="B")
    assert check.status is CheckStatus.FAIL
    assert "connection refused" in check.evidence and check.remedy
    assert report.lines() == ["http://127.0.0.1:1/: not graded: connection refused"]


# --- the example app under uvicorn


@pytest.fixture
def united_cars(tmp_path: Path) -> Iterator[str]:
    proc, base = start_example_app(tmp_path)
    try:
        yield f"{base}/"
    finally:
        stop(proc)


def test_example_app_over_plain_http_is_c_plus(united_cars: str) -> None:
    report = run(united_cars)
    # Over plain http HSTS cannot count (-20) and nothing redirects to https (-20): 60, so the
    # CSP (+5), Referrer-Policy (+5) and frame-ancestors (+5) bonuses are withheld. Behind a TLS
    # proxy that redirects http to https, the same headers give 100 + 15 = 115, A+.
    assert (report.score, report.grade) == (60, "C+")
    by_name = {t.name: (t.result, t.modifier) for t in report.tests}
    assert by_name == {
        "content-security-policy": ("csp-implemented-with-no-unsafe", 5),
        "cookies": ("cookies-not-found", 0),
        "cross-origin-resource-sharing": ("cross-origin-resource-sharing-not-implemented", 0),
        "redirection": ("redirection-missing", -20),
        "referrer-policy": ("referrer-policy-private", 5),
        "strict-transport-security": ("hsts-not-implemented-no-https", -20),
        "subresource-integrity": ("sri-not-implemented-but-no-scripts-loaded", 0),
        "x-content-type-options": ("x-content-type-options-nosniff", 0),
        "x-frame-options": ("x-frame-options-implemented-via-csp", 5),
    }
    check = report.check(
        required=["hsts", "x-frame-options", "x-content-type-options", "csp", "referrer-policy"],
        min_grade=None,
    )
    assert check.failed and check.evidence.startswith("hsts: ")  # only HSTS is missing
    assert ";" not in check.evidence


# --- the CLI


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", "grade", "headers", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_cli_exit_codes(headers_server: ServeFn, headers_certs: HeadersCerts) -> None:
    good = _cli(headers_server(Page(FULL), tls=True), "--ca", str(headers_certs.ca), "--json")
    assert good.returncode == 0, good.stderr
    data = json.loads(good.stdout)
    assert data["grade"] == "A+" and data["score"] == 120

    bad = _cli(headers_server(Page()), "--json")  # default --min-grade B
    assert bad.returncode == 1, bad.stderr
    assert json.loads(bad.stdout)["grade"] == "F"

    plain = _cli(headers_server(Page()), "--min-grade", "F")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("grade F")


def test_cli_unreachable_is_one_line_and_exit_3() -> None:
    result = _cli("http://127.0.0.1:1/")
    assert result.returncode == 3
    assert result.stderr.startswith("error: 127.0.0.1: GET http://127.0.0.1:1/")
    assert result.stdout == ""
