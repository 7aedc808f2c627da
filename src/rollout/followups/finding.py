"""What an automatic follow-up found: a verdict, one line for people, the numbers behind it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Verdicts that need a person to look: anything but these two.
QUIET = ("ok", "inconclusive")


@dataclass(frozen=True)
class Finding:
    verdict: str  # ok, inconclusive, regressed, over-target, missed
    summary: str
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def needs_attention(self) -> bool:
        return self.verdict not in QUIET

    def to_json(self, action: str) -> dict[str, Any]:
        return {
            "action": action,
            "verdict": self.verdict,
            "summary": self.summary,
            **{key: plain_numbers(value) for key, value in self.details.items()},
        }


def plain_numbers(value: Any) -> Any:
    """NaN and infinities become None: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_numbers(v) for v in value]
    return value
