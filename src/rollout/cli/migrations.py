"""``rollout db plan`` and ``rollout db migrate``: the app's schema migrations, linted and
judged before anything runs, then applied one transaction at a time under a lock."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from rollout.cli.common import DEFAULT_CONFIG, ConfigOption, JsonOption, console, load, print_json

if TYPE_CHECKING:
    from rollout.database.migrate import MigrationPlan, MigrationStep


def register(db_app: typer.Typer) -> None:
    db_app.command("plan")(plan_command)
    db_app.command("migrate")(migrate_command)


EnvArgument = Annotated[str, typer.Argument(help="Environment from rollout.yml.")]
AllowContract = Annotated[
    bool,
    typer.Option(
        "--allow-contract",
        help="Allow contract migrations (drop, rename, type change): rolling back then needs a restore.",
    ),
]


def plan_command(
    env: EnvArgument,
    allow_contract: AllowContract = False,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Pending migrations, their lint findings and kinds, and the rollback verdict; changes nothing.

    Exit 1 when a lint error or a refused contract migration is present.

    Example: rollout db plan production
    """
    from rollout.database.migrate import MigrationTarget, plan_migrations

    target = MigrationTarget.of(load(config), env)
    plan = plan_migrations(target, allow_contract=allow_contract or None)
    if as_json:
        print_json(plan_json(plan))
    else:
        show_plan(plan, f"migrations of {env}")
    if not plan.ok:
        raise typer.Exit(1)


def migrate_command(
    env: EnvArgument,
    allow_contract: AllowContract = False,
    config: ConfigOption = DEFAULT_CONFIG,
    as_json: JsonOption = False,
) -> None:
    """Apply the pending migrations: one at a time, under a lock, with lock timeouts retried.

    Contract migrations are refused unless --allow-contract (or migrations.allow_contract).

    Example: rollout db migrate staging
    """
    from rollout.database.migrate import MigrationTarget, apply_migrations, plan_migrations

    target = MigrationTarget.of(load(config), env)
    plan = plan_migrations(target, allow_contract=allow_contract or None)
    steps: list[MigrationStep] = []
    out = console(stderr=as_json)
    if not as_json:
        show_plan(plan, f"migrations of {env}")

    def on_step(step: MigrationStep) -> None:
        steps.append(step)
        out.print(_step_line(step))

    try:
        result = apply_migrations(target, plan, on_step=on_step)
    finally:
        if as_json:
            print_json({"plan": plan_json(plan), "steps": [_step_json(s) for s in steps]})
    if not as_json:
        out.print(f"database at {result.head or 'nothing applied'}; {len(result.applied)} applied")


_SEVERITY = {"error": "red", "warning": "yellow", "info": "dim"}
_KIND = {"expand": "green", "data": "cyan", "non-transactional": "yellow", "contract": "red"}


def show_plan(plan: MigrationPlan, title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    out.print(
        f"{title} ({plan.kind}): database at {plan.current or 'nothing applied'}, head {plan.head}"
    )
    if not plan.pending:
        out.print("no pending migration")
    for migration in plan.pending:
        style = _KIND[migration.kind.value]
        out.print(
            f"  {escape(migration.id)}  [{style}]{migration.kind.value}[/]  {escape(migration.name)}"
        )
    findings = [(m.id, f) for m in plan.pending for f in m.lint.findings]
    if findings:
        table = Table(title="findings", title_justify="left")
        for column in ("migration", "severity", "rule"):
            table.add_column(column, no_wrap=True)
        table.add_column("statement", overflow="ellipsis", no_wrap=True, max_width=40)
        table.add_column("message / fix", overflow="fold")
        for migration_id, f in findings:
            table.add_row(
                escape(migration_id),
                f"[{_SEVERITY[f.severity.value]}]{f.severity.value}[/]",
                f.rule,
                escape(" ".join(f.statement.split())),
                escape(f"{f.message}\nfix: {f.hint}"),
            )
        out.print(table)
    for name in plan.modified:
        out.print(f"[red]applied migration {escape(name)} changed since it was applied[/]")
    for migration in plan.refused:
        out.print(
            f"[red]refused[/]: {escape(migration.id)} is a contract migration (--allow-contract)"
        )
    ok = "[green]yes[/]" if plan.verdict.previous_release_compatible else "[red]no[/]"
    out.print(f"previous release runs on the new schema: {ok}. {escape(plan.verdict.summary)}")


def plan_json(plan: MigrationPlan) -> dict[str, Any]:
    return {
        "ok": plan.ok,
        "kind": plan.kind,
        "current": plan.current,
        "head": plan.head,
        "allow_contract": plan.allow_contract,
        "modified": list(plan.modified),
        "refused": [m.id for m in plan.refused],
        "verdict": {
            "previous_release_compatible": plan.verdict.previous_release_compatible,
            "rollback_needs_restore": plan.verdict.rollback_needs_restore,
            "summary": plan.verdict.summary,
        },
        "pending": [
            {
                "id": m.id,
                "name": m.name,
                "kind": m.kind.value,
                "sql": m.sql,
                "statements": [
                    {
                        "sql": s.sql,
                        "kind": s.kind.value,
                        "transactional": s.transactional,
                        "reason": s.reason,
                    }
                    for s in m.lint.statements
                ],
                "findings": [
                    {
                        "rule": f.rule,
                        "severity": f.severity.value,
                        "statement": f.statement,
                        "message": f.message,
                        "hint": f.hint,
                    }
                    for f in m.lint.findings
                ],
            }
            for m in plan.pending
        ],
    }


def _step_json(step: MigrationStep) -> dict[str, Any]:
    return {
        "migration": step.migration,
        "name": step.name,
        "kind": step.kind.value,
        "status": step.status.value,
        "attempt": step.attempt,
        "started_at": step.started_at.isoformat(),
        "finished_at": step.finished_at.isoformat(),
        "detail": step.detail,
    }


def _step_line(step: MigrationStep) -> str:
    from rich.markup import escape

    style = {"applied": "green", "retrying": "yellow"}.get(step.status.value, "red")
    seconds = (step.finished_at - step.started_at).total_seconds()
    detail = f": {escape(step.detail)}" if step.detail else ""
    return (
        f"  {escape(step.migration)} [{style}]{step.status.value}[/] "
        f"(try {step.attempt}, {seconds:.1f} s){detail}"
    )
