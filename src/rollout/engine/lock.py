"""The deploy lock: one deployment per environment at a time, held in the shared store.

Like Kamal's lock it records who, where, when, which tag and why; unlike Deployer's it is
released on every exit path (the ``with`` block), and it is never stolen automatically: a lock
left by a killed process is released by a person, who can see whose it was.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from rollout.errors import LockHeld
from rollout.store import LockInfo, Store


def whoami() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry, e.g. an arbitrary container uid
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@contextmanager
def deploy_lock(
    store: Store, env: str, *, tag: str | None, message: str = ""
) -> Iterator[LockInfo]:
    info = store.acquire_lock(
        env,
        holder=whoami(),
        machine=socket.gethostname(),
        pid=os.getpid(),
        tag=tag,
        message=message,
    )
    try:
        yield info
    finally:
        store.release_lock(env, info.token)


def holder_alive(info: LockInfo) -> bool | None:
    """Whether the holding process still runs: known only when it runs on this machine."""
    if info.machine != socket.gethostname():
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release(store: Store, env: str, *, force: bool) -> LockInfo | None:
    """Release the environment's lock; a live (or unknown) holder needs ``force``."""
    info = store.lock(env)
    if info is None:
        return None
    alive = holder_alive(info)
    if alive is not False and not force:
        state = "is still running" if alive else "may still be running (another machine)"
        raise LockHeld(
            f"lock on {env} is held by {info.holder} (pid {info.pid}), which {state}",
            hint="wait for it to finish, or pass --force if you are sure it is gone",
        )
    return store.force_release_lock(env)
