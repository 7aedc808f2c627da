"""How numbers, spans and times read in a report (the same in HTML and Markdown)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from rollout.kpi import Figure


def figure_value(figure: Figure) -> str:
    if figure.value is None:
        return "-"
    unit = figure.unit
    return f"{figure.value:.3g}{unit if unit.startswith(('/', '%')) else ' ' + unit}"


def verdict(met: bool | None) -> str:
    return {True: "met", False: "missed", None: ""}[met]


def seconds(value: float | timedelta | None) -> str:
    """A span as people say it: 0.42 s, 12.3 s, 4 min 05 s, 2 h 10 min."""
    if value is None:
        return "-"
    total = value.total_seconds() if isinstance(value, timedelta) else value
    if total < 10:
        return f"{total:.2f} s"
    if total < 60:
        return f"{total:.1f} s"
    if total < 3600:
        minutes, rest = divmod(round(total), 60)
        return f"{minutes} min {rest:02d} s"
    hours, rest = divmod(round(total) // 60, 60)
    return f"{hours} h {rest:02d} min"


def offset(when: datetime | None, start: datetime) -> str:
    """Where a moment falls after ``start``: +12.3 s."""
    return "-" if when is None else "+" + seconds(when - start)


def moment(when: datetime | None) -> str:
    return "-" if when is None else when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
