"""What this release is (release.json) and which faults it should inject (faults.json)."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from united_cars.settings import Settings

logger = logging.getLogger(__name__)

# Faults apply to the business routes only by default: a probe of /api/health or /metrics must
# keep telling the truth about the incident rather than being part of it.
DEFAULT_FAULT_EXEMPT = ("/api/health", "/metrics")

_FAULT_KEYS = frozenset({"error_rate", "latency_ms", "health_down", "routes", "after_s"})


@dataclass(frozen=True)
class ReleaseInfo:
    version: str = "dev"
    commit: str = "unknown"
    built_at: str | None = None


def load_release(path: Path) -> ReleaseInfo:
    """Read release.json; a source checkout has none and reports version "dev"."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ReleaseInfo()
    except (OSError, json.JSONDecodeError) as exc:
        # An unreadable file must not stop the app; "dev" makes the mismatch visible to a
        # version check instead.
        logger.warning("cannot read release file %s: %s", path, exc)
        return ReleaseInfo()
    if not isinstance(data, dict):
        logger.warning("release file %s is not a JSON object", path)
        return ReleaseInfo()
    built_at = data.get("built_at")
    return ReleaseInfo(
        version=str(data.get("version") or "dev"),
        commit=str(data.get("commit") or "unknown"),
        built_at=str(built_at) if built_at is not None else None,
    )


@dataclass(frozen=True)
class FaultConfig:
    error_rate: float = 0.0
    latency_ms: int = 0
    health_down: bool = False
    # None means every route except DEFAULT_FAULT_EXEMPT.
    routes: tuple[str, ...] | None = None
    # Seconds after start before the faults begin: a release that passes its verification
    # and goes wrong under traffic a little later, as real ones do.
    after_s: float = 0.0

    @property
    def active(self) -> bool:
        return self.error_rate > 0 or self.latency_ms > 0 or self.health_down

    def applies_to(self, path: str) -> bool:
        if self.routes is None:
            return not any(_under(path, prefix) for prefix in DEFAULT_FAULT_EXEMPT)
        return any(_under(path, prefix) for prefix in self.routes)

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> FaultConfig:
        """Validate strictly: a typo in a fault file should fail the start, not be ignored."""
        unknown = set(data) - _FAULT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        error_rate = data.get("error_rate", 0.0)
        if isinstance(error_rate, bool) or not isinstance(error_rate, int | float):
            raise ValueError("faults.error_rate must be a number")
        if not 0.0 <= error_rate <= 1.0:
            raise ValueError("faults.error_rate must be between 0.0 and 1.0")
        latency_ms = data.get("latency_ms", 0)
        if isinstance(latency_ms, bool) or not isinstance(latency_ms, int) or latency_ms < 0:
            raise ValueError("faults.latency_ms must be a non-negative integer")
        health_down = data.get("health_down", False)
        if not isinstance(health_down, bool):
            raise ValueError("faults.health_down must be true or false")
        routes = data.get("routes")
        if routes is not None and (
            not isinstance(routes, list)
            or not all(isinstance(r, str) and r.startswith("/") for r in routes)
        ):
            raise ValueError('faults.routes must be a list of path prefixes like "/api"')
        after_s = data.get("after_s", 0.0)
        if isinstance(after_s, bool) or not isinstance(after_s, int | float) or after_s < 0:
            raise ValueError("faults.after_s must be a non-negative number of seconds")
        return cls(
            error_rate=float(error_rate),
            latency_ms=latency_ms,
            health_down=health_down,
            routes=tuple(routes) if routes is not None else None,
            after_s=float(after_s),
        )


def _under(path: str, prefix: str) -> bool:
    # Match on path segments so that "/api/v" does not catch "/api/version".
    base = prefix.rstrip("/")
    return not base or path == base or path.startswith(base + "/")


def load_faults(settings: Settings) -> FaultConfig:
    """UNITED_CARS_FAULTS wins over the release's faults.json; neither means no faults."""
    if settings.faults is not None:
        return FaultConfig.from_mapping(settings.faults)
    try:
        raw = settings.faults_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return FaultConfig()
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{settings.faults_file}: not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{settings.faults_file}: must be a JSON object")
    return FaultConfig.from_mapping(data)
