"""What every command shares: the --config option, loading the runbook, printing, JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from rollout.config import Runbook

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", help="The runbook file, or a folder holding rollout.yml."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
DEFAULT_CONFIG = Path("rollout.yml")


def config_path(path: Path) -> Path:
    return path / "rollout.yml" if path.is_dir() else path


def load(path: Path) -> Runbook:
    from rollout.config import load_runbook

    return load_runbook(config_path(path))


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
