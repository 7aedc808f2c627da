"""Telling people: messages to chat and paging services through apprise URLs, and a static
status page. Everything here is best effort: a failure is reported, never raised into a run."""

from rollout.notify.channels import Channel, Failure, Level, Message, Notifier, describe_url
from rollout.notify.sink import NotifySink, notify_sink
from rollout.notify.status_page import Status, StatusBoard, StatusView, page_html, page_json

__all__ = [
    "Channel",
    "Failure",
    "Level",
    "Message",
    "Notifier",
    "NotifySink",
    "Status",
    "StatusBoard",
    "StatusView",
    "describe_url",
    "notify_sink",
    "page_html",
    "page_json",
]
