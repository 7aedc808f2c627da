"""Charts as values, drawn by matplotlib into inline SVG (pages) or one PNG (a picture).

A ``Chart`` says what to draw; ``svg`` and ``png`` draw it. matplotlib is used through its
object API (``matplotlib.figure.Figure``), never ``pyplot``: no global figure state and no
display backend, so PNGs come from the Agg canvas and SVGs from the SVG one wherever this runs.
Settings are scoped with ``rc_context`` rather than changed for the whole process.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.typing import RcKeyType

MARKERS = ("o", "s", "^", "D", "v")
PALETTE = ("#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d")
TARGET_COLOR = "#dc2626"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_POINTS = 2000  # per series: more would make a page heavy and draw nothing more readable


ChartKind = Literal["line", "bar", "points", "step", "spans"]


@dataclass(frozen=True)
class Series:
    label: str
    x: Sequence[datetime]
    y: Sequence[float | None]  # None: no value there (a gap, not a zero)


@dataclass(frozen=True)
class Bar:
    """A horizontal span on a row (a timeline): ``start`` and ``length`` in seconds."""

    row: str
    start: float
    length: float
    color: str
    text: str = ""


@dataclass(frozen=True)
class Chart:
    key: str  # unique on a page: it seeds the SVG's element ids
    title: str
    unit: str
    series: tuple[Series, ...] = ()
    kind: ChartKind = "line"
    target: float | None = None
    target_label: str = "target"
    marks: tuple[tuple[datetime, str], ...] = ()  # vertical lines: an incident detected
    spans: tuple[Bar, ...] = ()  # kind "spans" only
    between: tuple[datetime, datetime] | None = None  # the x axis's range (else the data's)
    limits: tuple[float, float] | None = None  # the y axis's range (else the data's)

    @property
    def empty(self) -> bool:
        if self.kind == "spans":
            return not self.spans
        return not any(v is not None for s in self.series for v in s.y)


@dataclass(frozen=True)
class Style:
    width: float = 6.4  # inches
    height: float = 2.6


RC: dict[RcKeyType, Any] = {
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.fonttype": "none",  # text stays text: smaller, selectable, read by tests
}


def svg(chart: Chart, style: Style | None = None) -> str:
    """The chart as an ``<svg>`` element to inline in HTML (no XML prolog, no DOCTYPE)."""
    import matplotlib
    from matplotlib.figure import Figure

    style = style or Style()
    # A fixed salt per chart: ids are stable between runs and distinct between the charts
    # of one page (the same clip path in two inline SVGs must not share an id).
    with matplotlib.rc_context({**RC, "svg.hashsalt": chart.key}):
        figure = Figure(figsize=(style.width, _height(chart, style)), layout="constrained")
        draw(figure.add_subplot(), chart)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg") :]


def png(charts: Sequence[Chart], path: Path, title: str, style: Style | None = None) -> None:
    """All charts in a grid of two columns, under ``title``, as one PNG at ``path``."""
    import matplotlib
    from matplotlib.figure import Figure

    style = style or Style()
    rows = max(1, math.ceil(len(charts) / 2))
    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(2 * style.width, rows * style.height + 0.6), layout="constrained")
        figure.suptitle(plain(title), fontsize=12, fontweight="bold")
        for index, chart in enumerate(charts):
            draw(figure.add_subplot(rows, 2, index + 1), chart)
        figure.savefig(path, format="png", dpi=110)


def draw(ax: Axes, chart: Chart) -> None:
    ax.set_title(plain(chart.title), loc="left", fontsize=10, fontweight="bold")
    if chart.unit:
        ax.set_ylabel(plain(chart.unit))
    if chart.empty:
        ax.text(
            0.5,
            0.5,
            "no data in this window",
            ha="center",
            va="center",
            transform=ax.transAxes,
            color="#6b7280",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return
    if chart.kind == "spans":
        _spans(ax, chart.spans)
        return
    for index, series in enumerate(chart.series):
        _series(ax, chart.kind, series, index)
    if chart.target is not None:
        ax.axhline(
            chart.target,
            color=TARGET_COLOR,
            linestyle="--",
            linewidth=1,
            label=plain(chart.target_label),
        )
    for when, label in chart.marks:
        ax.axvline(_day(when), color=TARGET_COLOR, linewidth=1, alpha=0.7)
        ax.annotate(
            plain(label),
            (_day(when), 1),
            xycoords=("data", "axes fraction"),
            fontsize=7,
            color=TARGET_COLOR,
            rotation=90,
            va="top",
            ha="right",
        )
    _time_axis(ax, chart.series)
    if chart.between is not None:
        ax.set_xlim(_day(chart.between[0]), _day(chart.between[1]))
    if chart.limits is not None:
        ax.set_ylim(*chart.limits)
    if len(chart.series) > 1 or chart.target is not None:
        ax.legend(fontsize=7, loc="best", frameon=False)


def _series(ax: Axes, kind: str, series: Series, index: int) -> None:
    color = PALETTE[index % len(PALETTE)]
    when, y = _thinned(series)
    x = [_day(w) for w in when]
    values = [math.nan if v is None else v for v in y]
    label = plain(series.label)
    if kind == "bar":
        ax.bar(x, values, width=_bar_width(when), color=color, label=label, align="center")
    elif kind == "points":
        ax.plot(x, values, linestyle="none", marker=".", markersize=3, color=color, label=label)
    elif kind == "step":
        ax.step(x, values, where="post", color=color, label=label)
    else:
        # Hollow, larger markers after the first: equal values stay visible on top of it.
        ax.plot(
            x,
            values,
            color=color,
            label=label,
            marker=MARKERS[index % len(MARKERS)],
            markersize=3 + 2 * min(index, 1),
            fillstyle="full" if index == 0 else "none",
        )


def _spans(ax: Axes, bars: Sequence[Bar]) -> None:
    rows = list(dict.fromkeys(b.row for b in bars))
    for bar in bars:
        y = rows.index(bar.row)
        ax.barh(y, max(bar.length, 0.05), left=bar.start, color=bar.color, height=0.6)
        if bar.text:
            ax.annotate(
                plain(bar.text),
                (bar.start + bar.length, y),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
    ax.set_yticks(range(len(rows)), [plain(r) for r in rows])
    ax.invert_yaxis()  # first phase on top, as it is read
    ax.set_xlabel("seconds from the start")
    ax.margins(x=0.15)


def _time_axis(ax: Axes, series: Sequence[Series]) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    if any(s.x for s in series):
        locator = AutoDateLocator(maxticks=8)  # type: ignore[no-untyped-call]
        ax.xaxis.set_major_locator(locator)
        ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _day(when: datetime) -> float:
    """matplotlib's date number (days since its default epoch, 1970-01-01 UTC)."""
    return (when - EPOCH).total_seconds() / 86400


def _bar_width(x: Sequence[datetime]) -> float:
    """Bar width in days (matplotlib's date unit): most of the gap between two points."""
    if len(x) < 2:
        return 5.0
    gaps = [(b - a).total_seconds() for a, b in pairwise(x) if b > a]
    return 0.8 * min(gaps) / 86400 if gaps else 5.0


def _thinned(series: Series) -> tuple[list[datetime], list[float | None]]:
    step = max(1, math.ceil(len(series.x) / MAX_POINTS))
    return list(series.x[::step]), list(series.y[::step])


def _height(chart: Chart, style: Style) -> float:
    if chart.kind != "spans":
        return style.height
    rows = len({b.row for b in chart.spans})
    return max(style.height, 0.6 + 0.32 * rows)


def plain(text: str) -> str:
    """Text matplotlib shows as written: ``$`` would start its math notation."""
    return text.replace("$", r"\$")
