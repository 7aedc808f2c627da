"""``rollout``: the Typer app and the one place errors become exit codes.

Imports stay lazy (each command imports what it needs when it runs) so that ``rollout --help``
answers quickly: the benchmark in benchmarks/cli_startup.py holds it under 0.3 s.
"""

from __future__ import annotations

import sys

import click
import typer

from rollout.cli import (
    admin,
    checks,
    db,
    deploy,
    fleet,
    grade,
    incidents,
    inspect,
    monitor,
    readiness,
    watch,
)

app = typer.Typer(
    name="rollout",
    help="Run a production rollout runbook: gates, deploy, verify, roll back, on the record.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
deploy.register(app)
inspect.register(app)
checks.register(app)
readiness.register(app)
admin.register(app)
fleet.register(app)
grade.register(app)
db.register(app)
incidents.register(app)
monitor.register(app)
watch.register(app)


def run() -> None:
    """Entry point: map every expected error to its exit code (DESIGN.md: 0, 1, 2, 3)."""
    from rollout.errors import RolloutError

    try:
        code = app(standalone_mode=False)
    except RolloutError as exc:
        _print_error(exc)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _print_error(exc: Exception) -> None:
    from rollout.errors import RolloutError

    message = exc.message if isinstance(exc, RolloutError) else str(exc)
    hint = exc.hint if isinstance(exc, RolloutError) else None
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"  hint: {hint}\n")
