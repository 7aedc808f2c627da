"""Security headers graded the way the MDN HTTP Observatory grades them (spec V5).

One page is fetched (following redirects) and nine of the Observatory's tests run on what came
back: content-security-policy, cookies, cross-origin-resource-sharing, redirection,
referrer-policy, strict-transport-security, subresource-integrity, x-content-type-options and
x-frame-options. Each test yields one of the Observatory's results with its score modifier
(``mdn/mdn-http-observatory`` ``src/grader/charts.js`` and ``src/analyzer/tests/*.js``), and the
score is computed as ``src/scanner/index.js`` does: start at 100, always apply the penalties,
add the bonuses only when the score without them is at least 90, floor 0, and the letter is
``GRADE_CHART[min(score - score % 5, 100)]``.

What the Observatory does and this module does not (reported by ``lines()`` / ``to_json()``):
- no HSTS preload list: ``hsts-preloaded`` (+5) and ``redirection-all-redirects-preloaded`` are
  never given;
- no Cross-Origin-Resource-Policy test (the MDN Observatory's tenth test, up to +10);
- no ``/robots.txt`` fetch to collect more cookies;
- "same second-level domain" in the SRI test is the last two labels of the host name, not the
  public suffix list.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from html.parser import HTMLParser
from ipaddress import ip_address
from pathlib import Path
from typing import Final
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from rollout.errors import BadInput, HostError
from rollout.model import CheckResult, CheckStatus

CHECK_ID: Final = "security-headers"

# MDN's charts.js: "Only record the full score if the uncurved score already receives an A".
MINIMUM_SCORE_FOR_EXTRA_CREDIT: Final = 90
# MDN's strict-transport-security.js: "15768000 is six months, but a lot of sites use 15552000,
# so a white lie is in order". The spec (section 3) suggests the same pass mark.
SIX_MONTHS: Final = 15_552_000

# MDN's GRADE_CHART, from the top band down.
_GRADE_BANDS: Final[tuple[tuple[int, str], ...]] = (
    (100, "A+"),
    (90, "A"),
    (85, "A-"),
    (80, "B+"),
    (70, "B"),
    (65, "B-"),
    (60, "C+"),
    (50, "C"),
    (45, "C-"),
    (40, "D+"),
    (30, "D"),
    (25, "D-"),
    (0, "F"),
)
GRADES: Final[tuple[str, ...]] = tuple(letter for _, letter in _GRADE_BANDS)  # best first

# Header names as rollout.yml's security_headers.required spells them -> the test that rules.
REQUIRED_NAMES: Final[Mapping[str, str]] = {
    "hsts": "strict-transport-security",
    "x-frame-options": "x-frame-options",
    "x-content-type-options": "x-content-type-options",
    "csp": "content-security-policy",
    "referrer-policy": "referrer-policy",
}

# The Origin sent with the CORS preflight; any origin will do, reflection is what is tested.
CORS_ORIGIN: Final = "https://rollout-observatory.invalid"
_MAX_HTML = 1_000_000  # bytes of the page read for the SRI test and <meta http-equiv>
_HTML_TYPES: Final = frozenset({"text/html", "application/xhtml+xml"})


@dataclass(frozen=True)
class Outcome:
    """One of the Observatory's results: its name, modifier, and whether the test passes."""

    result: str
    modifier: int
    passed: bool
    description: str
    remedy: str = ""


def _o(result: str, modifier: int, passed: bool, description: str, remedy: str = "") -> Outcome:
    return Outcome(result, modifier, passed, description, remedy)


# The score table (MDN charts.js), keyed by the Observatory's result names.
SCORE_TABLE: Final[Mapping[str, Outcome]] = {
    o.result: o
    for o in (
        # CSP
        _o("csp-implemented-with-no-unsafe-default-src-none", 10, True,
           "CSP implemented with default-src 'none' and no 'unsafe'"),
        _o("csp-implemented-with-no-unsafe", 5, True,
           "CSP implemented without 'unsafe-inline' or 'unsafe-eval'",
           "set default-src to 'none' for the full bonus"),
        _o("csp-implemented-with-unsafe-inline-in-style-src-only", 0, True,
           "CSP implemented with unsafe sources inside style-src only",
           "remove 'unsafe-inline', data: and broad sources from style-src"),
        _o("csp-implemented-with-insecure-scheme-in-passive-content-only", -10, True,
           "CSP lets images or media load over http",
           "load images and media over https and drop http: sources from img-src/media-src"),
        _o("csp-implemented-with-unsafe-eval", -10, False,
           "CSP allows 'unsafe-eval'",
           "remove eval() from the code, then 'unsafe-eval' from the CSP"),
        _o("csp-implemented-with-unsafe-inline", -20, False,
           "CSP implemented unsafely: 'unsafe-inline', data: or broad sources in script-src/object-src",
           "remove 'unsafe-inline' and data: from script-src and broad sources from script-src/object-src"),
        _o("csp-implemented-with-insecure-scheme", -20, False,
           "CSP on an https site allows resources over http",
           "remove http: sources from the CSP"),
        _o("csp-header-invalid", -25, False,
           "Content-Security-Policy cannot be parsed",
           "fix the CSP syntax (e.g. with https://csp-evaluator.withgoogle.com/)"),
        _o("csp-not-implemented", -25, False,
           "Content-Security-Policy not implemented",
           "send a Content-Security-Policy, e.g. \"default-src 'self'; frame-ancestors 'none'\""),
        # Cookies
        _o("cookies-secure-with-httponly-sessions-and-samesite", 5, True,
           "all cookies Secure, session cookies HttpOnly, SameSite set"),
        _o("cookies-secure-with-httponly-sessions", 0, True,
           "all cookies Secure and session cookies HttpOnly, but no SameSite",
           "add SameSite=Lax or Strict"),
        _o("cookies-not-found", 0, True, "no cookies set"),
        _o("cookies-without-secure-flag-but-protected-by-hsts", -5, False,
           "cookies without Secure, but HSTS prevents sending them over http",
           "add Secure to every cookie"),
        _o("cookies-session-without-secure-flag-but-protected-by-hsts", -10, False,
           "session cookie without Secure, but HSTS prevents sending it over http",
           "add Secure to the session cookie"),
        _o("cookies-without-secure-flag", -20, False,
           "cookies set without Secure or over http",
           "add Secure to every cookie and set up HSTS"),
        _o("cookies-samesite-flag-invalid", -20, False,
           "SameSite set to something other than Strict or Lax (or None without Secure)",
           "use SameSite=Strict or Lax"),
        _o("cookies-anticsrf-without-samesite-flag", -20, False,
           "anti-CSRF token set without SameSite",
           "use SameSite=Strict or Lax on the CSRF cookie"),
        _o("cookies-session-without-httponly-flag", -30, False,
           "session cookie set without HttpOnly",
           "add HttpOnly to the session cookie"),
        _o("cookies-session-without-secure-flag", -40, False,
           "session cookie set without Secure or over http",
           "add Secure to the session cookie and set up HSTS"),
        # CORS
        _o("cross-origin-resource-sharing-not-implemented", 0, True,
           "content is not visible via CORS"),
        _o("cross-origin-resource-sharing-implemented-with-public-access", 0, True,
           "public content visible via Access-Control-Allow-Origin: *"),
        _o("cross-origin-resource-sharing-implemented-with-restricted-access", 0, True,
           "content visible via CORS, restricted to specific origins"),
        _o("cross-origin-resource-sharing-implemented-with-universal-access", -50, False,
           "any Origin is reflected with credentials allowed: the site may be open to CSRF",
           "allow only known origins, never reflect Origin with Access-Control-Allow-Credentials"),
        # Redirection
        _o("redirection-to-https", 0, True,
           "initial redirection is to https on the same host, final destination is https"),
        _o("redirection-not-needed-no-http", 0, True,
           "not reachable over http, so no redirection needed"),
        _o("redirection-not-tested", 0, True,
           "not tested: the URL has an explicit port, so its http:// counterpart is unknown",
           "grade the http:// URL to test its redirection"),
        _o("redirection-off-host-from-http", -5, False,
           "initial redirection from http to https is to another host, preventing HSTS",
           "redirect to https on the same host first, then to the final host"),
        _o("redirection-not-to-https-on-initial-redirection", -10, False,
           "redirects to https eventually, but the first redirection is to another http URL",
           "redirect to https on the same host first"),
        _o("redirection-not-to-https", -20, False,
           "redirects, but the final destination is not https",
           "redirect http to https on the same host"),
        _o("redirection-missing", -20, False,
           "does not redirect to an https site",
           "redirect http to https on the same host"),
        _o("redirection-invalid-cert", -20, False,
           "invalid certificate chain met during redirection",
           "install a certificate that verifies"),
        # Referrer-Policy
        _o("referrer-policy-private", 5, True,
           "Referrer-Policy is no-referrer, same-origin, strict-origin or strict-origin-when-cross-origin"),
        _o("referrer-policy-not-implemented", 0, True,
           "Referrer-Policy not implemented",
           "send Referrer-Policy: strict-origin-when-cross-origin at least"),
        _o("referrer-policy-unsafe", -5, False,
           "Referrer-Policy set unsafely (origin, origin-when-cross-origin, unsafe-url, no-referrer-when-downgrade)",
           "send Referrer-Policy: strict-origin-when-cross-origin at least"),
        _o("referrer-policy-header-invalid", -5, False,
           "Referrer-Policy cannot be recognized",
           "send Referrer-Policy: strict-origin-when-cross-origin at least"),
        # HSTS
        _o("hsts-implemented-max-age-at-least-six-months", 0, True,
           "Strict-Transport-Security max-age is at least six months"),
        _o("hsts-implemented-max-age-less-than-six-months", -10, False,
           "Strict-Transport-Security max-age is less than six months",
           f"raise max-age to at least {SIX_MONTHS} (63072000 is the usual two years)"),
        _o("hsts-not-implemented", -20, False,
           "Strict-Transport-Security not implemented",
           "send Strict-Transport-Security: max-age=63072000; includeSubDomains over https"),
        _o("hsts-header-invalid", -20, False,
           "Strict-Transport-Security cannot be recognized",
           "send it once, as max-age=63072000; includeSubDomains (a comma means it was set twice)"),
        _o("hsts-not-implemented-no-https", -20, False,
           "Strict-Transport-Security cannot count: the page was not served over https",
           "serve the site over https and send HSTS there"),
        _o("hsts-invalid-cert", -20, False,
           "Strict-Transport-Security cannot count: the certificate chain does not verify",
           "install a certificate that verifies (or pass --ca for a private CA)"),
        # SRI
        _o("sri-implemented-and-all-scripts-loaded-securely", 5, True,
           "SRI implemented and all scripts loaded from a similar origin"),
        _o("sri-implemented-and-external-scripts-loaded-securely", 5, True,
           "SRI implemented and all scripts loaded securely"),
        _o("sri-not-implemented-response-not-html", 0, True,
           "SRI is only needed for HTML"),
        _o("sri-not-implemented-but-no-scripts-loaded", 0, True,
           "SRI not needed: the page has no script tags"),
        _o("sri-not-implemented-but-all-scripts-loaded-from-secure-origin", 0, True,
           "SRI not implemented, but all scripts come from a similar origin",
           "add SRI for the bonus"),
        _o("sri-not-implemented-but-external-scripts-loaded-securely", -5, False,
           "SRI not implemented, but external scripts are loaded over https",
           "add integrity= to external scripts"),
        _o("sri-implemented-but-external-scripts-not-loaded-securely", -20, False,
           "SRI implemented, but external scripts are loaded over http or protocol-relative",
           "load external scripts over https"),
        _o("sri-not-implemented-and-external-scripts-not-loaded-securely", -50, False,
           "SRI not implemented, and external scripts are loaded over http or protocol-relative",
           "load external scripts over https with integrity="),
        _o("html-not-parseable", -20, False,
           "claims to be HTML, but cannot be parsed", "return well-formed HTML"),
        # X-Content-Type-Options
        _o("x-content-type-options-nosniff", 0, True, "X-Content-Type-Options is nosniff"),
        _o("x-content-type-options-not-implemented", -5, False,
           "X-Content-Type-Options not implemented", "send X-Content-Type-Options: nosniff"),
        _o("x-content-type-options-header-invalid", -5, False,
           "X-Content-Type-Options cannot be recognized (only nosniff is valid)",
           "send X-Content-Type-Options: nosniff"),
        # X-Frame-Options
        _o("x-frame-options-implemented-via-csp", 5, True,
           "framing controlled by the CSP frame-ancestors directive"),
        _o("x-frame-options-sameorigin-or-deny", 0, True,
           "X-Frame-Options is SAMEORIGIN or DENY",
           "add CSP frame-ancestors for the bonus"),
        # Scored 0 as the Observatory does, but not a pass here: browsers ignore ALLOW-FROM, so
        # the page is frameable by anyone (spec V5: XFO must be DENY/SAMEORIGIN or frame-ancestors).
        _o("x-frame-options-allow-from-origin", 0, False,
           "X-Frame-Options uses the obsolete ALLOW-FROM, which browsers ignore",
           "send X-Frame-Options: DENY (or SAMEORIGIN) or CSP frame-ancestors"),
        _o("x-frame-options-not-implemented", -20, False,
           "X-Frame-Options not implemented",
           "send X-Frame-Options: DENY or CSP frame-ancestors 'none'"),
        _o("x-frame-options-header-invalid", -20, False,
           "X-Frame-Options cannot be recognized (DENY or SAMEORIGIN)",
           "send X-Frame-Options: DENY or CSP frame-ancestors 'none'"),
    )
}  # fmt: skip

TEST_NAMES: Final[tuple[str, ...]] = (
    "content-security-policy",
    "cookies",
    "cross-origin-resource-sharing",
    "redirection",
    "referrer-policy",
    "strict-transport-security",
    "subresource-integrity",
    "x-content-type-options",
    "x-frame-options",
)

NOT_TESTED: Final[tuple[str, ...]] = (
    "HSTS preload list (hsts-preloaded +5)",
    "cross-origin-resource-policy",
    "cookies set by /robots.txt",
)


# --------------------------------------------------------------------------------------------
# Report


@dataclass(frozen=True)
class TestResult:
    """One Observatory test: its result name, pass/fail, score modifier and a short finding."""

    __test__ = False  # not a pytest test class, despite the name

    name: str
    result: str
    passed: bool
    modifier: int
    finding: str
    remedy: str = ""
    data: str | None = None  # the header value the test looked at, if any

    def to_json(self) -> dict[str, object]:
        return {
            "result": self.result,
            "pass": self.passed,
            "score_modifier": self.modifier,
            "finding": self.finding,
            "remedy": self.remedy,
            "data": self.data,
        }


@dataclass(frozen=True)
class Hsts:
    """The parsed Strict-Transport-Security header, and whether it could count at all."""

    header: str | None = None
    max_age: int | None = None
    include_subdomains: bool = False
    preload: bool = False
    https: bool = False  # the final response came over https
    verified: bool = False  # ... and its certificate chain verified


@dataclass(frozen=True)
class Cookie:
    name: str
    secure: bool
    httponly: bool
    samesite: str | None
    raw_samesite_invalid: bool  # SameSite present with no value or an unknown one


@dataclass(frozen=True)
class HeadersReport:
    """The Observatory-style grade of one URL (or, with ``error``, why there is none)."""

    url: str
    final_url: str
    status: int | None
    tests: tuple[TestResult, ...] = ()
    score: int = 0
    uncurved_score: int = 0  # 100 plus the penalties only
    grade: str = "F"
    hsts: Hsts = field(default_factory=Hsts)
    headers: tuple[tuple[str, str], ...] = ()  # the final response's headers, as received
    cookies: tuple[Cookie, ...] = ()
    redirects: tuple[str, ...] = ()  # the URLs of the http:// redirection test, first to last
    csp: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    error: str | None = None  # set when the URL could not be fetched: nothing was graded

    @classmethod
    def unreachable(cls, url: str, reason: str) -> HeadersReport:
        """A report for a URL that gave no response: its check FAILs with ``reason``."""
        return cls(url=url, final_url=url, status=None, error=reason)

    def test(self, name: str) -> TestResult:
        for t in self.tests:
            if t.name == name:
                return t
        raise KeyError(name)

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    def lines(self) -> list[str]:
        if self.error is not None:
            return [f"{self.url}: not graded: {self.error}"]
        withheld = (
            f" (bonuses withheld: {self.uncurved_score} before them is below 90)"
            if self.bonuses_withheld
            else ""
        )
        status = f"HTTP {self.status}"
        if self.status is not None and not 200 <= self.status < 300:
            status += ", not 2xx: the Observatory would refuse to grade it"
        out = [
            f"grade {self.grade}  score {self.score}{withheld}",
            f"{self.url} -> {self.final_url} ({status})",
        ]
        for t in self.tests:
            mark = "pass" if t.passed else "FAIL"
            out.append(f"  {mark:4} {t.modifier:+4d}  {t.name}: {t.finding}")
        out.append("  not tested: " + "; ".join(NOT_TESTED))
        return out

    @property
    def bonuses_withheld(self) -> bool:
        return self.uncurved_score < MINIMUM_SCORE_FOR_EXTRA_CREDIT and any(
            t.modifier > 0 for t in self.tests
        )

    def to_json(self) -> dict[str, object]:
        return {
            "url": self.url,
            "final_url": self.final_url,
            "status": self.status,
            "error": self.error,
            "grade": None if self.error else self.grade,
            "score": None if self.error else self.score,
            "uncurved_score": None if self.error else self.uncurved_score,
            "tests": {t.name: t.to_json() for t in self.tests},
            "hsts": {
                "header": self.hsts.header,
                "max_age": self.hsts.max_age,
                "include_subdomains": self.hsts.include_subdomains,
                "preload": self.hsts.preload,
                "https": self.hsts.https,
                "verified": self.hsts.verified,
            },
            "csp": {k: list(v) for k, v in self.csp.items()},
            "cookies": [
                {"name": c.name, "secure": c.secure, "httponly": c.httponly, "samesite": c.samesite}
                for c in self.cookies
            ],
            "redirects": list(self.redirects),
            "headers": [[k, v] for k, v in self.headers],
            "not_tested": list(NOT_TESTED),
        }

    def check(self, *, required: list[str], min_grade: str | None) -> CheckResult:
        """FAIL when a required header is missing or invalid, or the grade is below ``min_grade``.

        Decision (diverging from spec V5, which says WARN below the grade): below ``min_grade``
        is a FAIL. ``min_grade`` is a gate (``rollout grade headers --min-grade`` exits 1 on
        ``.failed``), and a gate that only warns is not a gate; who wants a soft grade leaves
        ``min_grade`` unset and reads the grade from the report.

        A required header counts as present when its Observatory test passes; two stricter
        rules: Referrer-Policy must actually be sent (the Observatory passes its absence), and
        X-Frame-Options must be DENY/SAMEORIGIN or CSP frame-ancestors without a broad source
        (ALLOW-FROM and ``frame-ancestors *`` do not protect).
        """
        unknown = [r for r in required if r.lower() not in REQUIRED_NAMES]
        if unknown:
            raise BadInput(
                f"unknown security header name(s) {', '.join(map(repr, unknown))}",
                hint=f"use one of: {', '.join(REQUIRED_NAMES)}",
            )
        if min_grade is not None and min_grade not in GRADES:
            raise BadInput(f"unknown grade {min_grade!r}", hint=f"use one of: {', '.join(GRADES)}")
        threshold = ", ".join(
            [f"required: {', '.join(required)}"] * bool(required)
            + [f"grade >= {min_grade}"] * (min_grade is not None)
        )
        if self.error is not None:
            return CheckResult(
                CHECK_ID,
                CheckStatus.FAIL,
                "no response",
                threshold,
                f"GET {self.url}: {self.error}",
                "is the site up and reachable from here? check the URL, DNS and the --ca file",
            )
        problems: list[str] = []
        remedies: list[str] = []
        reported: set[str] = set()  # tests whose remedy is already given
        for name in required:
            test = self.test(REQUIRED_NAMES[name.lower()])
            bad = not test.passed or (
                name.lower() == "referrer-policy" and test.result != "referrer-policy-private"
            )
            if (
                name.lower() == "x-frame-options"
                and test.result == "x-frame-options-implemented-via-csp"
            ):
                bad = bad or not _anti_clickjacking(self.csp)
            if bad:
                problems.append(f"{name}: {test.finding}")
                remedies.append(f"{name}: {test.remedy or 'send a valid header'}")
                reported.add(test.name)
        if min_grade is not None and grade_rank(self.grade) > grade_rank(min_grade):
            problems.append(f"grade {self.grade} (score {self.score}) is below {min_grade}")
            worst = sorted((t for t in self.tests if t.modifier < 0), key=lambda t: t.modifier)
            remedies.extend(
                f"{t.name}: {t.remedy}" for t in worst[:3] if t.remedy and t.name not in reported
            )
        return CheckResult(
            CHECK_ID,
            CheckStatus.FAIL if problems else CheckStatus.PASS,
            f"{self.grade} ({self.score})",
            threshold,
            "; ".join(problems) if problems else f"GET {self.final_url}: HTTP {self.status}",
            "; ".join(dict.fromkeys(remedies)),
        )


def grade_rank(letter: str) -> int:
    """0 for A+, larger is worse."""
    return GRADES.index(letter)


def letter_for(score: int) -> str:
    score = max(score, 0)
    band = min(score - score % 5, 100)
    for floor, letter in _GRADE_BANDS:
        if band >= floor:
            return letter
    return "F"


# --------------------------------------------------------------------------------------------
# Fetching


@dataclass(frozen=True)
class _Page:
    """One followed request: the route of URLs, every response's headers, the final body."""

    route: tuple[str, ...]
    status: int
    final_url: str
    headers: tuple[tuple[str, str], ...]
    set_cookies: tuple[tuple[str, str], ...]  # (scheme, Set-Cookie) of every response, in order
    verified: bool
    html: str | None


async def grade(
    url: str,
    *,
    ca_file: Path | None = None,
    timeout: float = 10.0,
    client: httpx.AsyncClient | None = None,
) -> HeadersReport:
    """Fetch ``url`` and grade its security headers the HTTP Observatory way.

    Raises ``HostError`` (exit 3) when the URL gives no response at all; ``BadInput`` for a URL
    that is not http(s). A certificate that does not verify is not an error: the page is
    fetched again without verification and graded, with HSTS counted as ``hsts-invalid-cert``,
    as the Observatory does. A ``client`` given by the caller is used as is and is trusted to
    verify certificates (``ca_file`` is then ignored: configure the client's ``verify``).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"{url!r} is not an http(s) URL", hint="e.g. https://example.com/")
    host = parts.hostname
    owned: list[httpx.AsyncClient] = []

    def make(verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        c = httpx.AsyncClient(verify=verify, timeout=timeout, follow_redirects=True)
        owned.append(c)
        return c

    try:
        main = client if client is not None else make(_ssl_context(ca_file))
        fetcher = main  # the client that got the page: the CORS preflight goes the same way
        try:
            page = await _fetch(main, url, timeout, verified=True)
        except httpx.ConnectError as exc:
            if not _is_cert_error(exc):
                raise
            fetcher = make(False)
            page = await _fetch(fetcher, url, timeout, verified=False)

        # The redirection test, on the http:// URL as the Observatory does.
        redirection: Outcome
        route: tuple[str, ...]
        if parts.scheme == "http":
            route = page.route
            redirection = _redirection(route, verified=page.verified)
        elif parts.port not in (None, 443):
            route, redirection = (), SCORE_TABLE["redirection-not-tested"]
        else:
            http_url = urlunsplit(("http", _netloc(host, None), parts.path or "/", parts.query, ""))
            try:
                http_page = await _fetch(main, http_url, timeout, verified=True)
                route = http_page.route
                redirection = _redirection(route, verified=True)
            except httpx.ConnectError as exc:
                route = (http_url,)
                redirection = SCORE_TABLE[
                    "redirection-invalid-cert"
                    if _is_cert_error(exc)
                    else "redirection-not-needed-no-http"
                ]
            except httpx.HTTPError:
                route, redirection = (http_url,), SCORE_TABLE["redirection-not-needed-no-http"]

        cors_headers: httpx.Headers | None = None
        try:
            cors = await fetcher.request(
                "OPTIONS",
                page.final_url,
                headers={"Origin": CORS_ORIGIN, "Access-Control-Request-Method": "GET"},
                timeout=timeout,
                follow_redirects=False,
            )
            cors_headers = cors.headers
        except httpx.HTTPError:
            cors_headers = None  # no answer to the preflight: CORS not implemented
    except httpx.HTTPError as exc:
        raise HostError(
            host,
            f"GET {url}: {_describe(exc)}",
            hint="is the site up and reachable from here? check the URL and the port",
        ) from exc
    finally:
        for c in owned:
            await c.aclose()

    return _build(url, page, route, redirection, cors_headers)


def _netloc(host: str, port: int | None) -> str:
    try:
        name = f"[{host}]" if ip_address(host).version == 6 else host
    except ValueError:
        name = host
    return name if port is None else f"{name}:{port}"


def _ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    try:
        import certifi  # httpx's own default trust store

        ctx.load_verify_locations(cafile=certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        pass
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise BadInput(
                f"cannot load the CA file {ca_file}: {exc}",
                hint="give a PEM file of CA certificates",
            ) from exc
    return ctx


def _is_cert_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        if "CERTIFICATE_VERIFY_FAILED" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _fetch(client: httpx.AsyncClient, url: str, timeout: float, *, verified: bool) -> _Page:
    async with client.stream(
        "GET",
        url,
        headers={"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"},
        timeout=timeout,
        follow_redirects=True,
    ) as response:
        mime = response.headers.get("content-type", "").split(";")[0].strip().lower()
        html: str | None = None
        if mime in _HTML_TYPES or not mime:
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body.extend(chunk)
                if len(body) >= _MAX_HTML:
                    break
            html = bytes(body[:_MAX_HTML]).decode(response.encoding or "utf-8", "replace")
        responses = [*response.history, response]
        return _Page(
            route=tuple(str(r.url) for r in responses),
            status=response.status_code,
            final_url=str(response.url),
            headers=tuple(
                (k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw
            ),
            set_cookies=tuple(
                (r.url.scheme, c) for r in responses for c in r.headers.get_list("set-cookie")
            ),
            verified=verified,
            html=html,
        )


# --------------------------------------------------------------------------------------------
# The tests


def _build(
    url: str,
    page: _Page,
    route: tuple[str, ...],
    redirection: Outcome,
    cors_headers: httpx.Headers | None,
) -> HeadersReport:
    headers = httpx.Headers(list(page.headers))
    https = urlsplit(page.final_url).scheme == "https"
    meta = _parse_html(page.html) if page.html is not None else None
    mime = headers.get("content-type", "").split(";")[0].strip().lower()
    is_html = bool(page.html is not None and (mime in _HTML_TYPES))

    csp_out, csp, header_csp = _csp(
        headers.get_list("content-security-policy"),
        meta.http_equiv.get("content-security-policy", []) if meta and is_html else [],
        https=https,
        report_only=headers.get("content-security-policy-report-only"),
    )
    hsts_out, hsts = _hsts(headers.get("strict-transport-security"), https, page.verified)
    # A Secure cookie set over http is dropped by browsers (and by the Observatory's cookie jar).
    parsed = ((scheme, _parse_cookie(raw)) for scheme, raw in page.set_cookies)
    cookies = tuple(c for scheme, c in parsed if scheme == "https" or not c.secure)
    results: dict[str, tuple[Outcome, str | None]] = {
        "content-security-policy": (csp_out, headers.get("content-security-policy")),
        "cookies": (_cookies(cookies, hsts_passed=hsts_out.passed), None),
        "cross-origin-resource-sharing": _cors(cors_headers),
        "redirection": (redirection, " -> ".join(route) or None),
        "referrer-policy": _referrer(
            headers.get_list("referrer-policy"),
            meta.http_equiv.get("referrer", []) if meta and is_html else [],
        ),
        "strict-transport-security": (hsts_out, hsts.header),
        "subresource-integrity": (_sri(mime, meta, page.final_url), None),
        "x-content-type-options": _xcto(headers.get("x-content-type-options")),
        "x-frame-options": _xfo(headers.get("x-frame-options"), header_csp),
    }
    tests = tuple(
        TestResult(name, o.result, o.passed, o.modifier, o.description, o.remedy, data)
        for name in TEST_NAMES
        for o, data in [results[name]]
    )
    # MDN scanner/index.js: penalties always count, bonuses only from 90 up.
    uncurved = 100 + sum(t.modifier for t in tests if t.modifier < 0)
    with_credit = 100 + sum(t.modifier for t in tests)
    score = max(with_credit if uncurved >= MINIMUM_SCORE_FOR_EXTRA_CREDIT else uncurved, 0)
    return HeadersReport(
        url=url,
        final_url=page.final_url,
        status=page.status,
        tests=tests,
        score=score,
        uncurved_score=max(uncurved, 0),
        grade=letter_for(score),
        hsts=hsts,
        headers=page.headers,
        cookies=cookies,
        redirects=route,
        csp={k: tuple(sorted(v)) for k, v in csp.items()},
    )


# --- CSP (csp.js, cspParser.js)

_DANGEROUSLY_BROAD = frozenset(
    {"ftp:", "http:", "https:", "*", "http://*", "http://*.*", "https://*", "https://*.*"}
)
_UNSAFE_INLINE = frozenset({"'unsafe-inline'", "data:"})
_BROAD_OR_INLINE = _DANGEROUSLY_BROAD | _UNSAFE_INLINE
_NONCES_HASHES = ("'sha256-", "'sha384-", "'sha512-", "'nonce-")
_NOT_IN_META = ("frame-ancestors", "report-uri", "sandbox")
_ALLOWED_DUPLICATES = frozenset({"report-uri", "report-to"})


class _CspInvalid(ValueError):
    pass


def _parse_csp(policies: Sequence[str]) -> dict[str, set[str]]:
    """Directive -> sources. Several policies: a directive takes the first policy's sources.

    Simplification of MDN's parser, which intersects sources across policies; a duplicated
    directive inside one policy is invalid (except report-uri/report-to), as there.
    """
    csp: dict[str, set[str]] = {}
    for raw in policies:
        policy = re.sub(r"[\r\n]", "", raw).strip()
        if len(policy) < len("img-src") - 1:
            raise _CspInvalid(f"invalid policy {raw!r}")
        seen: set[str] = set()
        for entry in policy.split(";"):
            words = entry.strip().split()
            if not words:
                continue
            directive = words[0].lower()
            if directive in seen and directive not in _ALLOWED_DUPLICATES:
                raise _CspInvalid(f"duplicate directive {directive}")
            seen.add(directive)
            sources = {w.lower() for w in words[1:]}
            if not sources and directive.endswith("-src"):
                sources = {"'none'"}
            csp.setdefault(directive, sources)
    return csp


def _split_policies(values: Iterable[str]) -> list[str]:
    return [p.strip() for v in values for p in v.split(",")]


def _csp(
    header_values: list[str], meta_values: list[str], *, https: bool, report_only: str | None
) -> tuple[Outcome, dict[str, set[str]], dict[str, set[str]]]:
    """The CSP outcome, the combined policy, and the header-only policy (for frame-ancestors)."""
    http_policies = _split_policies(header_values)
    meta_policies = _split_policies(meta_values)
    try:
        header_csp = _parse_csp(http_policies)
        meta_csp = _parse_csp(meta_policies)
        for directive in _NOT_IN_META:
            meta_csp.pop(directive, None)
    except _CspInvalid:
        return SCORE_TABLE["csp-header-invalid"], {}, {}
    csp = {**meta_csp, **header_csp}
    if not csp:
        outcome = SCORE_TABLE["csp-not-implemented"]
        if report_only:
            outcome = Outcome(
                outcome.result, outcome.modifier, False,
                "only Content-Security-Policy-Report-Only is sent: nothing is enforced",
                outcome.remedy,
            )  # fmt: skip
        return outcome, {}, header_csp

    def sources(*names: str) -> set[str]:
        for name in names:
            if name in csp:
                return set(csp[name])
        return {"*"}

    object_src = sources("object-src", "default-src")
    script_src = sources("script-src", "default-src")
    style_src = sources("style-src", "default-src")
    result: str | None = None
    for source_list in (script_src, style_src):
        if any(s.startswith(_NONCES_HASHES) for s in source_list):
            source_list.discard("'unsafe-inline'")
    if any(s.startswith(_NONCES_HASHES) for s in script_src) and "'strict-dynamic'" in script_src:
        script_src = {
            s
            for s in script_src
            if not (s.startswith(tuple(_DANGEROUSLY_BROAD)) or s in ("'self'", "'unsafe-inline'"))
        }
    elif "'strict-dynamic'" in script_src:
        result = "csp-header-invalid"

    active = [
        s for d, v in csp.items() if d not in ("img-src", "media-src", "script-src") for s in v
    ]
    active += list(script_src)
    passive = [
        s for d in ("img-src", "media-src") for s in csp.get(d, csp.get("default-src", set()))
    ]

    def first(candidate: str) -> None:
        nonlocal result
        if result is None:
            result = candidate

    if script_src & _BROAD_OR_INLINE or object_src & _DANGEROUSLY_BROAD:
        first("csp-implemented-with-unsafe-inline")
    if https and any(s.startswith(("http:", "ftp:")) for s in active):
        first("csp-implemented-with-insecure-scheme")
    if "'unsafe-eval'" in script_src | style_src:
        first("csp-implemented-with-unsafe-eval")
    if https and any(s.startswith(("http:", "ftp:")) for s in passive):
        first("csp-implemented-with-insecure-scheme-in-passive-content-only")
    if style_src & _BROAD_OR_INLINE:
        first("csp-implemented-with-unsafe-inline-in-style-src-only")
    if csp.get("default-src") == {"'none'"}:
        first("csp-implemented-with-no-unsafe-default-src-none")
    first("csp-implemented-with-no-unsafe")
    assert result is not None
    return SCORE_TABLE[result], csp, header_csp


def _anti_clickjacking(csp: Mapping[str, Iterable[str]]) -> bool:
    ancestors = set(csp.get("frame-ancestors", ("*",)))
    return not ancestors & _DANGEROUSLY_BROAD


# --- HSTS (strict-transport-security.js)


def _hsts(header: str | None, https: bool, verified: bool) -> tuple[Outcome, Hsts]:
    if not https:
        return SCORE_TABLE["hsts-not-implemented-no-https"], Hsts(header=header)
    if not verified:
        return SCORE_TABLE["hsts-invalid-cert"], Hsts(header=header, https=True)
    if header is None:
        return SCORE_TABLE["hsts-not-implemented"], Hsts(https=True, verified=True)
    value = header[:1024]
    max_age: int | None = None
    include_subdomains = preload = False
    for parameter in (p.strip().lower() for p in value.split(";")):
        if parameter.startswith("max-age="):
            digits = re.match(r"\s*\"?(\d+)", parameter[8:128])
            max_age = int(digits.group(1)) if digits else None
        elif parameter == "includesubdomains":
            include_subdomains = True
        elif parameter == "preload":
            preload = True
    info = Hsts(value, max_age, include_subdomains, preload, https=True, verified=True)
    # "," means the header was sent twice (joined by a proxy or by httpx): invalid, as in MDN.
    if "," in value or max_age is None:
        return SCORE_TABLE["hsts-header-invalid"], info
    if max_age < SIX_MONTHS:
        return SCORE_TABLE["hsts-implemented-max-age-less-than-six-months"], info
    return SCORE_TABLE["hsts-implemented-max-age-at-least-six-months"], info


# --- Cookies (cookies.js)

_COOKIE_BADNESS: Final = (  # onlyIfWorse: a later entry replaces an earlier one, never back
    "cookies-without-secure-flag-but-protected-by-hsts",
    "cookies-without-secure-flag",
    "cookies-session-without-secure-flag-but-protected-by-hsts",
    "cookies-samesite-flag-invalid",
    "cookies-anticsrf-without-samesite-flag",
    "cookies-session-without-httponly-flag",
    "cookies-session-without-secure-flag",
)


def _parse_cookie(raw: str) -> Cookie:
    name = raw.split(";", 1)[0].split("=", 1)[0].strip()
    secure = httponly = invalid = False
    samesite: str | None = None
    for attribute in raw.split(";")[1:]:
        key, has_value, value = attribute.strip().partition("=")
        key = key.strip().lower()
        if key == "secure":
            secure = True
        elif key == "httponly":
            httponly = True
        elif key == "samesite":
            samesite = value.strip() or None
            if (
                not has_value
                or not value.strip()
                or value.strip().lower() not in ("lax", "strict", "none")
            ):
                invalid = True
    return Cookie(name, secure, httponly, samesite, invalid)


def _cookies(cookies: Sequence[Cookie], *, hsts_passed: bool) -> Outcome:
    if not cookies:
        return SCORE_TABLE["cookies-not-found"]
    worst = -1

    def worse(result: str) -> None:
        nonlocal worst
        worst = max(worst, _COOKIE_BADNESS.index(result))

    for c in cookies:
        secure = c.secure
        lname = c.name.lower()
        session = "login" in lname or "sess" in lname
        if c.raw_samesite_invalid or (not secure and (c.samesite or "").lower() == "none"):
            worse("cookies-samesite-flag-invalid")
        if not secure:
            worse(
                "cookies-without-secure-flag-but-protected-by-hsts"
                if hsts_passed
                else "cookies-without-secure-flag"
            )
        if "csrf" in lname and not c.samesite:
            worse("cookies-anticsrf-without-samesite-flag")
        if session and not secure:
            worse(
                "cookies-session-without-secure-flag-but-protected-by-hsts"
                if hsts_passed
                else "cookies-session-without-secure-flag"
            )
        if session and not c.httponly:
            worse("cookies-session-without-httponly-flag")
    if worst >= 0:
        return SCORE_TABLE[_COOKIE_BADNESS[worst]]
    if any(not c.samesite for c in cookies):
        return SCORE_TABLE["cookies-secure-with-httponly-sessions"]
    return SCORE_TABLE["cookies-secure-with-httponly-sessions-and-samesite"]


# --- CORS (cors.js), on a preflight sent with our own Origin


def _cors(headers: httpx.Headers | None) -> tuple[Outcome, str | None]:
    acao = headers.get("access-control-allow-origin") if headers is not None else None
    if headers is None or not acao:
        return SCORE_TABLE["cross-origin-resource-sharing-not-implemented"], None
    value = acao[:256].strip().lower()
    if value == "*":
        return SCORE_TABLE["cross-origin-resource-sharing-implemented-with-public-access"], acao
    credentials = headers.get("access-control-allow-credentials", "").strip().lower() == "true"
    if acao.strip() == CORS_ORIGIN and credentials:
        return SCORE_TABLE["cross-origin-resource-sharing-implemented-with-universal-access"], acao
    return SCORE_TABLE["cross-origin-resource-sharing-implemented-with-restricted-access"], acao


# --- Redirection (redirection.js); the preload list is not consulted


def _redirection(route: Sequence[str], *, verified: bool) -> Outcome:
    if not verified:
        return SCORE_TABLE["redirection-invalid-cert"]
    if len(route) <= 1:
        return SCORE_TABLE["redirection-missing"]
    urls = [urlsplit(u) for u in route]
    if urls[-1].scheme != "https":
        return SCORE_TABLE["redirection-not-to-https"]
    if urls[1].scheme == "http":
        return SCORE_TABLE["redirection-not-to-https-on-initial-redirection"]
    if (
        urls[0].scheme == "http"
        and urls[1].scheme == "https"
        and urls[0].hostname != urls[1].hostname
    ):
        return SCORE_TABLE["redirection-off-host-from-http"]
    return SCORE_TABLE["redirection-to-https"]


# --- Referrer-Policy (referrer-policy.js)

_REFERRER_GOOD = ("no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin")
_REFERRER_BAD = ("origin", "origin-when-cross-origin", "unsafe-url", "no-referrer-when-downgrade")


def _referrer(header_values: list[str], meta_values: list[str]) -> tuple[Outcome, str | None]:
    values = [*header_values, *meta_values]
    if not values:
        return SCORE_TABLE["referrer-policy-not-implemented"], None
    data = ", ".join(values)
    # The last valid token wins, as in browsers (a meta tag after the header).
    valid = [
        t.strip().lower()
        for t in data.split(",")
        if t.strip().lower() in _REFERRER_GOOD + _REFERRER_BAD
    ]
    policy = valid[-1] if valid else ""
    if policy in _REFERRER_GOOD:
        return SCORE_TABLE["referrer-policy-private"], data
    if policy in _REFERRER_BAD:
        return SCORE_TABLE["referrer-policy-unsafe"], data
    return SCORE_TABLE["referrer-policy-header-invalid"], data


# --- X-Content-Type-Options, X-Frame-Options


def _xcto(header: str | None) -> tuple[Outcome, str | None]:
    if header is None:
        return SCORE_TABLE["x-content-type-options-not-implemented"], None
    if header[:256].strip().lower() == "nosniff":
        return SCORE_TABLE["x-content-type-options-nosniff"], header
    return SCORE_TABLE["x-content-type-options-header-invalid"], header


def _xfo(header: str | None, header_csp: Mapping[str, set[str]]) -> tuple[Outcome, str | None]:
    # frame-ancestors only counts from the header (browsers ignore it in <meta>), as in MDN.
    if "frame-ancestors" in header_csp:
        return SCORE_TABLE["x-frame-options-implemented-via-csp"], header
    if header is None:
        return SCORE_TABLE["x-frame-options-not-implemented"], None
    value = header[:1024].strip().lower()
    if value in ("deny", "sameorigin"):
        return SCORE_TABLE["x-frame-options-sameorigin-or-deny"], header
    if value.startswith("allow-from"):
        return SCORE_TABLE["x-frame-options-allow-from-origin"], header
    return SCORE_TABLE["x-frame-options-header-invalid"], header


# --- HTML: <script> tags for SRI, <meta http-equiv> for CSP and Referrer-Policy


@dataclass
class _Html:
    scripts: list[dict[str, str | None]] = field(default_factory=list)
    http_equiv: dict[str, list[str]] = field(default_factory=dict)
    error: bool = False


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = _Html()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k.lower(): v for k, v in attrs}
        if tag == "script":
            self.found.scripts.append(attributes)
        elif tag == "meta" and attributes.get("http-equiv") and attributes.get("content"):
            name = (attributes["http-equiv"] or "").strip().lower()
            self.found.http_equiv.setdefault(name, []).append(attributes["content"] or "")
        elif tag == "meta" and (attributes.get("name") or "").lower() == "referrer":
            self.found.http_equiv.setdefault("referrer", []).append(attributes.get("content") or "")


def _parse_html(text: str) -> _Html:
    collector = _Collector()
    try:
        collector.feed(text)
        collector.close()
    except Exception:  # html.parser is lenient; anything it still rejects is "not parseable"
        collector.found.error = True
    return collector.found


def _site(host: str | None) -> str:
    if not host:
        return ""
    try:
        ip_address(host)
        return host
    except ValueError:
        return ".".join(host.lower().rstrip(".").split(".")[-2:])


_SRI_BADNESS: Final = (  # onlyIfWorse order, as MDN's goodness list
    "sri-implemented-and-all-scripts-loaded-securely",
    "sri-implemented-and-external-scripts-loaded-securely",
    "sri-implemented-but-external-scripts-not-loaded-securely",
    "sri-not-implemented-but-external-scripts-loaded-securely",
    "sri-not-implemented-and-external-scripts-not-loaded-securely",
    "sri-not-implemented-response-not-html",
)


def _sri(mime: str, html: _Html | None, page_url: str) -> Outcome:
    if mime and mime not in _HTML_TYPES:
        return SCORE_TABLE["sri-not-implemented-response-not-html"]
    if html is None:
        return SCORE_TABLE["sri-not-implemented-but-no-scripts-loaded"]
    if html.error:
        return SCORE_TABLE["html-not-parseable"]
    page = urlsplit(page_url)
    result: str | None = None
    foreign = False

    def worse(candidate: str) -> None:
        nonlocal result
        if result is None or _SRI_BADNESS.index(candidate) > _SRI_BADNESS.index(result):
            result = candidate

    for script in html.scripts:
        src = (script.get("src") or "").strip()
        if not src:
            continue
        integrity = script.get("integrity")
        relative_protocol = re.match(r"^//[^/]", src) is not None
        full = re.match(r"^https?://", src, re.IGNORECASE) is not None
        relative_origin = not relative_protocol and not full
        same_site = (
            relative_protocol
            or relative_origin
            or (_site(urlsplit(src).hostname) == _site(page.hostname))
        )
        secure_origin = relative_origin or (same_site and not relative_protocol)
        scheme = urlsplit(urljoin(page_url, src)).scheme if full else None
        secure_scheme = scheme == "https" or (relative_origin and page.scheme == "https")
        if not secure_origin:
            foreign = True
            if integrity and not secure_scheme:
                worse("sri-implemented-but-external-scripts-not-loaded-securely")
            elif not integrity and secure_scheme:
                worse("sri-not-implemented-but-external-scripts-loaded-securely")
            elif not integrity:
                worse("sri-not-implemented-and-external-scripts-not-loaded-securely")
        elif integrity and secure_scheme and result is None:
            result = "sri-implemented-and-all-scripts-loaded-securely"
    if not html.scripts:
        return SCORE_TABLE["sri-not-implemented-but-no-scripts-loaded"]
    if result is None:
        result = (
            "sri-implemented-and-external-scripts-loaded-securely"
            if foreign
            else "sri-not-implemented-but-all-scripts-loaded-from-secure-origin"
        )
    return SCORE_TABLE[result]
