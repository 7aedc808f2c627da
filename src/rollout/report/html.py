"""Self-contained HTML pages: inline CSS and inline SVG, nothing fetched, no scripts (but the
dashboard's one same-origin file, when asked for).

Every text from the records goes through ``esc`` (``html.escape``); only ``Safe`` strings,
built here from escaped parts or drawn by matplotlib, reach a page as they are. The records
are redacted when written, and nothing here adds a secret.
"""

from __future__ import annotations

import html
from collections.abc import Collection, Iterable, Sequence

from rollout.report import charts
from rollout.report.document import Document
from rollout.report.document import Section as DocSection
from rollout.report.document import Table as DocTable

CSS = """
:root { color-scheme: light; --ink: #111827; --dim: #6b7280; --line: #e5e7eb; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
       margin: 2rem auto; max-width: 1200px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; }
h2 { font-size: 1.15rem; margin-top: 2rem; border-bottom: 1px solid var(--line); }
.sub, .note, figcaption { color: var(--dim); }
table { border-collapse: collapse; margin: .5rem 0; width: 100%; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line);
         vertical-align: top; }
th { background: #f9fafb; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.short { white-space: nowrap; }
.met, .pass, .succeeded { color: #047857; font-weight: 600; }
.missed, .fail, .failed, .rolled_back, .aborted { color: #b91c1c; font-weight: 600; }
.warn, .running { color: #b45309; font-weight: 600; }
.skip, .skipped { color: var(--dim); }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr));
          gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 6px; padding: .5rem; }
figure svg { width: 100%; height: auto; display: block; }
pre { white-space: pre-wrap; word-break: break-word; background: #f9fafb; padding: .5rem;
      margin: .3rem 0; font-size: 12px; }
details summary { cursor: pointer; color: var(--dim); }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { color: var(--dim); }
dd { margin: 0; }
"""


SHORT = 24  # characters: cells up to this long are not wrapped


class Safe(str):
    """HTML that is already escaped (or drawn by matplotlib): written as it is."""


def esc(text: object) -> Safe:
    return Safe(html.escape("" if text is None else str(text), quote=True))


def cell(text: str) -> Safe:
    return text if isinstance(text, Safe) else esc(text)


def span(text: object, css: str) -> Safe:
    return Safe(f'<span class="{esc(css)}">{esc(text)}</span>')


def table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: Collection[int] = ()
) -> Safe:
    """Rows of cells: plain text is escaped, ``Safe`` kept; columns in ``numeric`` align right."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td{_css(i, c, numeric)}>{cell(c)}</td>" for i, c in enumerate(row))
        + "</tr>\n"
        for row in rows
    )
    return Safe(f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n")


def _css(column: int, text: str, numeric: Collection[int]) -> str:
    if column in numeric:
        return ' class="num"'
    # A short cell (a host name, a status) reads better whole than broken at a hyphen.
    return ' class="short"' if len(text) <= SHORT else ""


def fields(pairs: Iterable[tuple[str, str]]) -> Safe:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{cell(v)}</dd>\n" for k, v in pairs)
    return Safe(f"<dl>\n{items}</dl>\n")


def figure(svg: str, caption: str) -> Safe:
    return Safe(f"<figure>\n{svg}\n<figcaption>{esc(caption)}</figcaption>\n</figure>\n")


def page(title: str, subtitle: str, sections: Iterable[Safe], *, script: str | None = None) -> str:
    """A whole page; ``script``, a same-origin path, is the one script it may load (the
    dashboard's live view), and the page's policy then lets it connect back to its origin."""
    body = "\n".join(sections)
    policy = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    tag = ""
    if script is not None:
        policy += "; script-src 'self'; connect-src 'self'"
        tag = f'<script src="{esc(script)}" defer></script>\n'
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        # No remote anything, and no scripts but the one given: the page is a record that
        # must open offline.
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n{tag}</head>\n<body>\n"
        f'<h1>{esc(title)}</h1>\n<p class="sub">{esc(subtitle)}</p>\n{body}\n</body>\n</html>\n'
    )


def section(title: str, *parts: Safe) -> Safe:
    return Safe(f"<section>\n<h2>{esc(title)}</h2>\n" + "".join(parts) + "</section>\n")


def render(doc: Document, *, lead: Sequence[Safe] = (), script: str | None = None) -> str:
    """A report document as one self-contained page, charts inlined as SVG; ``lead`` sections
    go before the report's own (the dashboard's navigation and live view)."""
    return page(
        doc.title, doc.subtitle, [*lead, *(_section(s) for s in doc.sections)], script=script
    )


def _section(s: DocSection) -> Safe:
    parts = [fields(s.fields)] if s.fields else []
    if s.note:
        parts.append(Safe(f'<p class="note">{esc(s.note)}</p>\n'))
    if s.charts:
        drawn = "".join(figure(charts.svg(c), caption) for c, caption in s.charts)
        parts.append(Safe(f'<div class="charts">\n{drawn}</div>\n'))
    parts.extend(_table(t) for t in s.tables)
    if s.blocks:
        outputs = "".join(
            f"<details><summary>{esc(b.title)}</summary><pre>{esc(b.text)}</pre></details>\n"
            for b in s.blocks
        )
        parts.append(Safe(f"<h3>Step output</h3>\n{outputs}"))
    return section(s.title, *parts)


def _table(t: DocTable) -> Safe:
    rows = [[span(c, c) if i in t.status else c for i, c in enumerate(row)] for row in t.rows]
    return table(t.headers, rows, numeric=t.numeric)
