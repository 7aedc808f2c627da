"""What a deployment's report says, section by section: outcome, timeline with stage timings,
checks with values, sign-offs, backups, monitoring, incidents."""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from rollout.model import CheckStatus, Kind
from rollout.report import deployment_charts
from rollout.report.deployment import DeploymentFacts
from rollout.report.document import Block, Document, Section, Table
from rollout.report.formats import moment, offset, seconds, size
from rollout.store.records import BackupRecord, DeploymentRecord, SampleRecord

ONE_LINE = 160  # characters of a step's output in the steps table


def document(facts: DeploymentFacts) -> Document:
    d = facts.deployment
    what = "Rollback" if d.kind is Kind.ROLLBACK else "Deployment"
    return Document(
        title=f"{what} #{d.id}: {d.app} {d.tag} to {d.env}",
        subtitle=f"{d.status.value.replace('_', ' ')}; started {moment(d.started_at)}",
        sections=(
            _outcome(facts),
            _timeline(facts),
            _checks(facts),
            _approvals(facts),
            _backups(facts),
            _monitoring(facts),
            _incidents(facts),
        ),
    )


def _name(d: DeploymentRecord) -> str:
    return f"#{d.id} {d.tag} ({d.status.value})"


def _outcome(facts: DeploymentFacts) -> Section:
    d = facts.deployment
    pairs = [
        ("outcome", d.status.value),
        ("reason", d.reason or ""),
        ("failed step", " on ".join(x for x in (d.failed_step, d.failed_host) if x)),
        ("application", d.app),
        ("environment", d.env),
        ("kind", d.kind.value),
        ("release", d.tag),
        ("previous release", d.previous_tag or ""),
        ("commit", d.commit_sha or ""),
        ("committed", moment(d.committed_at) if d.committed_at else ""),
        ("merged", moment(d.merged_at) if d.merged_at else ""),
        ("by", f"{d.actor} ({', '.join(d.roles)})" if d.roles else d.actor),
        ("started", moment(d.started_at)),
        ("finished", moment(d.finished_at)),
        ("took", seconds(d.duration)),
        ("rolls back", _name(facts.rollback_of) if facts.rollback_of else ""),
        ("rolled back by", ", ".join(_name(r) for r in facts.rolled_back_by)),
    ]
    return Section("Outcome", fields=tuple((k, v) for k, v in pairs if v))


def _timeline(facts: DeploymentFacts) -> Section:
    start = facts.deployment.started_at
    stages = Table(
        ("stage", "started", "took", "steps", "failed"),
        tuple(
            (s.phase, offset(s.started_at, start), seconds(s.duration), str(s.steps), str(s.failed))
            for s in facts.stages
        ),
        numeric=frozenset({1, 2, 3, 4}),
    )
    steps = Table(
        ("stage", "step", "host", "status", "started", "took", "output"),
        tuple(
            (
                s.phase,
                s.name,
                s.host or "",
                s.status.value,
                offset(s.started_at, start),
                seconds(s.duration),
                _first_line(s.output),
            )
            for s in facts.steps
        ),
        numeric=frozenset({4, 5}),
        status=frozenset({3}),
    )
    # Outputs longer than the table's one line, whole (as recorded: an excerpt, redacted).
    blocks = tuple(
        Block(f"{s.phase} / {s.name}" + (f" on {s.host}" if s.host else ""), s.output)
        for s in facts.steps
        if s.output.strip() != _first_line(s.output)
    )
    charts = ((deployment_charts.timeline(facts), "stages: seconds from the start"),)
    return Section(
        "Timeline", charts=charts if facts.steps else (), tables=(stages, steps), blocks=blocks
    )


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= ONE_LINE else line[: ONE_LINE - 1] + "…"


def _checks(facts: DeploymentFacts) -> Section:
    rows = tuple(
        (
            c.phase,
            c.check_id,
            c.host or "",
            c.status.value,
            c.value,
            c.threshold,
            c.evidence
            if c.status is CheckStatus.PASS
            else "; ".join(x for x in (c.evidence, c.remedy and f"fix: {c.remedy}") if x),
        )
        for c in facts.checks
    )
    table = Table(
        ("stage", "check", "host", "status", "value", "threshold", "evidence"),
        rows,
        status=frozenset({3}),
    )
    return Section(
        "Checks", tables=(table,) if rows else (), note="" if rows else "no checks recorded"
    )


def _approvals(facts: DeploymentFacts) -> Section:
    rows = tuple((a.person, a.role, a.kind, moment(a.approved_at), a.note) for a in facts.approvals)
    table = Table(("who", "role", "kind", "when", "note"), rows)
    return Section(
        "Sign-offs",
        tables=(table,) if rows else (),
        note="" if rows else f"no sign-offs recorded for {facts.deployment.tag}",
    )


def _backup_row(used: str, b: BackupRecord) -> tuple[str, ...]:
    return (
        used,
        b.kind,
        b.folder,
        b.database,
        size(b.size),
        moment(b.point_in_time),
        seconds(b.seconds),
        f"L{b.verified_level}" if b.verified_level else "not verified",
        b.dump_sha256[:12],
    )


def _backups(facts: DeploymentFacts) -> Section:
    rows = [_backup_row("taken", b) for b in facts.backups]
    if facts.restored is not None:
        rows.append(_backup_row("restored", facts.restored))
    headers = (
        "",
        "kind",
        "folder",
        "database",
        "size",
        "point in time",
        "took",
        "verified",
        "sha256",
    )
    return Section(
        "Backup",
        tables=(Table(headers, tuple(rows), numeric=frozenset({4, 6})),) if rows else (),
        note="" if rows else "no backup was taken or restored by this run",
    )


def _monitoring(facts: DeploymentFacts) -> Section:
    if not facts.samples:
        return Section("Monitoring", note="no monitoring samples recorded during this run")
    charts = deployment_charts.monitoring(facts)
    return Section("Monitoring", charts=charts, tables=(_sample_summary(facts.samples),))


def _sample_summary(samples: Sequence[SampleRecord]) -> Table:
    by_metric: dict[str, list[SampleRecord]] = {}
    for s in samples:
        by_metric.setdefault(s.metric, []).append(s)
    rows = []
    for metric, group in sorted(by_metric.items()):
        values = sorted(s.value for s in group if s.value is not None)
        rows.append(
            (
                metric,
                str(len(group)),
                str(sum(s.value is None for s in group)),
                *(_number(v) for v in _spread(values)),
                moment(group[0].at),
                moment(group[-1].at),
            )
        )
    headers = ("metric", "samples", "unreadable", "min", "median", "p95", "max", "from", "to")
    return Table(headers, tuple(rows), numeric=frozenset(range(1, 7)))


def _spread(values: Sequence[float]) -> tuple[float | None, ...]:
    if not values:
        return (None, None, None, None)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return (values[0], statistics.median(values), p95, values[-1])


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


def _incidents(facts: DeploymentFacts) -> Section:
    rows = tuple(
        (
            f"#{i.id}",
            str(i.level),
            i.status,
            moment(i.impact_start),
            moment(i.detected_at),
            moment(i.acknowledged_at) + (f" by {i.acknowledged_by}" if i.acknowledged_by else ""),
            moment(i.mitigated_at),
            moment(i.resolved_at),
            i.action or "",
            i.symptoms,
        )
        for i in facts.incidents
    )
    headers = (
        "incident", "level", "status", "impact start", "detected", "acknowledged",
        "mitigated", "resolved", "action", "symptoms",
    )  # fmt: skip
    return Section(
        "Incidents",
        tables=(Table(headers, rows, numeric=frozenset({1})),) if rows else (),
        note="" if rows else "no incident was opened during this run",
    )
