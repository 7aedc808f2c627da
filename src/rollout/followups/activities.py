"""The runbook's post-deployment activities: which a machine does, and who owns the rest.

An activity named in ``followups:`` is *automatic* when rollout can do it from its own records,
and a *manual* item tracked with an owner otherwise (any name rollout does not know included):

  activity                                      automatic action
  metrics-review, performance-analysis          performance: p95 and error rate after the
                                                deployment against before it (Mann-Whitney U)
  error-tracking, error-review,                 error review: the error rate since the switch
  error-rate-review                             against its target, by path, status and host
  success-metrics, kpi-snapshot                 KPI snapshot: the DORA and SLO report, kept

Owners of manual items, unless the runbook names one (``{retrospective: alice}``):

  support-channels                    on-call: the first of people.on_call
  usage-patterns, user-satisfaction   business: people.roles.business
  team-update, cost-check, docs-update,
  runbook-update, retrospective,
  any other name                      deployer: people.roles.deployer

An owner is resolved through ``people``: ``on-call`` is the first of people.on_call, a function
of people.roles is the role it names; ``deployer``, ``business`` and ``on-call`` missing there
fall back to whoever ran the deployment; any other owner the runbook names is kept as written.
Automatic items are owned by ``rollout``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Literal

from rollout.config import People, parse_duration


class Action(StrEnum):
    """What rollout does itself when an automatic activity is due."""

    PERFORMANCE = "performance"
    ERROR_REVIEW = "error-review"
    KPI_SNAPSHOT = "kpi-snapshot"


AUTOMATIC: dict[str, Action] = {
    "metrics-review": Action.PERFORMANCE,
    "performance-analysis": Action.PERFORMANCE,
    "error-tracking": Action.ERROR_REVIEW,
    "error-review": Action.ERROR_REVIEW,
    "error-rate-review": Action.ERROR_REVIEW,
    "success-metrics": Action.KPI_SNAPSHOT,
    "kpi-snapshot": Action.KPI_SNAPSHOT,
}
DEFAULT_OWNERS: dict[str, str] = {
    "support-channels": "on-call",
    "usage-patterns": "business",
    "user-satisfaction": "business",
}
DEFAULT_FUNCTION = "deployer"
FUNCTIONS = ("deployer", "business", "on-call")  # resolved through people; else the deployer
AUTOMATIC_OWNER = "rollout"

Kind = Literal["automatic", "manual"]


@dataclass(frozen=True)
class Activity:
    """One entry of ``followups:``: its name, when it is due after the deployment, its owner
    as the runbook gives it (None: the default above)."""

    name: str
    after: timedelta
    owner: str | None = None

    @property
    def action(self) -> Action | None:
        return AUTOMATIC.get(self.name)

    @property
    def kind(self) -> Kind:
        return kind_of(self.name)


def kind_of(name: str) -> Kind:
    return "automatic" if name in AUTOMATIC else "manual"


def activities(followups: dict[str, list[str | dict[str, str]]]) -> list[Activity]:
    """The runbook's ``followups:`` as activities, soonest first, in the runbook's order."""
    found = []
    for key, items in followups.items():
        after = parse_duration(key)
        for item in items:
            if isinstance(item, str):
                found.append(Activity(item, after))
            else:
                ((name, owner),) = item.items()
                found.append(Activity(name, after, owner))
    return sorted(found, key=lambda a: a.after)  # stable: the runbook's order within a time


def owner_of(activity: Activity, people: People, *, deployer: str) -> str:
    """Who owns ``activity`` (see the module's table); ``deployer`` ran the deployment."""
    if activity.owner is None and activity.action is not None:
        return AUTOMATIC_OWNER
    wanted = activity.owner or DEFAULT_OWNERS.get(activity.name, DEFAULT_FUNCTION)
    if wanted == "on-call" and people.on_call:
        return people.on_call[0].name
    if wanted in people.roles:
        return people.roles[wanted]
    return deployer if wanted in FUNCTIONS else wanted
