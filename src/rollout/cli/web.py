"""``rollout web``: serve the read-only dashboard of the runbook's records."""

from __future__ import annotations

from typing import Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, console, load


def register(app: typer.Typer) -> None:
    app.command("web")(web_command)


def web_command(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (loopback unless --public).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    public: Annotated[
        bool,
        typer.Option("--public", help="Allow a non-loopback --host: the dashboard has no login."),
    ] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Serve the dashboard: overview, deployments (live while running), incidents, KPIs, status.

    Example: rollout web --port 8000   (then open http://127.0.0.1:8000/)
    """
    from rollout.errors import BadInput
    from rollout.web import bind, create_app, serve
    from rollout.web.app import LOOPBACK_NAMES
    from rollout.web.serve import is_loopback

    if not public and not is_loopback(host):
        raise BadInput(
            f"--host {host}: the dashboard has no login yet, so it listens on loopback only",
            hint="use --host 127.0.0.1, or add --public to serve it to the network on purpose",
        )
    if not 0 <= port <= 65535:
        raise BadInput(f"--port {port}: not a port number (0-65535)")
    runbook = load(config)
    # Loopback: only requests naming this server (DNS rebinding, web/app.py KnownHost).
    app = create_app(runbook, hosts=None if public else (*LOOPBACK_NAMES, host))
    sock = bind(host, port)
    where = f"[{host}]" if ":" in host else host
    console().print(
        f"dashboard of {runbook.app} at http://{where}:{sock.getsockname()[1]}/ (Ctrl-C stops it)",
        highlight=False,
        markup=False,
    )
    serve(app, sock)
