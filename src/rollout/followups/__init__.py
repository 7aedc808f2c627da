"""Post-deployment follow-ups: the runbook's activities at +1 h, +24 h and +1 week.

A successful deployment's finalize step plans them (``schedule``); ``rollout followups`` lists
them, ``rollout followups run`` does the automatic ones that are due (performance analysis,
error review, KPI snapshot: ``activities`` has the names) and ``rollout followups done`` closes
a manual one. Results are kept in the store's ``follow_ups`` records.
"""

from rollout.followups.activities import AUTOMATIC, Action, Activity, activities, kind_of
from rollout.followups.finding import Finding
from rollout.followups.run import Done, announce, due, mark_done, perform, run_due
from rollout.followups.schedule import Planned, describe, plan, schedule

__all__ = [
    "AUTOMATIC",
    "Action",
    "Activity",
    "Done",
    "Finding",
    "Planned",
    "activities",
    "announce",
    "describe",
    "due",
    "kind_of",
    "mark_done",
    "perform",
    "plan",
    "run_due",
    "schedule",
]
