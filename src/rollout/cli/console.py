"""The Rich console view of a run: phases, steps per host with times, a deploy progress bar,
and the stage-timings summary the runbook lists at the end ("pre-deployment checks 2 min, ...")."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from rollout.engine.events import (
    CheckRecorded,
    Event,
    Note,
    PhaseFinished,
    PhaseStarted,
    RunFinished,
    RunStarted,
    StepFinished,
)
from rollout.model import CheckStatus, Outcome, Phase, StepStatus
from rollout.redact import Redactor

_MARK = {
    StepStatus.SUCCEEDED: "[green]✓[/]",
    StepStatus.FAILED: "[red]✗[/]",
    StepStatus.SKIPPED: "[dim]-[/]",
}
_CHECK = {
    CheckStatus.PASS: "[green]pass[/]",
    CheckStatus.WARN: "[yellow]warn[/]",
    CheckStatus.FAIL: "[red]fail[/]",
    CheckStatus.SKIP: "[dim]skip[/]",
}
_OUTCOME = {
    Outcome.SUCCEEDED: "[bold green]succeeded[/]",
    Outcome.ROLLED_BACK: "[bold yellow]rolled back[/]",
    Outcome.FAILED: "[bold red]failed[/]",
    Outcome.ABORTED: "[bold red]aborted[/]",
    Outcome.RUNNING: "running",
}
_PROGRESS_PHASES = (Phase.DEPLOY, Phase.ROLLBACK)


def outcome_text(outcome: Outcome) -> str:
    return _OUTCOME[outcome]


class ConsoleSink:
    """Prints a run as it happens; secrets are redacted before anything reaches the terminal."""

    def __init__(self, console: Console, redactor: Redactor) -> None:
        self.console = console
        self.redactor = redactor
        self.progress: Progress | None = None
        self.task: object | None = None
        self.total = 0
        self.title = ""

    def _print(self, text: str, *, one_line: bool = False) -> None:
        # One line per step keeps the log scannable; the full output is in the records.
        # Redaction markers look like Rich markup ("[secret:NAME]"): escape them to show them.
        self.console.print(
            self.redactor.redact(text).replace("[secret:", "\\[secret:"),
            highlight=False,
            no_wrap=one_line,
            overflow="ellipsis" if one_line else None,
        )

    def emit(self, event: Event) -> None:
        match event:
            case RunStarted():
                self.total = event.deploy_steps
                self.title = f"{event.kind} {event.tag} to {event.env}"
                self._print(
                    f"[bold]{self.title}[/] on {', '.join(event.hosts)}  [dim]deployment #{event.deployment_id}[/]"
                )
            case PhaseStarted(phase=phase):
                self._print(f"[bold cyan]▶ {phase}[/]")
                if phase in _PROGRESS_PHASES and self.console.is_terminal:
                    self._start_progress(phase)
            case StepFinished(step=step, status=status, seconds=seconds, output=output):
                host = step.host or ""
                text = output.strip()
                line = (
                    (text.splitlines()[0] if status is StepStatus.FAILED else text.splitlines()[-1])
                    if text
                    else ""
                )
                style = "red" if status is StepStatus.FAILED else "dim"
                self._print(
                    f"  {_MARK.get(status, '?')} {step.name:<18} {host:<10} {seconds:6.2f} s  [{style}]{_escape(line)}[/]",
                    one_line=True,
                )
                if status is StepStatus.FAILED:  # what went wrong, e.g. the app's last log lines
                    for extra in text.splitlines()[1:][-12:]:
                        self._print(f"      [dim]{_escape(extra)}[/]", one_line=True)
                if self.progress is not None and step.phase in _PROGRESS_PHASES:
                    self.progress.advance(self.task)  # type: ignore[arg-type]
            case CheckRecorded(result=result) if result.status in (
                CheckStatus.WARN,
                CheckStatus.SKIP,
            ):
                self._print(
                    f"      {_CHECK[result.status]} {result.id}: {_escape(result.evidence or result.value)}",
                    one_line=True,
                )
            case CheckRecorded(result=result) if result.failed and result.remedy:
                self._print(f"      [dim]→ {_escape(result.remedy)}[/]", one_line=True)
            case PhaseFinished(phase=phase):
                if phase in _PROGRESS_PHASES:
                    self._stop_progress()
            case Note(message=message, level=level):
                style = {"warn": "yellow", "error": "red"}.get(level, "dim")
                self._print(f"  [{style}]{_escape(message)}[/]")
            case RunFinished():
                self._stop_progress()
                self._summary(event)
            case _:
                pass

    def _start_progress(self, phase: Phase) -> None:
        self.progress = Progress(
            TextColumn(f"  {phase}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.task = self.progress.add_task(str(phase), total=self.total)
        self.progress.start()

    def _stop_progress(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _summary(self, event: RunFinished) -> None:
        table = Table(title="stage timings", show_edge=False, title_justify="left")
        table.add_column("stage")
        table.add_column("time", justify="right")
        for phase, seconds in event.phase_seconds:
            table.add_row(str(phase), human_seconds(seconds))
        table.add_row("[bold]total[/]", f"[bold]{human_seconds(event.seconds)}[/]")
        self.console.print(table)
        line = f"{self.title}: {outcome_text(event.outcome)}"
        if event.reason:
            # An operator's Ctrl-C has a reason but no failed step.
            where = (f" at {event.failed_step}" if event.failed_step else "") + (
                f" on {event.failed_host}" if event.failed_host else ""
            )
            line += f"{where}: {_escape(event.reason.splitlines()[0])}"
        self._print(line)


def human_seconds(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def _escape(text: str) -> str:
    return text.replace("[", "\\[")
