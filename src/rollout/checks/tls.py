"""A local SSL Labs-style TLS grade (verification.md V6) and certificate expiry (V7).

Everything is measured with the stdlib ``ssl`` module (one blocking handshake per probe, run in
threads with ``asyncio.to_thread``, several at once) and ``cryptography`` (certificate parsing).

Rules applied, and the decisions taken where the spec only proposes:

* Category scores come from the SSL Labs rating guide tables (2009e text, wiki 2009q) with the
  testssl.sh mappings (@9fdf802): TLS 1.2 and TLS 1.3 score 100, EC key sizes map to bands.
  Total = 0.3 * protocol + 0.3 * key exchange + 0.4 * cipher; a zero category zeroes the total.
* Caps follow testssl.sh: no TLS 1.2/1.3 caps at **C** (stricter than 2009e's B).
  "No forward secrecy" and "no AEAD" cap at B only when *no* accepted suite has it (testssl's
  rule); TLS 1.3 suites count as forward-secret AEAD suites.
* T and M rank below F (testssl compares caps as letters, so T wins over M when both apply).
* Missing HSTS *is* a warning (SSL Labs 2009e and spec V6), unlike testssl at @9fdf802. The HSTS
  pass mark is 15552000 s = 180 days (MDN's code, testssl's HSTS_MIN); see verification.md §3.
* The TLS 1.3 suites cannot be chosen from Python (CPython #77751), so only the negotiated one is
  reported; that gap is listed in ``not_tested``. All TLS 1.3 suites are >= 128-bit AEAD + (EC)DHE.
* The ephemeral DH/ECDH group size is not exposed by ``ssl``: key exchange is scored from the
  leaf key alone, and "DH parameter size" is listed in ``not_tested``.
* Certificate chain (V7): Python 3.11 has no public API for the presented or verified chain
  (``SSLSocket.get_verified_chain`` is public only from 3.13), but the private ``_sslobj`` has
  had ``get_unverified_chain``/``get_verified_chain`` since 3.10. We use them guarded with
  ``hasattr``; when they are missing the figures fall back to the leaf alone (and say so).
  OpenSSL builds a single verified chain, so ``chain_days`` is that chain's minimum (the "max over
  verified chains" of blackbox has one term). When the chain does not verify, ``chain_days`` is
  None and the expiry check uses ``earliest_days`` over the presented certificates instead.
* Host name matching is done here on the leaf (SAN, CN only when there is no SAN; one left-most
  wildcard label), so a mismatch is reported even when the chain is not trusted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from rollout.errors import BadInput, HostError
from rollout.model import CheckResult, CheckStatus

T = TypeVar("T")

RULES = "SSL Labs rating guide 2009e/2009q tables with testssl.sh 3.x caps (@9fdf802)"
HSTS_MIN_SECONDS = 15_552_000  # 180 days
HSTS_EXCELLENT_SECONDS = 63_072_000  # Mozilla intermediate profile
MAX_LIFESPAN_DAYS = 366  # Mozilla intermediate profile
PARALLEL_HANDSHAKES = 16

# Best first. T and M are trust verdicts and rank below F (see module docstring).
GRADE_ORDER = ("A+", "A", "A-", "B", "C", "D", "E", "F", "M", "T")

# Our label, then what ``SSLSocket.version()`` says for it.
OPENSSL_VERSION_NAME = {
    "TLSv1.0": "TLSv1",
    "TLSv1.1": "TLSv1.1",
    "TLSv1.2": "TLSv1.2",
    "TLSv1.3": "TLSv1.3",
}
VERSIONS: tuple[tuple[str, ssl.TLSVersion], ...] = (
    ("TLSv1.0", ssl.TLSVersion.TLSv1),
    ("TLSv1.1", ssl.TLSVersion.TLSv1_1),
    ("TLSv1.2", ssl.TLSVersion.TLSv1_2),
    ("TLSv1.3", ssl.TLSVersion.TLSv1_3),
)
PROTOCOL_SCORE = {"TLSv1.0": 90, "TLSv1.1": 95, "TLSv1.2": 100, "TLSv1.3": 100}

NOT_TESTED = (
    "SSLv2 and SSLv3 (this Python/OpenSSL cannot offer them)",
    "TLS 1.3 suite enumeration (only the negotiated TLS 1.3 suite is known)",
    "DH/ECDH ephemeral parameter size",
    "Heartbleed, CCS injection, Ticketbleed, ROBOT, DROWN, CRIME, POODLE, BEAST, SWEET32",
    "secure renegotiation, TLS_FALLBACK_SCSV, OCSP stapling, revocation (CRL/OCSP)",
    "export suites cannot be offered by this OpenSSL (so none are detected)",
)

# X509_V_ERR_* codes OpenSSL gives in SSLCertVerificationError.verify_code.
_V_NOT_YET_VALID = 9
_V_EXPIRED = 10
_V_SELF_SIGNED_LEAF = 18
_V_SELF_SIGNED_IN_CHAIN = 19


@dataclass(frozen=True)
class CipherSuite:
    name: str  # OpenSSL name
    code: str  # IANA code point, e.g. 0xC02F
    protocol: str  # the TLS version it was accepted with
    bits: int
    forward_secrecy: bool
    aead: bool
    kx: str
    anonymous: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "code": self.code,
            "bits": self.bits,
            "forward_secrecy": self.forward_secrecy,
            "aead": self.aead,
            "kx": self.kx,
        }


@dataclass(frozen=True)
class CertInfo:
    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    key_type: str
    key_bits: int
    signature: str
    self_issued: bool

    def days_left(self, now: datetime) -> float:
        return (self.not_after - now).total_seconds() / 86400

    def to_json(self, now: datetime) -> dict[str, object]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "days_left": round(self.days_left(now), 1),
            "key": f"{self.key_type} {self.key_bits}",
            "signature": self.signature,
        }


@dataclass(frozen=True)
class Cap:
    grade: str
    reason: str


@dataclass(frozen=True)
class TlsReport:
    host: str
    port: int
    server_name: str
    measured_at: datetime
    protocols: dict[str, bool]  # TLSv1.0 .. TLSv1.3 -> offered
    suites: dict[str, tuple[CipherSuite, ...]]  # TLS <= 1.2 version -> accepted suites
    tls13_suites: tuple[str, ...]  # negotiated TLS 1.3 suites
    leaf: CertInfo | None
    presented: tuple[CertInfo, ...]  # leaf first, as the server sent them
    verified_chain: tuple[CertInfo, ...]  # leaf .. root, empty when not trusted
    chain_source: str  # how the chain figures were obtained
    trust: str  # trusted | untrusted | self-signed | expired | not yet valid
    trust_detail: str
    name_matches: bool
    hsts: str | None  # the raw header, None when absent or no HTTP answer
    hsts_max_age: int | None
    http_status: int | None
    scores: dict[str, int]  # protocol, key_exchange, cipher
    total: int
    letter: str  # from the total alone
    caps: tuple[Cap, ...]
    warnings: tuple[str, ...]
    grade: str
    not_tested: tuple[str, ...] = NOT_TESTED
    error: str = ""  # set when no TLS handshake succeeded at all
    rules: str = RULES
    expiry: dict[str, float | None] = field(default_factory=dict)

    # -- V7 figures -------------------------------------------------------------------------
    @property
    def leaf_days(self) -> float | None:
        return self.expiry.get("leaf_days")

    @property
    def earliest_days(self) -> float | None:
        return self.expiry.get("earliest_days")

    @property
    def chain_days(self) -> float | None:
        return self.expiry.get("chain_days")

    # -- output -----------------------------------------------------------------------------
    def lines(self) -> list[str]:
        out = [f"TLS grade for {self.host}:{self.port}: {self.grade}"]
        if self.error:
            out.append(f"  error: {self.error}")
            out.append(f"  rules: {self.rules}")
            return out
        out.append(
            f"  score {self.total}/100 (letter {self.letter}): protocol {self.scores['protocol']}"
            f" (30%), key exchange {self.scores['key_exchange']} (30%),"
            f" cipher {self.scores['cipher']} (40%)"
        )
        for cap in self.caps:
            out.append(f"  capped at {cap.grade}: {cap.reason}")
        for warning in self.warnings:
            out.append(f"  warning: {warning}")
        out.append("Protocols")
        for version, offered in self.protocols.items():
            out.append(f"  {version:<8} {'offered' if offered else 'not offered'}")
        out.append("Cipher suites")
        for version, suites in self.suites.items():
            for s in suites:
                flags = ", ".join(
                    f for f, on in (("FS", s.forward_secrecy), ("AEAD", s.aead)) if on
                )
                out.append(f"  {version:<8} {s.name:<34} {s.bits:>3} bits  {flags}")
        for name in self.tls13_suites:
            out.append(f"  TLSv1.3  {name:<34} (negotiated)")
        out.append("Certificate")
        if self.leaf is not None:
            out.append(f"  subject   {self.leaf.subject}")
            out.append(f"  issuer    {self.leaf.issuer}")
            out.append(f"  key       {self.leaf.key_type} {self.leaf.key_bits} bits")
            out.append(f"  signature {self.leaf.signature}")
        out.append(
            f"  trust     {self.trust}{f' ({self.trust_detail})' if self.trust_detail else ''}"
        )
        out.append(
            f"  name      {'matches' if self.name_matches else 'MISMATCH'} {self.server_name}"
        )
        out.append("  expiry    " + ", ".join(f"{k} {_days(v)}" for k, v in self.expiry.items()))
        hsts = "none" if self.hsts is None else f"{self.hsts!r}"
        http = "no HTTP answer" if self.http_status is None else f"HTTP {self.http_status}"
        out.append(f"HSTS        {hsts} ({http})")
        out.append("Not tested")
        out.extend(f"  {item}" for item in self.not_tested)
        out.append(f"Rules: {self.rules}")
        return out

    def to_json(self) -> dict[str, object]:
        now = self.measured_at
        return {
            "host": self.host,
            "port": self.port,
            "server_name": self.server_name,
            "measured_at": now.isoformat(),
            "grade": self.grade,
            "letter": self.letter,
            "total": self.total,
            "scores": dict(self.scores),
            "caps": [{"grade": c.grade, "reason": c.reason} for c in self.caps],
            "warnings": list(self.warnings),
            "protocols": dict(self.protocols),
            "suites": {v: [s.to_json() for s in ss] for v, ss in self.suites.items()},
            "tls13_suites": list(self.tls13_suites),
            "certificate": {
                "leaf": None if self.leaf is None else self.leaf.to_json(now),
                "presented": [c.to_json(now) for c in self.presented],
                "verified_chain": [c.to_json(now) for c in self.verified_chain],
                "chain_source": self.chain_source,
                "trust": self.trust,
                "trust_detail": self.trust_detail,
                "name_matches": self.name_matches,
            },
            "expiry": dict(self.expiry),
            "hsts": {"header": self.hsts, "max_age": self.hsts_max_age},
            "http_status": self.http_status,
            "not_tested": list(self.not_tested),
            "error": self.error,
            "rules": self.rules,
        }

    # -- verdicts ---------------------------------------------------------------------------
    def check(self, min_grade: str) -> CheckResult:
        wanted = _grade_rank(min_grade)
        failed = _grade_rank(self.grade) > wanted
        reasons = [f"{c.grade}: {c.reason}" for c in self.caps] + list(self.warnings)
        if self.error:
            reasons.insert(0, self.error)
        evidence = f"{self.host}:{self.port}: " + ("; ".join(reasons) or "no caps, no warnings")
        return CheckResult(
            "tls-grade",
            CheckStatus.FAIL if failed else CheckStatus.PASS,
            self.grade,
            f">= {min_grade}",
            evidence,
            _remedy(self) if failed else "",
            self.host,
        )

    def expiry_check(self, min_days: int, warn_days: int = 45) -> CheckResult:
        """V7 under chain scope: FAIL at or below ``min_days`` (or not yet valid, or a name
        mismatch); WARN when another presented certificate expires before the leaf, when the
        figure is within ``warn_days``, or when the leaf lifespan exceeds 366 days."""
        threshold = f"> {min_days} days (warn <= {warn_days})"
        if self.leaf is None:
            return CheckResult(
                "certificate",
                CheckStatus.FAIL,
                "no certificate",
                threshold,
                f"{self.host}:{self.port}: {self.error or 'the server presented no certificate'}",
                "serve TLS with a certificate on this port",
                self.host,
            )
        days: float
        if self.chain_days is not None:
            days, basis = self.chain_days, "chain_days (verified chain)"
        else:  # a leaf always gives earliest_days
            days, basis = self.earliest_days or 0.0, "earliest_days (chain not verified)"
        evidence = [
            f"{basis} {_days(days)}",
            f"leaf_days {_days(self.leaf_days)}",
            f"earliest_days {_days(self.earliest_days)}",
        ]
        status = CheckStatus.PASS
        remedy = ""
        now = self.measured_at
        fails: list[str] = []
        if days <= min_days:
            fails.append(f"expires in {_days(days)} (<= {min_days})")
        if self.leaf.not_before > now:
            fails.append(f"not valid before {self.leaf.not_before.isoformat()}")
        if not self.name_matches:
            fails.append(f"certificate does not match {self.server_name}")
        warns: list[str] = []
        leaf_days = self.leaf_days
        earliest = self.earliest_days
        if leaf_days is not None and earliest is not None and earliest < leaf_days:
            first = min(self.presented, key=lambda c: c.not_after)
            warns.append(f"{first.subject} expires before the leaf, in {_days(earliest)}")
        if not fails and days <= warn_days:
            warns.append(f"expires within {warn_days} days")
        lifespan = (self.leaf.not_after - self.leaf.not_before).days
        if lifespan > MAX_LIFESPAN_DAYS:
            warns.append(f"leaf lifespan {lifespan} days > {MAX_LIFESPAN_DAYS}")
        if fails:
            status = CheckStatus.FAIL
            remedy = "renew or replace the certificate (and its chain) on this server"
        elif warns:
            status = CheckStatus.WARN
            remedy = "renew the certificate or the chain certificate that expires first"
        return CheckResult(
            "certificate",
            status,
            _days(days),
            threshold,
            f"{self.host}:{self.port}: " + "; ".join(fails + warns + evidence),
            remedy,
            self.host,
        )


def _days(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} days"


def _grade_rank(grade: str) -> int:
    if grade not in GRADE_ORDER:
        raise BadInput(
            f"unknown TLS grade {grade!r}", hint=f"use one of {', '.join(GRADE_ORDER[:8])}"
        )
    return GRADE_ORDER.index(grade)


def _remedy(report: TlsReport) -> str:
    if report.error:
        return "serve TLS on this port (is it a plain HTTP or another service?)"
    hints = {
        "T": "serve a certificate from a trusted CA, unexpired, with its full chain",
        "M": "serve a certificate whose SAN names the host clients use",
        "C": "enable TLS 1.2 and TLS 1.3",
        "F": "remove suites under 112 bits, export and anonymous suites",
        "B": "disable TLS 1.0/1.1, prefer ECDHE AEAD suites, use an RSA key >= 2048 bits",
    }
    for cap in report.caps:
        if cap.grade in hints:
            return hints[cap.grade]
    return "enable TLS 1.3 and send Strict-Transport-Security with max-age >= 15552000"


# ---------------------------------------------------------------------------------------------
# Probing


@dataclass(frozen=True)
class _Handshake:
    version: str
    cipher: str
    chain_der: tuple[bytes, ...]  # presented chain, leaf first
    leaf_der: bytes


def _client_context(
    min_v: ssl.TLSVersion, max_v: ssl.TLSVersion, ciphers: str = "ALL:COMPLEMENTOFALL:@SECLEVEL=0"
) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        # TLS 1.0/1.1 are deprecated in Python: we offer them to *detect* them.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = min_v
        ctx.maximum_version = max_v
    ctx.set_ciphers(ciphers)
    return ctx


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    return socket.create_connection((host, port), timeout=timeout)


def _handshake(
    ctx: ssl.SSLContext, host: str, port: int, sni: str | None, timeout: float
) -> _Handshake:
    with (
        _connect(host, port, timeout) as raw,
        ctx.wrap_socket(raw, server_hostname=sni) as tls,
    ):
        cipher = tls.cipher()
        leaf = tls.getpeercert(binary_form=True) or b""
        return _Handshake(
            tls.version() or "",
            cipher[0] if cipher else "",
            _chain(tls, "get_unverified_chain") or ((leaf,) if leaf else ()),
            leaf,
        )


def _chain(tls: ssl.SSLSocket, method: str) -> tuple[bytes, ...]:
    """The presented or verified chain through the private 3.10+ API, () when unavailable."""
    sslobj: Any = getattr(tls, "_sslobj", None)
    if sslobj is None or not hasattr(sslobj, method):
        return ()
    try:
        certs = getattr(sslobj, method)() or []
        return tuple(bytes(c.public_bytes(ssl._ssl.ENCODING_DER)) for c in certs)  # type: ignore[attr-defined]
    except (AttributeError, ValueError, ssl.SSLError):
        return ()


def _try(fn: Callable[[], T]) -> T | Exception:
    try:
        return fn()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        return exc


async def _in_threads(jobs: list[Callable[[], T]], limit: asyncio.Semaphore) -> list[T | Exception]:
    async def one(job: Callable[[], T]) -> T | Exception:
        async with limit:
            return await asyncio.to_thread(_try, job)

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def _verify_context(ca_file: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False  # names are matched in _name_matches, on any chain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    # A weak key is scored by the grade, not refused here.
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    if ca_file is not None:
        ctx.load_verify_locations(cafile=str(ca_file))
    return ctx


def _verify(
    ctx: ssl.SSLContext, host: str, port: int, sni: str | None, timeout: float
) -> tuple[str, str, tuple[bytes, ...]]:
    """Chain verification against the system store plus ``ca_file``; the name is checked
    separately. Returns (trust, detail, verified chain DER leaf..root)."""
    try:
        with _connect(host, port, timeout) as raw, ctx.wrap_socket(raw, server_hostname=sni) as tls:
            return "trusted", "", _chain(tls, "get_verified_chain")
    except ssl.SSLCertVerificationError as exc:
        code = exc.verify_code
        detail = exc.verify_message or str(exc)
        if code == _V_EXPIRED:
            return "expired", detail, ()
        if code == _V_NOT_YET_VALID:
            return "not yet valid", detail, ()
        if code == _V_SELF_SIGNED_LEAF:
            return "self-signed", detail, ()
        if code == _V_SELF_SIGNED_IN_CHAIN:
            return "untrusted", detail, ()
        return "untrusted", detail, ()


def _fetch_hsts(
    ctx: ssl.SSLContext, host: str, port: int, sni: str | None, timeout: float
) -> tuple[int | None, str | None]:
    name = sni or host
    request = (
        f"GET / HTTP/1.1\r\nHost: {name}:{port}\r\nUser-Agent: rollout-tls-grade\r\n"
        "Accept: */*\r\nConnection: close\r\n\r\n"
    ).encode()
    data = b""
    with _connect(host, port, timeout) as raw, ctx.wrap_socket(raw, server_hostname=sni) as tls:
        tls.sendall(request)
        while b"\r\n\r\n" not in data and len(data) < 65536:
            chunk = tls.recv(4096)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ") if lines else []
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None, None
    hsts = [
        value.strip()
        for name_, _, value in (line.partition(":") for line in lines[1:])
        if name_.strip().lower() == "strict-transport-security"
    ]
    # Several HSTS headers are invalid (RFC 6797 §8.1: only the first is processed).
    return int(parts[1]), hsts[0] if hsts else None


def _hsts_max_age(header: str | None) -> int | None:
    if header is None:
        return None
    for directive in header.split(";"):
        key, _, value = directive.strip().partition("=")
        if key.strip().lower() == "max-age":
            value = value.strip().strip('"')
            return int(value) if value.isdigit() else None
    return None


# ---------------------------------------------------------------------------------------------
# Certificates


def _name(name: x509.Name) -> str:
    return name.rfc4514_string() or "(empty)"


def _cert_info(der: bytes) -> CertInfo:
    cert = x509.load_der_x509_certificate(der)
    key = cert.public_key()
    key_type, bits = "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        key_type, bits = "RSA", key.key_size
    elif isinstance(key, ec.EllipticCurvePublicKey):
        key_type, bits = f"EC {key.curve.name}", key.key_size
    elif isinstance(key, dsa.DSAPublicKey):
        key_type, bits = "DSA", key.key_size
    elif isinstance(key, ed25519.Ed25519PublicKey):
        key_type, bits = "Ed25519", 256
    elif isinstance(key, ed448.Ed448PublicKey):
        key_type, bits = "Ed448", 456
    hash_alg = cert.signature_hash_algorithm
    return CertInfo(
        subject=_name(cert.subject),
        issuer=_name(cert.issuer),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_type=key_type,
        key_bits=bits,
        signature=hash_alg.name if hash_alg is not None else "none",
        self_issued=cert.subject == cert.issuer,
    )


def _name_matches(der: bytes, name: str) -> bool:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    if ip is not None:  # IP addresses only ever match SAN iPAddress entries
        return san is not None and ip in san.get_values_for_type(x509.IPAddress)
    if san is not None:
        patterns = san.get_values_for_type(x509.DNSName)
    else:
        patterns = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return any(_dns_match(p, name) for p in patterns)


def _dns_match(pattern: str, name: str) -> bool:
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern == name:
        return True
    if pattern.startswith("*.") and "*" not in pattern[2:]:
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:] and rest.count(".") >= 1
    return False


# ---------------------------------------------------------------------------------------------
# Scoring


def _key_score(key_type: str, bits: int) -> int:
    if key_type.startswith(("EC", "Ed")):  # testssl's EC bands
        bands = ((110, 20), (123, 40), (163, 80), (225, 90))
    else:  # RSA/DSA, from the guide
        bands = ((512, 20), (1024, 40), (2048, 80), (4096, 90))
    for limit, score in bands:
        if bits < limit:
            return score
    return 100


def _cipher_score(bits: int) -> int:
    if bits == 0:
        return 0
    if bits < 128:
        return 20
    if bits < 256:
        return 80
    return 100


def _letter(total: int) -> str:
    for limit, letter in ((80, "A"), (65, "B"), (50, "C"), (35, "D"), (20, "E")):
        if total >= limit:
            return letter
    return "F"


def _score(
    protocols: dict[str, bool],
    suites: dict[str, tuple[CipherSuite, ...]],
    tls13: tuple[str, ...],
    leaf: CertInfo | None,
    trust: str,
    name_matches: bool,
    hsts_max_age: int | None,
    hsts: str | None,
    http_status: int | None,
) -> tuple[dict[str, int], int, str, list[Cap], list[str], str]:
    offered = [v for v, on in protocols.items() if on]
    proto_scores = [PROTOCOL_SCORE[v] for v in offered]
    p = (max(proto_scores) + min(proto_scores)) // 2 if proto_scores else 0
    all_suites = [s for ss in suites.values() for s in ss]
    anonymous = [s for s in all_suites if s.anonymous]
    k = _key_score(leaf.key_type, leaf.key_bits) if leaf is not None else 0
    if anonymous:
        k = 0
    bits = [s.bits for s in all_suites] + [128 if "128" in n else 256 for n in tls13]
    c = (_cipher_score(max(bits)) + _cipher_score(min(bits))) // 2 if bits else 0
    scores = {"protocol": p, "key_exchange": k, "cipher": c}
    total = 0 if 0 in (p, k, c) else round(0.3 * p + 0.3 * k + 0.4 * c)
    letter = _letter(total)

    caps: list[Cap] = []
    if protocols.get("TLSv1.0"):
        caps.append(Cap("B", "TLS 1.0 offered"))
    if protocols.get("TLSv1.1"):
        caps.append(Cap("B", "TLS 1.1 offered"))
    if not (protocols.get("TLSv1.2") or protocols.get("TLSv1.3")):
        caps.append(Cap("C", "neither TLS 1.2 nor TLS 1.3 offered"))
    has_tls13 = bool(protocols.get("TLSv1.3"))
    if not has_tls13 and not any(s.forward_secrecy for s in all_suites):
        caps.append(Cap("B", "no forward secrecy: no ECDHE/DHE suite accepted"))
    if not has_tls13 and not any(s.aead for s in all_suites):
        caps.append(Cap("B", "no AEAD suite accepted"))
    if any("RC4" in s.name for s in all_suites):
        caps.append(Cap("B", "RC4 suites accepted"))
    if leaf is not None and k <= 40:
        caps.append(Cap("F", f"key exchange score {k} (<= 40): {leaf.key_type} {leaf.key_bits}"))
    elif leaf is not None and k <= 80:
        caps.append(Cap("B", f"{leaf.key_type} key of {leaf.key_bits} bits (< 2048 RSA)"))
    weak = sorted({s.name for s in all_suites if s.bits < 112})
    if weak:
        caps.append(Cap("F", f"suites under 112 bits: {', '.join(weak)}"))
    if anonymous:
        caps.append(Cap("F", "anonymous suites: " + ", ".join(s.name for s in anonymous)))
    if trust != "trusted":
        caps.append(Cap("T", f"certificate {trust}"))
    if leaf is not None and leaf.signature in ("sha1", "md5") and not leaf.self_issued:
        caps.append(Cap("T", f"leaf signed with {leaf.signature}"))
    if not name_matches:
        caps.append(Cap("M", "certificate name mismatch"))

    warns: list[str] = []
    if not has_tls13:
        warns.append("TLS 1.3 not offered")
    if http_status is None:
        warns.append("no HTTP answer on / so no HSTS")
    elif hsts is None:
        warns.append("no Strict-Transport-Security header")
    elif hsts_max_age is None:
        warns.append(f"malformed Strict-Transport-Security header {hsts!r}")
    elif hsts_max_age < HSTS_MIN_SECONDS:
        warns.append(f"HSTS max-age {hsts_max_age} < {HSTS_MIN_SECONDS} (180 days)")

    grade = letter
    for cap in caps:
        if GRADE_ORDER.index(cap.grade) > GRADE_ORDER.index(grade):
            grade = cap.grade
    if grade == "A" and not caps:
        grade = "A-" if warns else "A+"
    return scores, total, letter, caps, warns, grade


# ---------------------------------------------------------------------------------------------
# Entry point


async def grade(
    host: str,
    port: int,
    *,
    server_name: str | None = None,
    ca_file: Path | None = None,
    timeout: float = 10.0,
) -> TlsReport:
    """Grade the TLS server at ``host:port``. Raises ``HostError`` when no TCP connection can
    be made; a port that does not speak TLS gives a report graded F with ``error`` set."""
    name = server_name or host
    sni = name
    try:
        await asyncio.to_thread(lambda: _connect(host, port, timeout).close())
    except OSError as exc:
        raise HostError(f"{host}:{port}", f"cannot connect: {exc}") from exc
    now = datetime.now(UTC)
    limit = asyncio.Semaphore(PARALLEL_HANDSHAKES)

    version_ctx = [(label, _client_context(v, v)) for label, v in VERSIONS]
    proto_results = await _in_threads(
        [partial(_handshake, ctx, host, port, sni, timeout) for _, ctx in version_ctx], limit
    )
    protocols = {
        label: isinstance(r, _Handshake) and r.version == OPENSSL_VERSION_NAME[label]
        for (label, _), r in zip(version_ctx, proto_results, strict=True)
    }
    handshakes = [r for r in proto_results if isinstance(r, _Handshake)]
    if not handshakes:
        errors = "; ".join(
            f"{label}: {r}" for (label, _), r in zip(version_ctx, proto_results, strict=True)
        )
        return _failed_report(host, port, name, now, f"no TLS handshake succeeded ({errors})")

    # Enumerate TLS <= 1.2 suites: one handshake per (offered version, suite).
    probe = _client_context(ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_2)
    catalogue: list[dict[str, Any]] = [
        dict(c) for c in probe.get_ciphers() if c["protocol"] != "TLSv1.3"
    ]
    jobs: list[tuple[str, dict[str, Any]]] = []
    contexts: list[ssl.SSLContext] = []
    for label, v in VERSIONS[:3]:
        if not protocols[label]:
            continue
        for info in catalogue:
            if label != "TLSv1.2" and info["protocol"] == "TLSv1.2":
                continue  # TLS 1.2-only suite (GCM, SHA-256 MACs): cannot be offered
            jobs.append((label, info))
            contexts.append(_client_context(v, v, f"{info['name']}:@SECLEVEL=0"))

    # The verification handshake and the HTTP request run alongside the enumeration.
    # Contexts are built here, not in the threads: the warnings filter is process-wide.
    try:
        verify_ctx = _verify_context(ca_file)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot load CA file {ca_file}: {exc}") from exc
    http_ctx = _client_context(ssl.TLSVersion.TLSv1, ssl.TLSVersion.MAXIMUM_SUPPORTED)
    verify_task = asyncio.create_task(
        asyncio.to_thread(_try, partial(_verify, verify_ctx, host, port, sni, timeout))
    )
    hsts_task = asyncio.create_task(
        asyncio.to_thread(_try, partial(_fetch_hsts, http_ctx, host, port, sni, timeout))
    )
    suite_results = await _in_threads(
        [partial(_handshake, ctx, host, port, sni, timeout) for ctx in contexts], limit
    )
    suites: dict[str, list[CipherSuite]] = {}
    for (label, info), result in zip(jobs, suite_results, strict=True):
        if not isinstance(result, _Handshake) or result.cipher != info["name"]:
            continue
        suites.setdefault(label, []).append(_suite(info, label))
    tls13 = tuple(sorted({h.cipher for h in handshakes if h.version == "TLSv1.3" and h.cipher}))

    verified = await verify_task
    verified_der: tuple[bytes, ...]
    if isinstance(verified, Exception):
        trust, trust_detail, verified_der = (
            "untrusted",
            f"verification handshake failed: {verified}",
            (),
        )
    else:
        trust, trust_detail, verified_der = verified
    fetched = await hsts_task
    http_status, hsts = (None, None) if isinstance(fetched, Exception) else fetched
    hsts_max_age = _hsts_max_age(hsts)

    best = max(handshakes, key=lambda h: h.version)
    presented = tuple(_cert_info(d) for d in best.chain_der)
    leaf = _cert_info(best.leaf_der) if best.leaf_der else None
    verified_chain = tuple(_cert_info(d) for d in verified_der)
    if leaf is not None and trust == "trusted" and leaf.self_issued and len(verified_chain) <= 1:
        trust = "self-signed"  # a self-signed leaf passed as its own CA is still self-signed
    if leaf is not None and trust == "untrusted" and leaf.not_after < now:
        trust = "expired"
    name_ok = bool(best.leaf_der) and _name_matches(best.leaf_der, name)

    chain_source = (
        "presented and verified chains via the private _sslobj API (Python < 3.13)"
        if hasattr(ssl._ssl._SSLSocket, "get_unverified_chain")  # type: ignore[attr-defined]
        else "leaf only (the chain API was not available)"
    )
    expiry: dict[str, float | None] = {
        "leaf_days": None if leaf is None else round(leaf.days_left(now), 2),
        "earliest_days": (
            round(min(c.days_left(now) for c in presented), 2) if presented else None
        ),
        "chain_days": (
            round(min(c.days_left(now) for c in verified_chain), 2) if verified_chain else None
        ),
    }

    frozen_suites = {k: tuple(v) for k, v in suites.items()}
    scores, total, letter, caps, warns, final = _score(
        protocols, frozen_suites, tls13, leaf, trust, name_ok, hsts_max_age, hsts, http_status
    )
    return TlsReport(
        host=host,
        port=port,
        server_name=name,
        measured_at=now,
        protocols=protocols,
        suites=frozen_suites,
        tls13_suites=tls13,
        leaf=leaf,
        presented=presented,
        verified_chain=verified_chain,
        chain_source=chain_source,
        trust=trust,
        trust_detail=trust_detail,
        name_matches=name_ok,
        hsts=hsts,
        hsts_max_age=hsts_max_age,
        http_status=http_status,
        scores=scores,
        total=total,
        letter=letter,
        caps=tuple(caps),
        warnings=tuple(warns),
        grade=final,
        expiry=expiry,
    )


def _suite(info: dict[str, Any], label: str) -> CipherSuite:
    kx = str(info.get("kea", "")).removeprefix("kx-")
    return CipherSuite(
        name=str(info["name"]),
        code=f"0x{int(info['id']) & 0xFFFF:04X}",
        protocol=label,
        bits=int(info["strength_bits"]),
        forward_secrecy=kx in ("ecdhe", "dhe", "ecdhe-psk", "dhe-psk"),
        aead=bool(info.get("aead")),
        kx=kx,
        anonymous=info.get("auth") == "auth-null",
    )


def _failed_report(host: str, port: int, name: str, now: datetime, error: str) -> TlsReport:
    return TlsReport(
        host=host,
        port=port,
        server_name=name,
        measured_at=now,
        protocols={label: False for label, _ in VERSIONS},
        suites={},
        tls13_suites=(),
        leaf=None,
        presented=(),
        verified_chain=(),
        chain_source="none",
        trust="untrusted",
        trust_detail="",
        name_matches=False,
        hsts=None,
        hsts_max_age=None,
        http_status=None,
        scores={"protocol": 0, "key_exchange": 0, "cipher": 0},
        total=0,
        letter="F",
        caps=(Cap("F", error),),
        warnings=(),
        grade="F",
        error=error,
        expiry={"leaf_days": None, "earliest_days": None, "chain_days": None},
    )
