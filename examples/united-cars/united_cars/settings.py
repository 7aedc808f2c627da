"""Configuration, read from environment variables in this one place."""

from __future__ import annotations

import functools
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The release root is the folder holding the package, release.json and faults.json, which is
# the top level of a built artifact (see build_release.py).
RELEASE_ROOT = Path(__file__).resolve().parent.parent

DEFAULT_DATABASE_URL = "sqlite:///./united-cars.db"


@functools.cache
def _process_secret() -> str:
    # Without a configured key, sessions are valid only for this process's lifetime: safe by
    # default, and the demo signs in again after a restart.
    return secrets.token_hex(32)


def normalize_database_url(url: str) -> str:
    """Point plain PostgreSQL URLs at the psycopg 3 driver, the one installed.

    SQLAlchemy maps ``postgresql://`` to psycopg2, which is not a dependency.
    """
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_DATABASE_URL
    release_file: Path = RELEASE_ROOT / "release.json"
    # Fault overrides from UNITED_CARS_FAULTS; None means "use faults.json beside release.json".
    faults: Mapping[str, object] | None = None
    demo_user: str = "demo"
    demo_password: str = "demo"  # noqa: S105 - documented demo credential, overridable by env
    secret_key: str = ""

    @property
    def faults_file(self) -> Path:
        return self.release_file.parent / "faults.json"

    @property
    def signing_key(self) -> bytes:
        return (self.secret_key or _process_secret()).encode()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        faults: Mapping[str, object] | None = None
        raw_faults = env.get("UNITED_CARS_FAULTS", "").strip()
        if raw_faults:
            try:
                parsed = json.loads(raw_faults)
            except json.JSONDecodeError as exc:
                raise ValueError(f"UNITED_CARS_FAULTS is not valid JSON: {exc}") from exc
            if not isinstance(parsed, dict):
                raise ValueError("UNITED_CARS_FAULTS must be a JSON object")
            faults = parsed
        release_file = env.get("UNITED_CARS_RELEASE_FILE", "").strip()
        return cls(
            database_url=normalize_database_url(
                env.get("UNITED_CARS_DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
            ),
            release_file=Path(release_file) if release_file else RELEASE_ROOT / "release.json",
            faults=faults,
            demo_user=env.get("UNITED_CARS_DEMO_USER") or "demo",
            demo_password=env.get("UNITED_CARS_DEMO_PASSWORD") or "demo",
            secret_key=env.get("UNITED_CARS_SECRET_KEY", ""),
        )
