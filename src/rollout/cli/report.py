"""``rollout report``: a deployment's report (HTML and Markdown), or the KPI page with charts."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from rollout.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    console,
    kpi_scope,
    load,
    print_json,
)

if TYPE_CHECKING:
    from rollout.config import Runbook

PAGE_SUFFIXES = (".html", ".htm")


def register(app: typer.Typer) -> None:
    app.command("report")(report_command)


def report_command(
    deployment: Annotated[
        int | None, typer.Argument(help="Deployment id (see `rollout history`).")
    ] = None,
    kpi: Annotated[
        bool, typer.Option("--kpi", help="The KPI page with weekly trend charts instead.")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The HTML page (default: deployment-ID.html or kpi.html); "
            "with --kpi, a .png path writes the charts as a picture instead.",
        ),
    ] = None,
    markdown: Annotated[
        Path | None,
        typer.Option(
            "--markdown", help="A deployment's Markdown report (default: deployment-ID.md)."
        ),
    ] = None,
    png: Annotated[
        Path | None, typer.Option("--png", help="With --kpi: also the charts as a PNG picture.")
    ] = None,
    env: Annotated[
        str | None, typer.Option("--env", help="With --kpi: environment (default: production).")
    ] = None,
    since: Annotated[
        str, typer.Option("--since", help="With --kpi: window, back from now: 90d, 12w.")
    ] = "90d",
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Write a deployment's report, or the KPI page, as self-contained files.

    Examples: rollout report 42 --out report.html --markdown report.md;
    rollout report --kpi --out kpi.html --png kpi.png
    """
    from rollout.errors import BadInput

    if kpi == (deployment is not None):
        raise BadInput(
            "give a deployment id or --kpi (one of them)",
            hint="rollout report 42, or rollout report --kpi --out kpi.html",
        )
    runbook = load(config)
    if deployment is not None:
        if png is not None:
            raise BadInput("--png is for the KPI page", hint="rollout report --kpi --png kpi.png")
        written = _deployment(runbook, deployment, out, markdown)
    else:
        if markdown is not None:
            raise BadInput("--markdown is for a deployment's report", hint="rollout report 42")
        written = _kpi(runbook, env, since, out, png)
    if as_json:
        print_json({"written": [str(p) for p in written]})
        return
    for path in written:
        console().print(f"wrote {path}", highlight=False, markup=False)


def _deployment(
    runbook: Runbook, deployment_id: int, out: Path | None, md: Path | None
) -> list[Path]:
    from rollout.report import deployment, deployment_report, html, markdown, output
    from rollout.store import open_store

    page = out or Path(f"deployment-{deployment_id}.html")
    text = md or Path(f"deployment-{deployment_id}.md")
    _page_suffix(page, "--out")
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        doc = deployment_report.document(deployment.gather(store, deployment_id))
    output.write(page, html.render(doc))
    output.write(text, markdown.render(doc))
    return [page, text]


def _kpi(
    runbook: Runbook, env: str | None, since: str, out: Path | None, png: Path | None
) -> list[Path]:
    from rollout.errors import BadInput
    from rollout.model import utcnow
    from rollout.report import kpi_page, output
    from rollout.store import open_store

    name, window = kpi_scope(runbook, env, since)
    if png is not None and png.suffix.lower() != ".png":
        raise BadInput(f"--png {png}: a PNG picture is written, so give it a .png name")
    page = out or Path("kpi.html")
    pages, pictures = ([], [page]) if page.suffix.lower() == ".png" else ([page], [])
    for p in pages:
        _page_suffix(p, "--out")
    pictures += [png] if png is not None else []
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        built = kpi_page.build(store.engine, runbook, name, window, utcnow())
    for p in pages:
        output.write(p, kpi_page.render(built))
    for p in pictures:
        output.write(p, lambda path: kpi_page.write_png(built, path))
    return [*pages, *pictures]


def _page_suffix(path: Path, option: str) -> None:
    from rollout.errors import BadInput

    if path.suffix.lower() not in PAGE_SUFFIXES:
        raise BadInput(
            f"{option} {path}: an HTML page is written, so give it a .html name",
            hint="e.g. --out report.html (with --kpi, --out kpi.png writes a picture)",
        )
