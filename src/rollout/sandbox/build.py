"""Building a sandbox: the example runbook with free ports, and release artifacts."""

from __future__ import annotations

import importlib.util
import re
import socket
import sqlite3
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from rollout.errors import BadInput

EXAMPLE_PORTS = ("18101", "18102", "18111", "18112")


def example_dir() -> Path:
    """The United Cars example: beside the source tree (a checkout) or shipped in the wheel."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[3] / "examples" / "united-cars", here.parent / "united-cars"):
        if (candidate / "build_release.py").is_file():
            return candidate
    raise BadInput(
        "the United Cars example is not found", hint="run the demo from a rollout checkout"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True)
class Release:
    name: str  # v1, v2, v3: what the demo calls it
    tag: str
    faults: dict[str, Any] | None


def demo_releases(today: date | None = None) -> list[Release]:
    day = (today or date.today()).strftime("%Y.%m.%d")
    return [
        Release("v1", f"v{day}-a1b2c3d", None),
        Release("v2", f"v{day}-b2c3d4e", None),
        # v3 passes its verification, then answers every page with HTTP 500 (health stays
        # up): the monitoring window must catch it, call it level 3 and roll it back. Every
        # page, not a share: with a share, the few probe requests of a 1 s interval can stay
        # under level 3's 10 % for the failure limit's four readings, and then the story's
        # level 3 is a level 2 by chance.
        Release("v3", f"v{day}-c3d4e5f", {"error_rate": 1.0, "after_s": 7}),
    ]


def write_runbook(directory: Path) -> Path:
    """Copy the example runbook into the sandbox, on free ports and this Python."""
    text = (example_dir() / "rollout.yml").read_text()
    for port in EXAMPLE_PORTS:
        text = re.sub(rf"'{port}'", f"'{free_port()}'", text)
    text = text.replace("python: python3", f"python: '{sys.executable}'")
    # The environments' databases: SQLite files in the sandbox instead of /var/lib on servers.
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    text = text.replace("/var/lib/united-cars", str(data))
    # Production's database exists before the first release, as a provisioned server's would:
    # the first deploy's backup phase backs it up (empty) like any other.
    sqlite3.connect(data / "production.db").close()
    path = directory / "rollout.yml"
    path.write_text(text)
    return path


def build_artifacts(directory: Path, releases: list[Release]) -> None:
    builder = _load_builder()
    out = directory / "dist"
    for release in releases:
        builder.build_release(release.tag, out, faults=release.faults)


def _load_builder() -> Any:
    path = example_dir() / "build_release.py"
    spec = importlib.util.spec_from_file_location("united_cars_build_release", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
