"""Hosts: where commands run and files land. ``Host`` is the seam; ``local`` and ``ssh`` fill it."""

from rollout.hosts.base import CommandResult, Host
from rollout.hosts.factory import connect_hosts

__all__ = ["CommandResult", "Host", "connect_hosts"]
