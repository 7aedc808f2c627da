"""``rollout``: the Typer app and the one place errors become exit codes.

Imports stay lazy (each command imports what it needs when it runs) so that ``rollout --help``
answers quickly: the benchmark in benchmarks/cli_startup.py holds it under 0.3 s.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import typer


def modules() -> tuple[ModuleType, ...]:
    """The command modules, each with ``register(app)``; imported only when a command is parsed
    (``run`` first tries the quick path, cli/quick.py, which needs none of them)."""
    from rollout.cli import (
        admin,
        checks,
        ci,
        db,
        deploy,
        fleet,
        followups,
        grade,
        incidents,
        inspect,
        kpi,
        monitor,
        postmortem,
        readiness,
        report,
        watch,
        web,
    )

    return (
        deploy,
        inspect,
        checks,
        readiness,
        admin,
        fleet,
        grade,
        db,
        incidents,
        kpi,
        report,
        followups,
        postmortem,
        monitor,
        watch,
        ci,
        web,
    )


HELP = "Run a production rollout runbook: gates, deploy, verify, roll back, on the record."


def build(argv: list[str]) -> typer.Typer:
    """The Typer app for this invocation.

    Typer turns every registered command into a click command, inspecting its signature, on
    each run; with forty commands that is a good part of a quick command's start. So only the
    module of the command asked for is registered (click's "lazily loaded subcommands"); with
    no command, or one not known, all of them, for the help and the error.
    """
    import typer

    app = typer.Typer(
        name="rollout",
        help=HELP,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )

    @app.callback()
    def root() -> None:  # a group even with one command registered: `rollout exec ...`
        pass

    word = next((a for a in argv if not a.startswith("-")), None)
    every = modules()
    chosen = [m for m in every if word is not None and word in _command_names(m)]
    for module in chosen or every:
        module.register(app)
    return app


def _command_names(module: object) -> set[str]:
    import typer
    from typer.main import get_command_name

    scratch = typer.Typer()
    module.register(scratch)  # type: ignore[attr-defined]
    names = {
        c.name or get_command_name(c.callback.__name__)
        for c in scratch.registered_commands
        if c.callback
    }
    return names | {g.name for g in scratch.registered_groups if g.name}


def run() -> None:
    """Entry point: map every expected error to its exit code (DESIGN.md: 0, 1, 2, 3)."""
    from rollout.cli import quick

    try:
        answered = quick.attempt(sys.argv[1:])
    except KeyboardInterrupt:
        sys.exit(130)
    if answered is not None:
        sys.exit(answered)

    import typer

    from rollout.errors import RolloutError

    try:
        code = build(sys.argv[1:])(standalone_mode=False)
    except RolloutError as exc:
        _print_error(exc)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.TyperException as exc:  # a usage error: unknown command, bad option (exit 2)
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            sys.stderr.write(f"error: {exc}\n")
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


def _print_error(exc: Exception) -> None:
    from rollout.errors import RolloutError

    message = exc.message if isinstance(exc, RolloutError) else str(exc)
    hint = exc.hint if isinstance(exc, RolloutError) else None
    sys.stderr.write(f"error: {message}\n")
    if hint:
        sys.stderr.write(f"  hint: {hint}\n")
