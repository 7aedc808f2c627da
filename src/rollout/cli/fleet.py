"""Commands over a fleet of hosts: ``hosts trust``, ``exec`` and ``logs``."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load, print_json
from rollout.cli.quick import show, show_code

hosts_app = typer.Typer(
    help="The environment's hosts: record their SSH keys, close held connections.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(hosts_app, name="hosts")
    app.command("exec")(exec_command)
    app.command("logs")(logs_command)


@hosts_app.command("trust")
def trust_command(
    env: Annotated[str, typer.Argument(help="Environment whose SSH hosts to trust.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Record without asking.")] = False,
    replace: Annotated[bool, typer.Option("--replace", help="Replace keys that changed.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Show each SSH host's key fingerprint and record it in known_hosts, on purpose.

    Example: rollout hosts trust production
    """
    from rollout.cli.deploy import run_cancellable
    from rollout.hosts import trust
    from rollout.hosts.ssh import known_hosts_path

    runbook = load(config)
    specs = [h for h in runbook.environment(env).hosts if h.kind == "ssh"]
    known = known_hosts_path(runbook.ssh, runbook.config_dir)

    async def gather() -> list[trust.Offered]:
        return [await trust.offered_key(spec, known) for spec in specs]

    offers = run_cancellable(gather())
    out = console()
    for offer in offers:
        style = {"new": "yellow", "known": "green", "changed": "bold red"}[offer.status]
        out.print(
            f"{offer.host:<16} {offer.where:<24} {offer.fingerprint}  [{style}]{offer.status}[/]",
            highlight=False,
        )
    pending = [o for o in offers if o.status == "new" or (o.status == "changed" and replace)]
    changed_left = any(o.status == "changed" for o in offers) and not replace
    if pending and (yes or typer.confirm(f"record {len(pending)} key(s) in {known}?")):
        written = trust.record(known, offers, replace=replace)
        out.print(f"recorded {len(written)} key(s) in {known}", highlight=False)
    elif not pending:
        out.print(f"nothing to record in {known}", highlight=False)
    if changed_left:
        out.print(
            "[red]a key changed and was left as it is: check it, then run again with --replace[/]"
        )
        raise typer.Exit(1)


@hosts_app.command("disconnect")
def disconnect_command(config: ConfigOption = DEFAULT_CONFIG) -> None:
    """Close the SSH connections kept open by ssh.persist and end their holder process.

    Example: rollout hosts disconnect
    """
    import asyncio

    from rollout.hosts import mux

    runbook = load(config)
    directory = mux.control_dir(runbook.ssh, runbook.config_dir)
    closed = asyncio.run(mux.disconnect(directory))
    console().print(
        "closed the held SSH connections"
        if closed
        else f"no connection holder runs in {directory}",
        highlight=False,
    )


def exec_command(
    env: Annotated[str, typer.Argument(help="Environment.")],
    command: Annotated[list[str], typer.Argument(help="The command and its arguments, after --.")],
    role: Annotated[str | None, typer.Option("--role", help="Only hosts with this role.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Run one command on every host (or every host with --role), output grouped per host.

    Example: rollout exec production --role web -- df -h /
    """
    from rollout.cli.deploy import run_cancellable
    from rollout.engine import fleet
    from rollout.engine.targets import close_targets, open_targets

    runbook = load(config)
    targets = open_targets(runbook, env)

    async def go() -> list[fleet.HostOutput]:
        try:
            chosen = fleet.select(runbook, env, targets, role)
            return await fleet.run_everywhere(
                chosen, command, parallel=runbook.environment(env).parallel
            )
        finally:
            await close_targets(targets)

    results = run_cancellable(go())
    shown = [{**r.__dict__, "output": runbook.redactor.redact(r.output)} for r in results]
    if as_json:
        print_json(shown)
        code = show_code(shown)
    else:  # the same lines and exit code as when the connection holder answers (cli/quick.py)
        code = show(shown, tty=sys.stdout.isatty())
    if code:
        raise typer.Exit(code)


def logs_command(
    env: Annotated[str, typer.Argument(help="Environment.")],
    service: Annotated[
        str | None, typer.Option("--service", help="web or db (compose services).")
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    tail: Annotated[int, typer.Option("--tail", "-n", help="Lines of history per host.")] = 50,
    role: Annotated[str | None, typer.Option("--role", help="Only hosts with this role.")] = None,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """The app's log from every host, each line prefixed with its host (the runbook's log terminals).

    Example: rollout logs production --follow --tail 20
    """
    from rich.markup import escape

    from rollout.cli.deploy import run_cancellable
    from rollout.engine import fleet
    from rollout.engine.targets import close_targets, open_targets

    runbook = load(config)
    targets = open_targets(runbook, env)
    out = console()

    async def go() -> None:
        try:
            chosen = fleet.select(runbook, env, targets, role)
            async for host, line in fleet.follow_logs(
                runbook, chosen, service=service, tail=tail, follow=follow
            ):
                out.print(
                    f"[cyan]{host}[/] | {escape(runbook.redactor.redact(line))}", highlight=False
                )
        finally:
            await close_targets(targets)

    run_cancellable(go())
