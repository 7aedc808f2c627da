"""Writing a report file: whole or not at all, and a clear error when it cannot be written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rollout.errors import BadInput


def write(path: Path, content: str | Callable[[Path], None]) -> None:
    """Write ``content`` (text, or a function writing to the path it is given) to ``path``.

    It goes to a hidden file beside ``path`` first and is renamed over it, so a reader (a
    browser reloading the page) never sees half a report. Missing folders are created.
    """
    scratch = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            scratch.write_text(content, encoding="utf-8")
        else:
            content(scratch)
        os.replace(scratch, path)
    except OSError as exc:
        scratch.unlink(missing_ok=True)
        raise BadInput(
            f"cannot write {path}: {exc.strerror or exc}",
            hint="give a path in a folder you can write to",
        ) from exc
