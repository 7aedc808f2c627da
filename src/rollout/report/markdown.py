"""A report document as Markdown: the same sections as the HTML page, charts left to it.

Text from the records is escaped for HTML too (``<`` as ``&lt;``), because Markdown passes
raw HTML through to whatever renders it; ``|`` is escaped in table cells and long outputs
sit in fences longer than any run of backticks inside them.
"""

from __future__ import annotations

import html
import re

from rollout.report.document import Document, Section, Table


def render(doc: Document) -> str:
    lines = [f"# {_text(doc.title)}", "", _text(doc.subtitle), ""]
    for s in doc.sections:
        lines.extend(_section(s))
    return "\n".join(lines).rstrip() + "\n"


def _section(s: Section) -> list[str]:
    lines = [f"## {_text(s.title)}", ""]
    lines.extend(f"- **{_text(k)}**: {_text(v)}" for k, v in s.fields)
    if s.fields:
        lines.append("")
    if s.note:
        lines.extend([f"_{_text(s.note)}_", ""])
    if s.charts:
        lines.extend([f"_{len(s.charts)} chart(s) in the HTML report._", ""])
    for t in s.tables:
        lines.extend(_table(t))
    if s.blocks:
        lines.extend(["### Step output", ""])
    for b in s.blocks:
        fence = "`" * max(3, 1 + max((len(m) for m in re.findall(r"`+", b.text)), default=0))
        lines.extend([f"**{_text(b.title)}**", "", fence, b.text.rstrip("\n"), fence, ""])
    return lines


def _table(t: Table) -> list[str]:
    lines = [
        "| " + " | ".join(_cell(h) for h in t.headers) + " |",
        "|" + "|".join("---:" if i in t.numeric else "---" for i in range(len(t.headers))) + "|",
    ]
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows)
    return [*lines, ""]


def _text(text: str) -> str:
    return html.escape(text, quote=False).replace("\n", " ")


def _cell(text: str) -> str:
    return _text(text).replace("|", "\\|") or " "
