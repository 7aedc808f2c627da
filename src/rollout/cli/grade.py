"""``rollout grade tls|headers|load``: each grader on its own, outside any deployment, the way
people use testssl.sh, the HTTP Observatory or k6. Exit 1 when the grade or a threshold fails."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rollout.cli.common import JsonOption, console, print_json

grade_app = typer.Typer(
    help="Grade a TLS server, security headers or a load run, on their own.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(grade_app, name="grade")


def _show(lines: list[str], data: dict[str, object], as_json: bool) -> None:
    if as_json:
        print_json(data)
    else:
        out = console()
        for line in lines:
            out.print(line, highlight=False)


@grade_app.command("tls")
def tls_command(
    target: Annotated[str, typer.Argument(help="HOST:PORT of the TLS server.")],
    ca: Annotated[
        Path | None, typer.Option("--ca", help="Also trust this CA file (like testssl --add-ca).")
    ] = None,
    server_name: Annotated[
        str | None, typer.Option("--sni", help="Server name to ask for (default: HOST).")
    ] = None,
    min_grade: Annotated[str, typer.Option("--min-grade", help="Exit 1 below this grade.")] = "A",
    as_json: JsonOption = False,
) -> None:
    """A local SSL Labs-style grade: protocols, key exchange, ciphers, certificate, caps.

    Example: rollout grade tls example.com:443
    """
    from rollout.checks import tls
    from rollout.cli.deploy import run_cancellable

    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        from rollout.errors import BadInput

        raise BadInput(
            f"{target!r} is not HOST:PORT", hint="e.g. rollout grade tls example.com:443"
        )
    report = run_cancellable(tls.grade(host, int(port), server_name=server_name, ca_file=ca))
    _show(report.lines(), report.to_json(), as_json)
    if report.check(min_grade).failed:
        raise typer.Exit(1)


@grade_app.command("headers")
def headers_command(
    url: Annotated[str, typer.Argument(help="The page to grade, e.g. https://example.com/.")],
    ca: Annotated[Path | None, typer.Option("--ca", help="Also trust this CA file.")] = None,
    min_grade: Annotated[str, typer.Option("--min-grade", help="Exit 1 below this grade.")] = "B",
    as_json: JsonOption = False,
) -> None:
    """Security headers graded the HTTP Observatory way: score, letter, each test's finding.

    Example: rollout grade headers https://example.com/
    """
    from rollout.checks import headers
    from rollout.cli.deploy import run_cancellable

    report = run_cancellable(headers.grade(url, ca_file=ca))
    _show(report.lines(), report.to_json(), as_json)
    if report.check(required=[], min_grade=min_grade).failed:
        raise typer.Exit(1)


@grade_app.command("load")
def load_command(
    url: Annotated[str, typer.Argument(help="The URL to load.")],
    requests: Annotated[int, typer.Option("--requests", "-n", help="Requests in all.")] = 200,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", help="Requests at once.")] = 10,
    threshold: Annotated[
        list[str] | None,
        typer.Option("--threshold", help="k6-style, e.g. 'p(95)<2000' or 'rate<0.01'; repeatable."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A concurrent load run with exact percentiles and k6-style thresholds.

    Example: rollout grade load http://127.0.0.1:8000/api/health -n 500 -c 20 --threshold 'p(95)<200'
    """
    from rollout.checks import load
    from rollout.cli.deploy import run_cancellable

    report = run_cancellable(
        load.run(url, requests=requests, concurrency=concurrency, thresholds=threshold or [])
    )
    _show(report.lines(), report.to_json(), as_json)
    if any(c.failed for c in report.checks()):
        raise typer.Exit(1)
