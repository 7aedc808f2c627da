"""Housekeeping commands: init, config validate, lock, audit, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rollout.cli.common import (
    DEFAULT_CONFIG,
    ConfigOption,
    JsonOption,
    config_path,
    console,
    load,
    print_json,
)

config_app = typer.Typer(help="Check a runbook file.", no_args_is_help=True)
lock_app = typer.Typer(help="See or release an environment's deploy lock.", no_args_is_help=True)
audit_app = typer.Typer(help="The append-only audit trail.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("init")(init_command)
    app.add_typer(config_app, name="config")
    app.add_typer(lock_app, name="lock")
    app.add_typer(audit_app, name="audit")
    app.command("demo")(demo_command)


def init_command(
    path: Annotated[
        Path, typer.Argument(help="Where to write the starter runbook.")
    ] = DEFAULT_CONFIG,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter rollout.yml.

    Example: rollout init
    """
    from rollout.config import write_starter

    write_starter(path, force=force)
    console().print(
        f"wrote {path}; edit it, then run: rollout config validate --config {path}", highlight=False
    )


@config_app.command("validate")
def validate_command(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Load and check a runbook; print every problem with its line.

    Example: rollout config validate --config rollout.yml
    """
    runbook = load(config)
    envs = ", ".join(
        f"{name} ({len(env.hosts)} hosts)" for name, env in runbook.environments.items()
    )
    console().print(
        f"{config_path(config)}: ok: app {runbook.app}; environments: {envs}", highlight=False
    )


@lock_app.command("status")
def lock_status_command(
    env: Annotated[str, typer.Argument(help="Environment.")],
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Who holds ENV's deploy lock, since when, for which tag.

    Example: rollout lock status production
    """
    from rollout.engine.lock import holder_alive
    from rollout.store import open_store

    runbook = load(config)
    runbook.environment(env)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        info = store.lock(env)
    if as_json:
        print_json(
            None
            if info is None
            else {
                "holder": info.holder,
                "machine": info.machine,
                "pid": info.pid,
                "since": info.acquired_at,
                "tag": info.tag,
                "message": info.message,
                "alive": holder_alive(info),
            }
        )
        return
    if info is None:
        console().print(f"{env}: unlocked")
        return
    alive = {True: "running", False: "gone", None: "unknown (other machine)"}[holder_alive(info)]
    console().print(
        f"{env}: locked by {info.holder} pid {info.pid} ({alive}) since {info.acquired_at:%Y-%m-%d %H:%M:%S} UTC"
        f" for {info.tag or '-'}" + (f": {info.message}" if info.message else ""),
        highlight=False,
    )


@lock_app.command("release")
def lock_release_command(
    env: Annotated[str, typer.Argument(help="Environment.")],
    force: Annotated[
        bool, typer.Option("--force", help="Release even if the holder may still run.")
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Release ENV's lock left by a deploy that died; a live holder needs --force.

    Example: rollout lock release production
    """
    from rollout.engine import lock
    from rollout.store import open_store

    runbook = load(config)
    runbook.environment(env)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        removed = lock.release(store, env, force=force)
        if removed is not None:
            store.append_audit(
                actor=lock.whoami(),
                action="lock.released",
                subject=f"env:{env}",
                details={"holder": removed.holder, "pid": removed.pid, "forced": force},
            )
    console().print(
        f"{env}: "
        + ("was not locked" if removed is None else f"released lock of {removed.holder}"),
        highlight=False,
    )


@audit_app.command("verify")
def audit_verify_command(
    config: ConfigOption = DEFAULT_CONFIG, as_json: JsonOption = False
) -> None:
    """Walk the audit chain; exit 1 if a row was edited or deleted.

    Example: rollout audit verify
    """
    from rollout.store import open_store

    runbook = load(config)
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        report = store.verify_audit()
    if as_json:
        print_json(
            {"ok": report.ok, "rows": report.rows, "head": report.head, "problems": report.problems}
        )
    else:
        out = console()
        for problem in report.problems:
            out.print(f"[red]✗[/] {problem}", highlight=False)
        verdict = "[green]intact[/]" if report.ok else "[red]TAMPERED[/]"
        out.print(
            f"audit: {report.rows} rows, chain {verdict}, head {report.head[:16]}", highlight=False
        )
    if not report.ok:
        raise typer.Exit(1)


def demo_command(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="Sandbox folder (default: a new temp folder).")
    ] = None,
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="Leave the demo apps running.")
    ] = False,
) -> None:
    """Build a local sandbox and run v1, v2 and a failing v3 through the whole runbook.

    Example: rollout demo --dir /tmp/rollout-demo
    """
    from rollout.sandbox.demo import run_demo

    ok = run_demo(directory, keep_running=keep_running, console=console())
    if not ok:
        raise typer.Exit(1)
