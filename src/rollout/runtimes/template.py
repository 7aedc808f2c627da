"""Placeholders in runbook strings (`{tag}`, `{release_dir}`, host vars), filled per host.

Rendering is strict: an unknown placeholder is bad input caught while planning, before any
host is touched, never a half-rendered command on a server.
"""

from __future__ import annotations

import string
from collections.abc import Iterable, Mapping

from rollout.errors import BadInput


def placeholders(template: str) -> set[str]:
    """The names a template refers to."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name}
    except ValueError as exc:
        raise BadInput(
            f"malformed template {template!r}: {exc}", hint="escape braces as {{ }}"
        ) from exc


def render(template: str, values: Mapping[str, str], *, where: str) -> str:
    """Fill ``template`` from ``values``; unknown names are a ``BadInput`` naming ``where``."""
    unknown = placeholders(template) - values.keys()
    if unknown:
        raise BadInput(
            f"{where}: unknown placeholder {{{sorted(unknown)[0]}}} in {template!r}",
            hint=f"known placeholders: {', '.join(sorted(values))}; add others to the host's vars",
        )
    return template.format_map(values)


def render_all(templates: Iterable[str], values: Mapping[str, str], *, where: str) -> list[str]:
    return [render(t, values, where=where) for t in templates]
