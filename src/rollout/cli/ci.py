"""``rollout ci github``: the deploy and emergency-rollback workflows for GitHub Actions."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, console, load

ci_app = typer.Typer(help="CI workflows that run rollout.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ci_app, name="ci")


@ci_app.command("github")
def github_command(
    folder: Annotated[Path, typer.Option("--dir", help="Where to write them.")] = Path(
        ".github/workflows"
    ),
    force: Annotated[bool, typer.Option("--force", help="Replace existing files.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Write deploy-prod.yml (input: tag) and emergency-rollback.yml (inputs: environment,
    reason): least permissions, one run per environment, inputs never pasted into scripts.

    Example: rollout ci github --dir .github/workflows
    """
    from rollout.ci import write_workflows

    runbook = load(config)
    for path in write_workflows(runbook, folder, force=force):
        console().print(f"wrote {path}", highlight=False)
