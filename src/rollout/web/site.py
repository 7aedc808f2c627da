"""What every request of one dashboard reads: the runbook and its store, opened once."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from rollout.config import Runbook
from rollout.store import Store, open_store


@dataclass
class Site:
    runbook: Runbook
    poll: float = 0.5  # seconds between two reads of a running deployment's steps
    _store: Store | None = field(default=None, init=False)
    _opening: threading.Lock = field(default_factory=threading.Lock, init=False)

    @property
    def store(self) -> Store:
        """The store, opened on first use (requests run in a thread pool, hence the lock), so a
        store that cannot be opened is an error page, not a server that never starts."""
        with self._opening:
            if self._store is None:
                self._store = open_store(self.runbook.store_url, redactor=self.runbook.redactor)
            return self._store

    def close(self) -> None:
        with self._opening:
            if self._store is not None:
                self._store.close()
                self._store = None

    @property
    def production(self) -> str:
        """The production-like environment, as `rollout kpi` chooses it (cli/common.py
        kpi_scope): production, else the first one."""
        names = self.runbook.environments
        return "production" if "production" in names else next(iter(names))
