"""The written report pages, opened in real headless Chromium: the charts render, the tables
read, nothing is fetched, and hostile text from the records stays text."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page

from tests.fixtures.browser import serve
from tests.integration.test_report import History, make_history, weekly_frequency


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[History, Path]:
    root = tmp_path_factory.mktemp("browser")
    history = make_history(root / "history")
    out = root / "pages"
    kpi = history.box.rollout("report", "--kpi", "--out", str(out / "kpi.html"))
    assert kpi.returncode == 0, kpi.stderr
    one = history.box.rollout(
        "report", str(history.reported), "--out", str(out / "deployment.html"),
        "--markdown", str(out / "deployment.md"),
    )  # fmt: skip
    assert one.returncode == 0, one.stderr
    return history, out


def _watch(tab: Page) -> dict[str, list[str]]:
    """What the page asks for, complains about and pops up while it is open."""
    seen: dict[str, list[str]] = {"requests": [], "errors": [], "dialogs": []}
    tab.on("request", lambda r: seen["requests"].append(r.url))
    tab.on("console", lambda m: seen["errors"].append(m.text) if m.type == "error" else None)
    tab.on("pageerror", lambda e: seen["errors"].append(str(e)))
    tab.on("dialog", lambda d: (seen["dialogs"].append(d.message), d.dismiss()))
    return seen


def _ink(png: bytes) -> float:
    """The share of pixels that are not (near) white."""
    image = Image.open(io.BytesIO(png)).convert("L")
    histogram = image.histogram()
    return 1 - sum(histogram[240:]) / (image.width * image.height)


def test_the_kpi_page_renders_its_charts_and_figures(
    page: Page,
    pages: tuple[History, Path],
) -> None:
    url = (pages[1] / "kpi.html").as_uri()
    seen = _watch(page)
    page.goto(url)
    charts = page.locator(".charts figure svg")
    assert charts.count() == 9
    for index in range(charts.count()):
        box = charts.nth(index).bounding_box()
        assert box is not None and box["width"] > 300 and box["height"] > 100, box
    # Drawn, not only sized: the deployments chart has its bars, every chart has lines.
    assert charts.first.locator("path").count() > 20
    shot = page.locator(".charts figure").first.screenshot()
    assert _ink(shot) > 0.03  # axes, bars, labels: a blank chart would be ~0
    figures = page.locator("table").first
    frequency = figures.locator("tr", has_text="deployment frequency").inner_text().split("\t")
    assert frequency[1] in weekly_frequency(pages[0])
    assert frequency[2:4] == [">= weekly (1/week)", "met"]
    assert figures.locator("td.num").first.is_visible()
    assert seen == {"requests": [url], "errors": [], "dialogs": []}


def test_a_deployment_report_shows_hostile_text_as_text(
    page: Page,
    pages: tuple[History, Path],
) -> None:
    seen = _watch(page)
    with serve(pages[1]) as base:  # over loopback HTTP, as a dashboard would serve it
        page.goto(f"{base}/deployment.html")
        timeline = page.locator("figure svg").first
        box = timeline.bounding_box()
        assert box is not None and box["height"] > 100
        page.locator("summary", has_text="deploy / install on web-1").click()
        shown = page.locator("details[open] pre").inner_text()
    assert shown == "installed\n<script>alert('owned')</script>"
    assert page.locator("script").count() == 0
    assert page.get_by_text("web-<b>2</b>").first.is_visible()  # a host, shown as typed
    assert seen["dialogs"] == [] and seen["errors"] == []
    assert all(u.startswith(base) for u in seen["requests"])
