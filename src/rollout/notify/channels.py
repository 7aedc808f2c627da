"""Channels: where a message for people goes, through apprise URLs (one scheme per service).

A notification is best effort. A failure to notify is returned as a ``Failure`` naming the
channel, the target (scheme and host only) and the reason; it never raises, because a rollback
must not stop because the chat service is down. A URL holds credentials, so neither a URL nor
anything apprise says about one leaves this module unredacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from types import ModuleType
from typing import TYPE_CHECKING

from rollout.redact import Redactor

if TYPE_CHECKING:
    from rollout.config import Runbook

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://\S+")
_SCHEME = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*")
_HOST_NAME = re.compile(r"(?:[a-zA-Z0-9-]+\.)+[a-zA-Z0-9-]+|\[[0-9a-fA-F:]+\]")


class Channel(StrEnum):
    DEPLOYMENTS = "deployments"
    INCIDENTS = "incidents"
    PAGING = "paging"


class Level(StrEnum):
    """How a message reads in the chat tool (apprise's notify types)."""

    INFO = "info"
    SUCCESS = "success"
    WARNING = "warning"
    FAILURE = "failure"


@dataclass(frozen=True)
class Message:
    title: str
    body: str
    channels: tuple[Channel, ...]
    level: Level = Level.INFO


@dataclass(frozen=True)
class Failure:
    """One URL that was not notified: never the URL itself, only its scheme and host."""

    channel: Channel
    target: str
    reason: str

    def __str__(self) -> str:
        return f"notification to {self.channel} ({self.target}) failed: {self.reason}"


def describe_url(url: str) -> str:
    """``scheme://host[:port]`` of an apprise URL, without credentials, path or query; and
    without the host when it is not a host name (``slack://TokenA/...``: a token, a secret)."""
    scheme, sep, rest = url.partition("://")
    if not sep or not _SCHEME.fullmatch(scheme):
        return "an invalid URL"
    host = re.split(r"[/?#]", rest, maxsplit=1)[0].rsplit("@", 1)[-1]
    name = re.sub(r":\d+$", "", host)
    if name == "localhost" or _HOST_NAME.fullmatch(name):
        return f"{scheme}://{host}"
    return f"{scheme}://..."


class Notifier:
    """Sends a message to every URL of its channels at once, each bounded by ``timeout``."""

    def __init__(
        self,
        urls: Mapping[Channel, Sequence[str]],
        redactor: Redactor | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.urls = {channel: list(found) for channel, found in urls.items() if found}
        self.redactor = redactor or Redactor.empty()
        self.timeout = timeout
        # Every part of a URL that could be a token, for a reason that quotes one: a URL from
        # ${VAR} is known to the runbook's redactor only whole.
        self.url_parts = Redactor.empty()
        for part in _parts(self.urls):
            self.url_parts.add("notify-url", part)

    @classmethod
    def for_runbook(cls, runbook: Runbook, timeout: float = DEFAULT_TIMEOUT) -> Notifier:
        notify = runbook.notify
        paging = [*notify.paging, *(person.notify for person in runbook.people.on_call)]
        urls = {
            Channel.DEPLOYMENTS: notify.deployments,
            Channel.INCIDENTS: notify.incidents,
            Channel.PAGING: paging,
        }
        return cls(urls, runbook.redactor, timeout)

    @property
    def configured(self) -> bool:
        return bool(self.urls)

    async def send(self, message: Message) -> list[Failure]:
        """Every failure, none raised. A URL in two of the message's channels is sent once.
        Title and body are redacted: they quote step output, which can hold a secret."""
        redact = self.redactor.redact
        message = replace(message, title=redact(message.title), body=redact(message.body))
        targets: dict[str, Channel] = {}
        for channel in message.channels:
            for url in self.urls.get(channel, []):
                targets.setdefault(url, channel)
        results = await asyncio.gather(
            *(self._one(url, channel, message) for url, channel in targets.items())
        )
        return [failure for failure in results if failure is not None]

    async def _one(self, url: str, channel: Channel, message: Message) -> Failure | None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[str | None] = loop.create_future()

        def settle(reason: str | None) -> None:
            if not done.done():
                done.set_result(reason)

        def work() -> None:
            reason = _deliver(url, message)
            with contextlib.suppress(RuntimeError):  # the loop is gone: it gave up waiting
                loop.call_soon_threadsafe(settle, reason)

        # A daemon thread, not the loop's executor: a service that never answers must not keep
        # the process from exiting (asyncio.run waits for the default executor's threads).
        threading.Thread(target=work, name=f"notify-{channel}", daemon=True).start()
        try:
            reason = await asyncio.wait_for(done, self.timeout)
        except TimeoutError:
            reason = f"no answer within {self.timeout:g} s"
        if reason is None:
            return None
        return Failure(channel, self.safe(describe_url(url)), self.safe(reason, url))

    def safe(self, text: str, url: str | None = None) -> str:
        """Text about a URL with the URL, any other URL and every known secret taken out."""
        if url:
            text = text.replace(url, describe_url(url))
        text = _URL.sub(lambda m: describe_url(m.group()), text)
        return self.redactor.redact(self.url_parts.redact(text))


def _parts(urls: Mapping[Channel, Sequence[str]]) -> set[str]:
    """The pieces of each URL but its scheme and the host it is shown with, 4 characters or
    longer (shorter ones would blank out ordinary words)."""
    found = set()
    for url in (u for listed in urls.values() for u in listed):
        shown = describe_url(url).partition("://")[2]
        rest = url.partition("://")[2]
        found |= {
            part for part in re.split(r"[:/@?&=#,]+", rest) if len(part) >= 4 and part not in shown
        }
    return found


class _ThreadLog(logging.Handler):
    """Keeps apprise's warnings from the current thread only: the reason a send failed."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


_IMPORTING = threading.Lock()
_loaded: ModuleType | None = None


def _apprise() -> ModuleType:
    """apprise, imported on first use (it is slow to import and most runs never notify),
    without the DeprecationWarning its plugins raise on Python 3.11 (``imghdr``)."""
    global _loaded
    with _IMPORTING:
        if _loaded is None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                import apprise

                # Its plugins load on first use, and one of them imports imghdr: load them now.
                apprise.Apprise.instantiate("json://localhost")
            _loaded = apprise
        return _loaded


def _deliver(url: str, message: Message) -> str | None:
    """Send through apprise; None when sent, else why not."""
    try:
        apprise = _apprise()
        # The plugin itself, not Apprise.notify: that sends from a pool of its own threads,
        # and the reason a send failed is in the warnings logged by the sending thread.
        logger = logging.getLogger("apprise")
        logger.propagate = False  # its messages can name hosts and URLs; the Failure is ours
        plugin = apprise.Apprise.instantiate(url)
        if not plugin:
            return "not a URL apprise knows"
        captured = _ThreadLog()
        logger.addHandler(captured)
        try:
            sent = plugin.notify(
                # Services refuse an empty body: a title-only message says its title twice.
                body=message.body or message.title,
                title=message.title,
                notify_type=message.level.value,
            )
        finally:
            logger.removeHandler(captured)
    except Exception as exc:  # a plugin bug is one more failed notification, never a crash
        return f"{type(exc).__name__}: {exc}"
    if sent:
        return None
    return captured.messages[-1] if captured.messages else "the service refused it"
