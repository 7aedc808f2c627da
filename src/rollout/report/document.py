"""A report as plain data (sections of fields, tables, charts and text blocks), so the HTML
and the Markdown renderings say the same things; each renderer escapes for its own format."""

from __future__ import annotations

from dataclasses import dataclass, field

from rollout.report.charts import Chart


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: frozenset[int] = frozenset()  # columns aligned right
    status: frozenset[int] = frozenset()  # columns holding a status word (coloured in HTML)


@dataclass(frozen=True)
class Block:
    """A long text shown as it is (a step's output), under a short title."""

    title: str
    text: str


@dataclass(frozen=True)
class Section:
    title: str
    fields: tuple[tuple[str, str], ...] = ()
    charts: tuple[tuple[Chart, str], ...] = ()  # (chart, caption)
    tables: tuple[Table, ...] = ()
    blocks: tuple[Block, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Document:
    title: str
    subtitle: str
    sections: tuple[Section, ...] = field(default_factory=tuple)
