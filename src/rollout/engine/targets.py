"""Targets: an environment's hosts with the values their templates use, ready to connect.

Kept apart from the operations so that commands which only talk to hosts (``exec``, ``logs``,
``hosts trust``) do not import the store and the HTTP client.
"""

from __future__ import annotations

import asyncio

from rollout.config import Runbook
from rollout.hosts import Host, connect_hosts
from rollout.runtimes.base import Target
from rollout.runtimes.template import render


def open_targets(runbook: Runbook, env_name: str) -> dict[str, Target]:
    """Every host of the environment as a target; connections open on first use."""
    env = runbook.environment(env_name)
    return targets_for(runbook, env_name, connect_hosts(env, runbook.config_dir, runbook.ssh))


def targets_for(runbook: Runbook, env_name: str, hosts: dict[str, Host]) -> dict[str, Target]:
    env = runbook.environment(env_name)
    targets = {}
    for spec in env.hosts:
        values = {"host": spec.name, "address": spec.address, "env": env_name, **spec.vars}
        url = (
            render(spec.url, values, where=f"environments.{env_name}.hosts.{spec.name}.url")
            if spec.url
            else None
        )
        targets[spec.name] = Target(
            host=hosts[spec.name], env=env_name, vars=dict(spec.vars), url=url
        )
    return targets


async def close_targets(targets: dict[str, Target]) -> None:
    await asyncio.gather(*(t.host.close() for t in targets.values()), return_exceptions=True)
