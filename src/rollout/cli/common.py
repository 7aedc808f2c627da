"""What every command shares: the --config option, loading the runbook, printing, JSON."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from datetime import timedelta

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


def kpi_scope(runbook: Runbook, env: str | None, since: str) -> tuple[str, timedelta]:
    """The environment (default: production, else the first) and the window a KPI command reads;
    bad input, the runbook's KPI targets included, is said before the store is opened."""
    from rollout.config import parse_duration
    from rollout.errors import BadInput
    from rollout.kpi.dora import frequency_target

    name = env or ("production" if "production" in runbook.environments else None)
    name = name or next(iter(runbook.environments))
    runbook.environment(name)  # an unknown name is bad input, with the known ones
    try:
        window = parse_duration(since)
    except ValueError as exc:
        raise BadInput(f"--since {since!r}: {exc}", hint="e.g. --since 90d or 12w") from exc
    try:
        frequency_target(runbook.kpi.targets.deployment_frequency)
    except ValueError as exc:
        raise BadInput(f"rollout.yml: kpi.targets.{exc}") from exc
    return name, window


def console(*, stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
