"""``rollout watch``: the runbook's third terminal, a live table of an environment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, console, load

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import timedelta

    from rich.console import Console, RenderableType

    from rollout.config import Runbook
    from rollout.monitor.view import Figure, Snapshot


def register(app: typer.Typer) -> None:
    app.command("watch")(watch_command)


def watch_command(
    env: Annotated[str, typer.Argument(help="Environment to watch.")],
    interval: Annotated[str, typer.Option("--interval", help="How often (e.g. 2s).")] = "2s",
    for_: Annotated[
        str | None, typer.Option("--for", help="Stop after this long (default: Ctrl-C).")
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="Print one table and exit.")] = False,
    config: ConfigOption = DEFAULT_CONFIG,
) -> None:
    """Per host: release, health, CPU, memory, load, p95 and error rate; the environment's p95,
    error rate and Prometheus metrics; the open incidents. Refreshed in place every interval.

    Example: rollout watch production --interval 2s
    """
    import asyncio
    import contextlib

    from rollout.cli.deploy import run_cancellable

    runbook = load(config)
    every = _duration("--interval", interval)
    until = None if for_ is None else _duration("--for", for_)
    out = console()
    # Ctrl-C (or SIGTERM) ends a watch, with code 0: there is nothing to undo
    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        run_cancellable(_watch(runbook, env, every, until, once, out))


def _duration(option: str, text: str) -> timedelta:
    from rollout.config import parse_duration
    from rollout.errors import BadInput

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise BadInput(f"{option} {text!r}: expected a duration like 2s or 30m") from exc


async def _watch(
    runbook: Runbook,
    env: str,
    every: timedelta,
    until: timedelta | None,
    once: bool,
    out: Console,
) -> None:
    import asyncio
    import contextlib

    import httpx
    from rich.live import Live

    from rollout.engine.targets import close_targets, open_targets
    from rollout.monitor.view import Watch, snapshot
    from rollout.runtimes import make_runtime
    from rollout.store import open_store

    runtime = make_runtime(runbook.runtime, runbook.release.artifact)
    targets = open_targets(runbook, env)
    live = Live(console=out, auto_refresh=False) if out.is_terminal and not once else None
    clock = asyncio.get_running_loop().time
    started = clock()
    try:
        with (
            open_store(runbook.store_url, redactor=runbook.redactor) as store,
            live if live is not None else contextlib.nullcontext(),
        ):
            async with httpx.AsyncClient() as http:
                watch = Watch(runbook, env, targets, runtime, http, store=store)
                while True:
                    tick = clock()
                    view = render(await snapshot(watch), runbook.app, every)
                    if live is not None:
                        live.update(view, refresh=True)
                    else:
                        out.print(view)
                    elapsed = clock() - started
                    if once or (
                        until is not None
                        and elapsed + every.total_seconds() > until.total_seconds()
                    ):
                        return
                    await asyncio.sleep(max(0.0, every.total_seconds() - (clock() - tick)))
    finally:
        await close_targets(targets)


# --- rendering --------------------------------------------------------------------------------

_STYLES = {"ok": "green", "near": "yellow", "past": "bold red", "unknown": "dim"}


def render(snap: Snapshot, app: str, every: timedelta) -> RenderableType:
    """The table (a row per host, a footer row for the environment), then incidents and notes."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    env = snap.environment
    intervals = f"{snap.lookback} interval{'s' if snap.lookback != 1 else ''}"
    table = Table(
        title=f"{app} / {snap.env}  {snap.at:%H:%M:%S} UTC  every {_every(every)}",
        title_justify="left",
        caption=f"p95 and errors: the app's requests over the last {intervals}",
        caption_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("host", no_wrap=True)
    releases = [len(h.release or "") for h in snap.hosts]
    table.add_column("release", no_wrap=True, min_width=max(releases, default=1))
    table.add_column("health", no_wrap=True)
    for column in ("cpu", "mem", "load", "p95", "errors", *env.metrics):
        table.add_column(column, justify="right", no_wrap=True)
    for h in snap.hosts:
        health = {True: "[green]up[/]", False: "[bold red]down[/]", None: "[dim]?[/]"}[h.health]
        table.add_row(
            h.name,
            h.release or "[dim]-[/]",
            health,
            _cell(h.cpu_percent, _percent),
            _cell(h.memory_percent, _percent),
            _cell(h.load1, lambda v: f"{v:.2f}"),
            _cell(h.p95_seconds, _seconds),
            _cell(h.error_rate, lambda v: _percent(100 * v)),
            *("" for _ in env.metrics),
        )
    table.add_section()
    table.add_row(
        "[bold]all[/]",
        f"{len(snap.hosts)} host{'s' if len(snap.hosts) != 1 else ''}",
        "",
        "",
        "",
        "",
        _cell(env.p95_seconds, _seconds),
        _cell(env.error_rate, lambda v: _percent(100 * v)),
        *(_cell(figure, lambda v: f"{v:.4g}") for figure in env.metrics.values()),
    )
    lines: list[RenderableType] = [table]
    if snap.incidents:
        for i in snap.incidents:
            ack = (
                f"acknowledged by {i.acknowledged_by}"
                if i.acknowledged
                else "[red]not acknowledged[/]"
            )
            colour = "red" if i.level >= 2 else "yellow"
            lines.append(
                Text.from_markup(
                    f"[{colour}]incident #{i.id} level {i.level} ({i.title})[/] {i.status},"
                    f" {_age(i.age.total_seconds())} old, {ack}: {_escape(i.symptoms)}"
                )
            )
    else:
        lines.append(Text("no open incidents", style="green"))
    notes = [f"{h.name}: {n}" for h in snap.hosts for n in h.notes] + list(env.notes)
    lines += [Text(note, style="dim") for note in notes]
    return Group(*lines)


def _cell(figure: Figure, shown: Callable[[float], str]) -> str:
    if figure.value is None:
        return "[dim]n/a[/]"
    text = shown(figure.value)
    style = _STYLES.get(figure.standing.value)
    return f"[{style}]{text}[/]" if style else text


def _percent(value: float) -> str:
    return f"{value:.1f}%" if value < 99.95 else f"{value:.0f}%"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _every(every: timedelta) -> str:
    seconds = every.total_seconds()
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:g}s"


def _age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m {seconds % 60:.0f}s"
    return f"{seconds // 3600:.0f}h {seconds % 3600 // 60:.0f}m"


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
