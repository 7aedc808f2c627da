"""The TLS grader (rollout.checks.tls) against real TLS servers on 127.0.0.1 (tests/fixtures/tls.py),
the `rollout grade tls` command, and a cross-check of protocols and suites against sslyze 6.3.1."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from rollout.checks import tls
from rollout.errors import HostError
from rollout.model import CheckStatus
from tests.fixtures.tls import (
    LocalCA,
    ServerSpec,
    TlsServer,
    free_closed_port,
    make_leaf,
)

Start = Callable[[ServerSpec], TlsServer]


def grade(server: TlsServer, ca: LocalCA | None = None, **kw: object) -> tls.TlsReport:
    return asyncio.run(tls.grade("127.0.0.1", server.port, ca_file=ca.path if ca else None, **kw))


def caps(report: tls.TlsReport) -> set[str]:
    return {f"{c.grade}: {c.reason}" for c in report.caps}


def test_modern_server_with_valid_chain_and_long_hsts_is_a_plus(
    tls_server: Start, tls_ca: LocalCA, tmp_path: Path
) -> None:
    server = tls_server(ServerSpec(make_leaf(tmp_path, tls_ca, not_after_days=200)))
    report = grade(server, tls_ca)
    assert report.grade == "A+", report.lines()
    assert report.caps == () and report.warnings == ()
    assert report.protocols == {
        "TLSv1.0": False,
        "TLSv1.1": False,
        "TLSv1.2": True,
        "TLSv1.3": True,
    }
    assert report.trust == "trusted" and report.name_matches
    assert report.hsts_max_age == 63072000
    assert (
        report.leaf is not None and report.leaf.key_type == "RSA" and report.leaf.key_bits == 2048
    )
    assert all(s.forward_secrecy for s in report.suites["TLSv1.2"])
    assert report.tls13_suites and report.scores == {
        "protocol": 100,
        "key_exchange": 90,
        "cipher": 90,
    }
    assert report.check("A").status is CheckStatus.PASS
    assert report.expiry_check(30).status is CheckStatus.PASS
    assert report.chain_days is not None and 199 < report.chain_days <= 200
    text = "\n".join(report.lines())
    assert report.lines()[0].endswith(": A+") and "Not tested" in text and "SSLv2" in text
    data = report.to_json()
    assert data["grade"] == "A+" and json.loads(json.dumps(data))["total"] == 93


def test_missing_hsts_gives_a_minus(tls_server: Start, tls_ca: LocalCA, tmp_path: Path) -> None:
    server = tls_server(ServerSpec(make_leaf(tmp_path, tls_ca), hsts=None))
    report = grade(server, tls_ca)
    assert report.grade == "A-"
    assert report.warnings == ("no Strict-Transport-Security header",)
    assert report.check("A").failed and not report.check("A-").failed


def test_tls10_offered_is_capped_at_b(tls_server: Start, tls_ca: LocalCA, tmp_path: Path) -> None:
    server = tls_server(
        ServerSpec(make_leaf(tmp_path, tls_ca), min_version=ssl.TLSVersion.TLSv1, seclevel0=True)
    )
    report = grade(server, tls_ca)
    assert report.protocols["TLSv1.0"] and report.protocols["TLSv1.1"]
    assert report.grade == "B"
    assert "B: TLS 1.0 offered" in caps(report)
    assert report.scores["protocol"] == 95  # (100 + 90) / 2
    result = report.check("A")
    assert result.failed and "TLS 1.0 offered" in result.evidence and result.value == "B"


def test_self_signed_is_t(tls_server: Start, tmp_path: Path) -> None:
    server = tls_server(ServerSpec(make_leaf(tmp_path, None)))
    report = grade(server)
    assert report.trust == "self-signed"
    assert report.grade == "T" and "T: certificate self-signed" in caps(report)
    assert report.check("F").failed  # T ranks below every letter


def test_wrong_name_is_m(tls_server: Start, tls_ca: LocalCA, tmp_path: Path) -> None:
    server = tls_server(ServerSpec(make_leaf(tmp_path, tls_ca, names=("other.example",))))
    report = grade(server, tls_ca)
    assert report.trust == "trusted" and not report.name_matches
    assert report.grade == "M" and "M: certificate name mismatch" in caps(report)
    # the same certificate graded for the name it carries is fine
    right = grade(server, tls_ca, server_name="other.example")
    assert right.name_matches and right.grade == "A+"


def test_rsa_1024_is_capped(tls_server: Start, tls_ca: LocalCA, tmp_path: Path) -> None:
    server = tls_server(ServerSpec(make_leaf(tmp_path, tls_ca, key_kind="rsa1024"), seclevel0=True))
    report = grade(server, tls_ca)
    assert report.leaf is not None and report.leaf.key_bits == 1024
    assert report.scores["key_exchange"] == 80
    assert report.grade == "B" and "B: RSA key of 1024 bits (< 2048 RSA)" in caps(report)


def test_no_forward_secrecy_is_capped_at_b(
    tls_server: Start, tls_ca: LocalCA, tmp_path: Path
) -> None:
    server = tls_server(
        ServerSpec(
            make_leaf(tmp_path, tls_ca),
            max_version=ssl.TLSVersion.TLSv1_2,
            ciphers="AES128-GCM-SHA256",
        )
    )
    report = grade(server, tls_ca)
    assert [s.name for s in report.suites["TLSv1.2"]] == ["AES128-GCM-SHA256"]
    assert report.suites["TLSv1.2"][0].code == "0x009C"
    assert not report.protocols["TLSv1.3"]
    assert report.grade == "B"
    assert "B: no forward secrecy: no ECDHE/DHE suite accepted" in caps(report)
    assert "TLS 1.3 not offered" in report.warnings


def test_certificate_expiring_in_10_days_fails_expiry(
    tls_server: Start, tls_ca: LocalCA, tmp_path: Path
) -> None:
    server = tls_server(ServerSpec(make_leaf(tmp_path, tls_ca, not_after_days=10)))
    report = grade(server, tls_ca)
    assert report.grade == "A+"  # expiry is its own check, not a grade cap
    result = report.expiry_check(min_days=30)
    assert result.id == "certificate" and result.status is CheckStatus.FAIL
    assert result.value.startswith("9.9") or result.value.startswith("10.0")
    assert "chain_days" in result.evidence
    assert report.expiry_check(min_days=5).status is CheckStatus.WARN  # within warn_days 45


def test_expired_certificate_is_t_and_fails_expiry(
    tls_server: Start, tls_ca: LocalCA, tmp_path: Path
) -> None:
    server = tls_server(
        ServerSpec(make_leaf(tmp_path, tls_ca, not_before_days=-100, not_after_days=-2))
    )
    report = grade(server, tls_ca)
    assert report.trust == "expired" and report.grade == "T"
    assert "T: certificate expired" in caps(report)
    result = report.expiry_check(min_days=30)
    assert result.failed and "earliest_days" in result.evidence
    assert report.leaf_days is not None and report.leaf_days < 0


def test_untrusted_without_the_ca_is_t(tls_server: Start, tls_ca: LocalCA, tmp_path: Path) -> None:
    server = tls_server(ServerSpec(make_leaf(tmp_path, tls_ca)))
    report = grade(server)  # the test CA is not passed
    assert report.trust == "untrusted" and report.grade == "T"


def test_unreachable_port_raises_host_error() -> None:
    port = free_closed_port()
    with pytest.raises(HostError, match="cannot connect"):
        asyncio.run(tls.grade("127.0.0.1", port, timeout=2))


def test_plain_http_port_fails_with_the_reason() -> None:
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from threading import Thread

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    thread = Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        report = asyncio.run(tls.grade("127.0.0.1", httpd.server_address[1], timeout=3))
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert report.grade == "F" and report.error.startswith("no TLS handshake succeeded")
    result = report.check("A")
    assert result.failed and "no TLS handshake" in result.evidence
    assert report.expiry_check(30).failed
    assert "error:" in "\n".join(report.lines())


# -- CLI ------------------------------------------------------------------------------------


def rollout(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rollout", *args], capture_output=True, text=True, timeout=120
    )


def test_cli_json_a_plus_and_self_signed_exit_1(
    tls_server: Start, tls_ca: LocalCA, tmp_path: Path
) -> None:
    good = tls_server(ServerSpec(make_leaf(tmp_path, tls_ca, stem="good")))
    done = rollout("grade", "tls", good.target, "--ca", str(tls_ca.path), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["grade"] == "A+"

    bad = tls_server(ServerSpec(make_leaf(tmp_path, None, stem="self")))
    done = rollout("grade", "tls", bad.target)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0].endswith(": T")


def test_cli_unreachable_prints_one_error_line_and_exits_3() -> None:
    done = rollout("grade", "tls", "127.0.0.1:1")
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: 127.0.0.1:1: cannot connect")


# -- sslyze cross-check ---------------------------------------------------------------------

SSLYZE_VERSIONS = {
    "TLSv1.0": "tls_1_0_cipher_suites",
    "TLSv1.1": "tls_1_1_cipher_suites",
    "TLSv1.2": "tls_1_2_cipher_suites",
    "TLSv1.3": "tls_1_3_cipher_suites",
}


def sslyze_scan(python: Path, server: TlsServer, out: Path) -> dict[str, set[str]]:
    """Accepted suites per version as sslyze sees them, by OpenSSL name."""
    done = subprocess.run(
        [
            str(python),
            "-m",
            "sslyze",
            "--quiet",
            f"--json_out={out}",
            "--mozilla_config=disable",
            "--tlsv1",
            "--tlsv1_1",
            "--tlsv1_2",
            "--tlsv1_3",
            server.target,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(out.read_text())
    [result] = data["server_scan_results"]
    assert result["scan_status"] == "COMPLETED", result
    accepted: dict[str, set[str]] = {}
    for label, key in SSLYZE_VERSIONS.items():
        attempt = result["scan_result"][key]
        assert attempt["status"] == "COMPLETED", attempt
        accepted[label] = {
            s["cipher_suite"]["openssl_name"] for s in attempt["result"]["accepted_cipher_suites"]
        }
    return accepted


@pytest.mark.parametrize(
    "case",
    ["modern", "tls10", "no-fs"],
)
def test_protocols_and_suites_agree_with_sslyze(
    case: str,
    tls_server: Start,
    tls_ca: LocalCA,
    tmp_path: Path,
    sslyze_python: Path,
) -> None:
    leaf = make_leaf(tmp_path, tls_ca)
    spec = {
        "modern": ServerSpec(leaf),
        "tls10": ServerSpec(leaf, min_version=ssl.TLSVersion.TLSv1, seclevel0=True),
        "no-fs": ServerSpec(
            leaf, max_version=ssl.TLSVersion.TLSv1_2, ciphers="AES128-GCM-SHA256:AES256-SHA"
        ),
    }[case]
    server = tls_server(spec)
    theirs = sslyze_scan(sslyze_python, server, tmp_path / "sslyze.json")
    ours = grade(server, tls_ca)

    assert {v for v, s in theirs.items() if s} == {v for v, on in ours.protocols.items() if on}
    for version in ("TLSv1.0", "TLSv1.1", "TLSv1.2"):
        mine = {s.name for s in ours.suites.get(version, ())}
        assert mine == theirs[version], version
    # Python cannot choose TLS 1.3 suites: ours is the negotiated one, which sslyze must list.
    assert set(ours.tls13_suites) <= theirs["TLSv1.3"]
    assert bool(ours.tls13_suites) == bool(theirs["TLSv1.3"])
