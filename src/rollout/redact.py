"""Hide secret values in anything rollout prints, stores or sends.

The secrets are the values of the ``${VAR}`` references resolved while loading rollout.yml.
Every output path (console, history, notifications, web) passes text through one ``Redactor``,
so a secret that leaks into a command's output or an error message is shown as
``[secret:NAME]`` instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class _Snapshot:
    """The secrets at one moment: replaced as a whole by ``add``, never changed in place."""

    names_by_value: Mapping[str, str]
    pattern: re.Pattern[str] | None


def _snapshot(names_by_value: Mapping[str, str]) -> _Snapshot:
    if not names_by_value:
        return _Snapshot({}, None)
    # Longest first: when one secret contains another, the alternation must try the longer one
    # at each position, or part of the longer secret would stay visible.
    values = sorted(names_by_value, key=len, reverse=True)
    return _Snapshot(dict(names_by_value), re.compile("|".join(re.escape(v) for v in values)))


class Redactor:
    """Replaces every known secret value with ``[secret:NAME]``."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        self._state = _snapshot({})
        for name, value in (secrets or {}).items():
            self.add(name, value)

    @classmethod
    def empty(cls) -> Redactor:
        return cls()

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the secrets known, sorted."""
        return tuple(sorted(set(self._state.names_by_value.values())))

    def add(self, name: str, value: str) -> None:
        """Register a secret; an empty value is ignored, since it would match everywhere."""
        if not value or value in self._state.names_by_value:
            return
        # Build a new snapshot and swap it in with one assignment, so a redact running in
        # another thread sees either the old set of secrets or the new one, never half of it.
        self._state = _snapshot({**self._state.names_by_value, value: name})

    def redact(self, text: str) -> str:
        state = self._state
        if state.pattern is None:
            return text
        # One pass over the text, not one replace per secret: a later replace could otherwise
        # match inside a marker written by an earlier one.
        return state.pattern.sub(lambda m: f"[secret:{state.names_by_value[m.group()]}]", text)

    def redact_obj(self, obj: Any) -> Any:
        """Redact every string inside dicts, lists and tuples (keys too); leave the rest as is."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {self.redact_obj(k): self.redact_obj(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.redact_obj(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact_obj(item) for item in obj)
        return obj

    def __repr__(self) -> str:
        # Never the values: a Redactor may itself end up in a log line or a traceback.
        return f"Redactor(names={list(self.names)!r})"
