"""The notify sink: turns the runner's events into messages for people and status page updates.

``emit`` is called synchronously by the runner, so it only queues: one worker task sends the
queued messages in order (each to its URLs at once) while the run goes on, and ``flush`` waits
for the queue to drain, up to a deadline, before the process may exit. A message that could not
be sent is reported through ``report`` (a warning ``Note``), never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rollout.engine.events import (
    Event,
    Note,
    PhaseFinished,
    RunFinished,
    RunStarted,
    StepFinished,
)
from rollout.model import Kind, Outcome, Phase, StepStatus, utcnow
from rollout.notify.channels import Channel, Failure, Level, Message, Notifier
from rollout.notify.status_page import (
    CurrentIncident,
    Maintenance,
    Status,
    StatusBoard,
    status_for_level,
)

if TYPE_CHECKING:
    from rollout.config import Runbook
    from rollout.store import Store
    from rollout.store.records import IncidentRecord

log = logging.getLogger(__name__)

FLUSH_DEADLINE = 30.0
# The monitoring window's notes (monitor/session.py, Recorder).
_OPENED = re.compile(r"incident #(\d+) level (\d+) \([^)]*\): (.*)", re.S)
_RAISED = re.compile(r"incident #(\d+) raised to level (\d+): (.*)", re.S)
_ESCALATED = re.compile(r"incident #(\d+) .*escalated to (.+?) \(", re.S)
_MITIGATED = re.compile(r"incident #(\d+) mitigated")
_LIVE_PHASES = (Phase.DEPLOY, Phase.VERIFY, Phase.MONITOR)  # failing here touched production

DEP, INC, PAGE = Channel.DEPLOYMENTS, Channel.INCIDENTS, Channel.PAGING


class NotifySink:
    """Queues a message at each boundary worth telling people and keeps the status page."""

    def __init__(
        self,
        notifier: Notifier,
        board: StatusBoard | None,
        *,
        app: str,
        env: str,
        history: Callable[[], Sequence[IncidentRecord]] = list,
        deadline: float = FLUSH_DEADLINE,
    ) -> None:
        self.notifier = notifier
        self.board = board
        self.app = app
        self.env = env
        self.history = history
        self.deadline = deadline
        self.report: Callable[[Failure], None] = lambda f: log.warning("%s", f)
        self.failures: list[Failure] = []
        self.tag = ""
        self.kind = Kind.DEPLOY
        self._failed_steps: list[str] = []
        self._put_back_failed = False
        self._queue: asyncio.Queue[Message] | None = None
        self._pending: list[Message] = []
        self._worker: asyncio.Task[None] | None = None
        self._sending: Message | None = None

    def report_to(self, emit: Callable[[Event], None]) -> None:
        """Failures become warning notes on the run's own events (console, event log)."""
        self.report = lambda f: emit(Note(message=str(f), level="warn"))

    # --- events ----------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        for message in self._messages(event):
            self._enqueue(message)
        if self.board is not None and self._board(event, self.board):
            self.board.publish(self.history())

    def _messages(self, event: Event) -> list[Message]:
        match event:
            case RunStarted():
                return [self._started(event)]
            case StepFinished(step=step, status=StepStatus.FAILED, output=output):
                self._failed_steps.append(f"{step}: {output}".strip().rstrip(":"))
            case PhaseFinished():
                return self._phase(event)
            case RunFinished():
                return [self._finished(event)]
            case Note(message=text):
                return self._note(text)
        return []

    def _started(self, event: RunStarted) -> Message:
        self.tag, self.kind = event.tag, Kind(event.kind)
        hosts = ", ".join(event.hosts)
        body = f"deployment #{event.deployment_id} on {hosts}"
        if self.kind is Kind.ROLLBACK:
            title = f"{self.app}: rolling back {event.env} to {event.tag}"
            return Message(title, body, (DEP, INC), Level.WARNING)
        return Message(f"{self.app}: deploying {event.tag} to {event.env}", body, (DEP,))

    def _phase(self, event: PhaseFinished) -> list[Message]:
        failed, self._failed_steps = self._failed_steps, []
        if event.status is StepStatus.SKIPPED:
            return []
        took = f"in {event.seconds:.1f} s"
        if event.phase is Phase.ROLLBACK:
            if event.status is StepStatus.SUCCEEDED:
                title = f"{self.app}: {self.env} is back on the previous release ({took})"
                return [Message(title, "\n".join(failed), (DEP, INC), Level.WARNING)]
            self._put_back_failed = True
            title = f"{self.app}: putting {self.env} back FAILED ({took})"
            return [Message(title, "\n".join(failed), (DEP, INC, PAGE), Level.FAILURE)]
        if event.status is StepStatus.FAILED:
            channels = (DEP, INC) if event.phase in _LIVE_PHASES else (DEP,)
            title = f"{self.app} {self.tag}: {event.phase} failed ({took})"
            return [Message(title, "\n".join(failed), channels, Level.FAILURE)]
        return [Message(f"{self.app} {self.tag}: {event.phase} {event.status} {took}", "", (DEP,))]

    def _finished(self, event: RunFinished) -> Message:
        title = f"{self.app} {self.tag} on {self.env}: {event.outcome} in {event.seconds:.0f} s"
        lines = [event.reason or ""]
        if event.failed_step:
            where = f" on {event.failed_host}" if event.failed_host else ""
            lines.append(f"failed: {event.failed_step}{where}")
        lines += [f"{phase}: {seconds:.1f} s" for phase, seconds in event.phase_seconds]
        body = "\n".join(line for line in lines if line)
        match event.outcome:
            case Outcome.SUCCEEDED:
                return Message(title, body, (DEP,), Level.SUCCESS)
            case Outcome.ROLLED_BACK:
                return Message(title, body, (DEP, INC), Level.WARNING)
            case _ if self._put_back_failed:
                return Message(title, body, (DEP, INC, PAGE), Level.FAILURE)
            case _:
                return Message(title, body, (DEP,), Level.FAILURE)

    def _note(self, text: str) -> list[Message]:
        if found := _OPENED.match(text) or _RAISED.match(text):
            level = int(found.group(2))
            title = f"{self.app} {self.env}: incident #{found.group(1)} level {level}"
            channels = (INC, PAGE) if level >= 2 else (INC,)
            return [Message(title, found.group(3), channels, _incident_level(level))]
        if found := _ESCALATED.match(text):
            title = f"{self.app} {self.env}: incident #{found.group(1)} escalated to {found[2]}"
            return [Message(title, text, (PAGE,), Level.FAILURE)]
        if text.startswith("putting back "):
            title = f"{self.app}: rolling back {self.env}, {text}"
            return [Message(title, "", (DEP, INC), Level.WARNING)]
        return []

    # --- the status page -------------------------------------------------------------------

    def _board(self, event: Event, board: StatusBoard) -> bool:
        """Apply the event to the page; True when the page changed."""
        match event:
            case RunStarted(tag=tag):
                doing = "rolling back to" if self.kind is Kind.ROLLBACK else "deploying"
                board.maintenance = Maintenance(f"{doing} {tag}", event.at)
                board.set(Status.MAINTENANCE, board.maintenance.reason)
            case PhaseFinished(phase=phase, status=StepStatus.FAILED) if phase in _LIVE_PHASES:
                board.set(
                    max(Status.DEGRADED, board.status, key=list(Status).index),
                    f"{phase} failed: putting back the previous release",
                )
            case RunFinished(outcome=outcome):
                board.maintenance = None
                if outcome is Outcome.ROLLED_BACK:
                    board.incident = None  # mitigated: every host back on its release
                board.set(*self._after(board, outcome))
            case Note(message=text):
                return self._incident_note(text, board)
            case _:
                return False
        return True

    def _after(self, board: StatusBoard, outcome: Outcome) -> tuple[Status, str]:
        if self._put_back_failed:
            return Status.OUTAGE, "the previous release could not be put back"
        if board.incident is not None:
            return status_for_level(board.incident.level), f"incident #{board.incident.id} open"
        if outcome is Outcome.ROLLED_BACK:
            return Status.OPERATIONAL, f"back on the previous release after {self.tag} failed"
        return Status.OPERATIONAL, f"{self.tag} {outcome}"

    def _incident_note(self, text: str, board: StatusBoard) -> bool:
        if found := _OPENED.match(text) or _RAISED.match(text):
            number, level, symptoms = int(found[1]), int(found[2]), found[3]
            since = board.incident.since if board.incident is not None else utcnow()
            board.incident = CurrentIncident(number, level, symptoms, since)
            board.set(status_for_level(level), f"incident #{number} level {level}: {symptoms}")
            return True
        return bool(_MITIGATED.match(text))  # the history now shows it mitigated

    # --- sending ---------------------------------------------------------------------------

    def _enqueue(self, message: Message) -> None:
        if not self.notifier.configured:
            return
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller): sent by flush
            self._pending.append(message)
            return
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._work(self._queue))
        for held in self._pending:
            self._queue.put_nowait(held)
        self._pending.clear()
        self._queue.put_nowait(message)

    async def _work(self, queue: asyncio.Queue[Message]) -> None:
        while True:
            message = self._sending = await queue.get()
            try:
                for failure in await self.notifier.send(message):
                    self._failed(failure)
            except Exception as exc:  # never let one message stop the ones after it
                log.exception("notification %r", message.title)
                self._failed(Failure(message.channels[0], "-", self.notifier.safe(str(exc))))
            finally:
                self._sending = None
                queue.task_done()

    def _failed(self, failure: Failure) -> None:
        self.failures.append(failure)
        try:
            self.report(failure)
        except Exception:
            log.exception("reporting %s", failure)

    async def flush(self) -> list[Failure]:
        """Wait until every queued message is sent or failed (at most ``deadline`` seconds);
        what is still unsent then is reported as failed. Returns every failure of the run."""
        if self._pending:
            held, self._pending = self._pending, []
            for message in held:
                self._enqueue(message)
        queue, worker = self._queue, self._worker
        if queue is None or worker is None:
            return self.failures
        try:
            await asyncio.wait_for(queue.join(), self.deadline)
        except TimeoutError:
            pass
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker
            self._queue = self._worker = None
        unsent = [self._sending] if self._sending is not None else []
        while not queue.empty():
            unsent.append(queue.get_nowait())
        self._sending = None
        for message in unsent:
            for channel in message.channels:
                self._failed(Failure(channel, "-", f"not sent within {self.deadline:g} s"))
        return self.failures


def _incident_level(level: int) -> Level:
    return Level.FAILURE if level >= 2 else Level.WARNING


def notify_sink(runbook: Runbook, store: Store, env: str) -> NotifySink | None:
    """The sink for a run of ``env``, or None when the runbook notifies no one."""
    notifier = Notifier.for_runbook(runbook)
    page = runbook.notify.status_page
    if not notifier.configured and page is None:
        return None
    board = None
    if page is not None:
        directory = runbook.config_dir / Path(page.dir)
        board = StatusBoard(runbook.app, env, directory, list(page.components))
        board.redactor = runbook.redactor
        board.resume()
    return NotifySink(
        notifier, board, app=runbook.app, env=env, history=lambda: store.incidents(env=env)
    )
