"""Where the SSH connection holder listens by default (no imports: the quick path uses it)."""

from __future__ import annotations

import os
from pathlib import Path

SOCKET = "holder.sock"


def default_control_dir() -> Path:
    """``$XDG_RUNTIME_DIR/rollout``, or ``/tmp/rollout-UID`` (checked private before use)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return Path(runtime) / "rollout" if runtime else Path(f"/tmp/rollout-{os.getuid()}")  # noqa: S108
