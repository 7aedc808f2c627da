"""``rollout db``: the app database's backups, their verification, retention and restore."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load, print_json

if TYPE_CHECKING:
    from rollout.database.verify import Verification

db_app = typer.Typer(
    help="The app's database: verified backups, migrations, restore.", no_args_is_help=True
)

LevelOption = Annotated[
    int | None,
    typer.Option(
        "--level",
        min=0,
        max=3,
        help="Verify to this level (default database.verify_level; 0: none).",
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db")
    try:
        from rollout.cli import migrations
    except ImportError:  # the migration commands come with their module
        return
    migrations.register(db_app)


@db_app.command("backup")
def backup_command(
    env: Annotated[str, typer.Argument(help="Environment whose database to back up.")],
    level: LevelOption = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Take a consistent backup with a manifest, record it, and verify it.

    Example: rollout db backup production --level 3
    """
    from rollout.database.operations import backup_and_verify
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        done = backup_and_verify(runbook, store, env, kind="manual", level=level)
    manifest = done.taken.manifest
    if as_json:
        print_json(
            {
                "folder": str(done.taken.folder),
                "point_in_time": manifest.started_at,
                "seconds": round(done.taken.seconds, 3),
                "files": [f.__dict__ for f in manifest.files],
                "verification": _verification_json(done.verification),
            }
        )
    else:
        out = console()
        size = sum(f.size for f in manifest.files)
        out.print(
            f"backup {done.taken.folder.name}: {manifest.database} at {manifest.started_at}"
            f" ({_size(size)}, {len(manifest.fingerprint.tables)} tables, {done.taken.seconds:.1f} s)"
        )
        out.print(f"  in {done.taken.folder}")
        if done.verification is not None:
            _print_verification(done.verification)
    if done.verification is not None and done.verification.exit_code:
        raise typer.Exit(done.verification.exit_code)


@db_app.command("verify")
def verify_command(
    backup: Annotated[str, typer.Argument(help="The backup folder (or its name, with --env).")],
    level: Annotated[
        int, typer.Option("--level", min=1, max=3, help="1 bytes, 2 archive, 3 restore.")
    ] = 3,
    env: Annotated[
        str | None, typer.Option("--env", help="The environment whose server L3 restores into.")
    ] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Verify a backup: exit 0 verified, 1 the backup is bad, 3 it could not be decided.

    Example: rollout db verify production-20261128T101500000000Z-manual --env production --level 3
    """
    from rollout.database.operations import resolve_backup, verify_recorded
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        folder = resolve_backup(runbook, store, env, backup)
        result = verify_recorded(runbook, store, env, folder, level)
    if as_json:
        print_json(_verification_json(result))
    else:
        console().print(f"{folder.name}")
        _print_verification(result)
    raise typer.Exit(result.exit_code)


@db_app.command("restore")
def restore_command(
    env: Annotated[str, typer.Argument(help="Environment whose database to restore.")],
    backup: Annotated[str, typer.Argument(help="The backup folder or its name (rollout db list).")],
    reason: Annotated[str | None, typer.Option("--reason", help="Why; kept in the record.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Restore a verified backup over ENV's database: stop the app, take a safety backup,
    restore into a new database, compare, swap (the old one is kept), start the app again.

    Example: rollout db restore production production-20261128T101500000000Z-pre-deploy
    """
    import asyncio

    from rollout.cli.deploy import _finish, _sinks, run_cancellable
    from rollout.database.operations import resolve_backup
    from rollout.engine.operations import current_release, rollback
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        folder = resolve_backup(runbook, store, env, backup)
    running = asyncio.run(current_release(runbook, env))
    report = run_cancellable(
        rollback(
            runbook,
            env,
            to=running,
            reason=reason or f"database restore of {folder.name}",
            database=folder,
            sinks=_sinks(as_json, runbook.redactor),
        )
    )
    _finish(report, as_json)


@db_app.command("list")
def list_command(
    env: Annotated[str, typer.Argument(help="Environment.")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """The environment's backups, newest first, with their verified level.

    Example: rollout db list production
    """
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        records = store.backups(env=env)
    if as_json:
        print_json([{k: v for k, v in r.__dict__.items() if k != "manifest"} for r in records])
        return
    from rich.table import Table

    table = Table("backup", "kind", "point in time", "size", "verified")
    for r in records:
        table.add_row(
            Path(r.folder).name,
            r.kind,
            r.point_in_time.isoformat(timespec="seconds"),
            _size(r.size),
            f"L{r.verified_level}" if r.verified_level else "no",
        )
    console().print(table)


@db_app.command("prune")
def prune_command(
    env: Annotated[str, typer.Argument(help="Environment.")],
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Remove backups beyond database.keep or older than database.max_age (never the newest
    verified one).

    Example: rollout db prune production
    """
    from rollout.database.operations import prune
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        removed = prune(runbook, store, env)
    out = console()
    for record in removed:
        out.print(f"removed {Path(record.folder).name}")
    out.print(f"{len(removed)} backup(s) removed")


def _print_verification(result: Verification) -> None:
    out = console()
    for check in result.levels:
        colour = {"verified": "green", "bad": "red", "undecided": "yellow"}[check.status]
        out.print(
            f"  L{check.level} [{colour}]{check.status}[/] {check.detail} [dim]{check.seconds:.2f} s[/]"
        )
    colour = {"verified": "green", "bad": "red", "undecided": "yellow"}[result.status]
    out.print(f"[bold {colour}]{result.summary}[/]")


def _verification_json(result: Verification | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "status": result.status,
        "reached": result.reached,
        "asked": result.asked,
        "levels": [c.__dict__ for c in result.levels],
    }


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
