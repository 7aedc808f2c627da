"""Release directories: ``releases/<tag>/`` beside an atomically switched ``current`` link.

Layout on each host, under ``runtime.path``::

    releases/<tag>/            an unpacked artifact; ``.rollout-release`` (its sha256) marks it complete
    current -> releases/<tag>  swapped by rename, so a reader never sees it missing
    shared/ log/ run/          data, the app's log and the built-in launcher's pidfile
    .current-<env>-version     the runbook's version files
    .previous-<env>-version

Every command is one ``sh -c`` script whose values are all ``shlex.quote``d; one script per step
keeps a step to one round trip when the host is remote.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping

from rollout.config import ReleaseDirRuntime
from rollout.errors import BadInput, HostError
from rollout.model import CheckResult, HostState
from rollout.runtimes import health
from rollout.runtimes.base import Artifact, Target
from rollout.runtimes.template import render, render_all

MARKER = ".rollout-release"
PIDFILE = "run/app.pid"
LOGFILE = "log/app.log"

# `kill -0` succeeds on a zombie, and a detached app's parent may never reap it: read the state.
_ALIVE = (
    'alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && '
    "[ \"$(sed -n 's/^State:[[:space:]]*\\([A-Z]\\).*/\\1/p' /proc/$1/status 2>/dev/null)\" != Z ]; }"
)


def q(value: str) -> str:
    return shlex.quote(value)


class ReleaseDirectories:
    """``Runtime`` for unpacked release directories (Capistrano-style)."""

    def __init__(self, settings: ReleaseDirRuntime) -> None:
        self.settings = settings

    # --- paths and templates -------------------------------------------------------------

    def deploy_to(self, target: Target) -> str:
        return target.path(self.settings.path)

    def values(self, target: Target, tag: str) -> dict[str, str]:
        """The placeholders a template may use on this host for this release."""
        base = self.deploy_to(target)
        return {
            "tag": tag,
            "env": target.env,
            "host": target.name,
            "root": target.host.root,
            "deploy_to": base,
            "release_dir": posixpath.join(base, "releases", tag),
            "current_dir": posixpath.join(base, "current"),
            "shared_dir": posixpath.join(base, "shared"),
            "log_dir": posixpath.join(base, "log"),
            **target.vars,
        }

    def health_url(self, target: Target, tag: str) -> str | None:
        url = self.settings.health_url
        return (
            None
            if url is None
            else render(url, self.values(target, tag), where="runtime.health_url")
        )

    def check_templates(self, target: Target, tag: str) -> None:
        """Render every template once, so a typo fails the plan rather than a host."""
        values = self.values(target, tag)
        self.health_url(target, tag)
        for where, command in (
            ("runtime.start", self.settings.start),
            ("runtime.stop", self.settings.stop),
        ):
            if command is not None:
                self._argv(command, values, where)
        if self.settings.launcher is not None:
            render_all(self.settings.launcher.command, values, where="runtime.launcher.command")
            for key, value in self.settings.launcher.env.items():
                render(value, values, where=f"runtime.launcher.env.{key}")

    @staticmethod
    def _argv(command: str | list[str], values: Mapping[str, str], where: str) -> list[str]:
        if isinstance(command, str):
            return ["sh", "-c", render(command, values, where=where)]
        return render_all(command, values, where=where)

    async def _sh(self, target: Target, script: str, timeout: float | None = 120) -> str:
        result = await target.host.run(["sh", "-c", script], timeout=timeout)
        return result.stdout

    # --- install ---------------------------------------------------------------------------

    async def preflight(self, target: Target, tag: str) -> list[CheckResult]:
        return []  # the artifact is checked once, on the controller, while planning

    async def installed(self, target: Target, tag: str) -> bool:
        marker = posixpath.join(self.deploy_to(target), "releases", tag, MARKER)
        result = await target.host.run(["test", "-f", marker], check=False)
        return result.ok

    async def install(self, target: Target, tag: str, artifact: Artifact | None) -> None:
        if artifact is None:
            raise HostError(target.name, "release-dir runtime needs release.artifact (a .tar.gz)")
        releases = posixpath.join(self.deploy_to(target), "releases")
        incoming = posixpath.join(releases, f".incoming-{tag}.tar.gz")
        partial = posixpath.join(releases, f".partial-{tag}")
        final = posixpath.join(releases, tag)
        marker = posixpath.join(final, MARKER)
        # Tags are immutable: the same tag with other bytes is refused, never overwritten.
        probe = (
            f"set -e; mkdir -p {q(releases)}; "
            f"if [ -f {q(marker)} ]; then "
            f'  if [ "$(cat {q(marker)})" = {q(artifact.sha256)} ]; then echo installed; '
            f"  else echo 'release {tag} is installed with another checksum; tags are immutable' >&2;"
            f"  exit 65; fi; fi"
        )
        if (await self._sh(target, probe)).strip() == "installed":
            return
        await target.host.put(artifact.path, incoming)
        unpack = (
            "set -e; "
            f"actual=$(sha256sum {q(incoming)} | cut -d' ' -f1); "
            f'if [ "$actual" != {q(artifact.sha256)} ]; then '
            f'  echo "checksum mismatch after transfer: expected {artifact.sha256}, got $actual" >&2; '
            f"  rm -f {q(incoming)}; exit 65; fi; "
            f"rm -rf {q(partial)} {q(final)}; mkdir -p {q(partial)}; "
            f"tar -xzf {q(incoming)} -C {q(partial)} --no-same-owner; "
            f"printf '%s\\n' {q(artifact.sha256)} > {q(posixpath.join(partial, MARKER))}; "
            f"mv -T {q(partial)} {q(final)}; rm -f {q(incoming)}"
        )
        await self._sh(target, unpack)

    # --- activate ---------------------------------------------------------------------------

    async def activate(self, target: Target, tag: str, *, previous: str | None) -> None:
        await self.stop(target, tag)
        await self.switch(target, tag, previous=previous)
        await self.start(target, tag)

    async def switch(self, target: Target, tag: str, *, previous: str | None) -> None:
        """Point ``current`` at an installed release by rename, then write the version files."""
        base = self.deploy_to(target)
        marker = posixpath.join(base, "releases", tag, MARKER)
        current_file = posixpath.join(base, f".current-{target.env}-version")
        previous_file = posixpath.join(base, f".previous-{target.env}-version")
        write_previous = (
            f"printf '%s\\n' {q(previous)} > {q(previous_file)}.tmp && "
            f"mv -f {q(previous_file)}.tmp {q(previous_file)}"
            if previous
            else f"rm -f {q(previous_file)}"
        )
        script = (
            "set -e; "
            f"cd {q(base)}; "
            f"[ -f {q(marker)} ] || {{ echo 'release {tag} is not fully installed' >&2; exit 66; }}; "
            f"ln -sfn {q(posixpath.join('releases', tag))} .current.tmp; "
            "mv -T .current.tmp current; "
            f"printf '%s\\n' {q(tag)} > {q(current_file)}.tmp && mv -f {q(current_file)}.tmp {q(current_file)}; "
            f"{write_previous}"
        )
        await self._sh(target, script)

    async def start(self, target: Target, tag: str) -> None:
        values = self.values(target, tag)
        if self.settings.start is not None:
            await target.host.run(
                self._argv(self.settings.start, values, "runtime.start"), timeout=300
            )
            return
        launcher = self.settings.launcher
        assert launcher is not None  # the config requires start or launcher
        argv = render_all(launcher.command, values, where="runtime.launcher.command")
        env = [
            f"{k}={render(v, values, where=f'runtime.launcher.env.{k}')}"
            for k, v in launcher.env.items()
        ]
        env.append(f"ROLLOUT_RELEASE={tag}")
        base = self.deploy_to(target)
        pidfile = posixpath.join(base, PIDFILE)
        logfile = posixpath.join(base, LOGFILE)
        # setsid detaches the app from this command's session so it outlives the connection.
        script = (
            "set -e; "
            f"mkdir -p {q(posixpath.dirname(pidfile))} {q(posixpath.dirname(logfile))} "
            f"{q(values['shared_dir'])}; "
            f"cd {q(values['release_dir'])}; "
            f"setsid env {shlex.join(env)} {shlex.join(argv)} >> {q(logfile)} 2>&1 < /dev/null & "
            f"echo $! > {q(pidfile)}.tmp && mv -f {q(pidfile)}.tmp {q(pidfile)}"
        )
        await self._sh(target, script)

    async def deactivate(self, target: Target) -> None:
        await self.stop(target, "none")
        base = self.deploy_to(target)
        files = [posixpath.join(base, n) for n in ("current", f".current-{target.env}-version")]
        await self._sh(target, f"rm -f {' '.join(q(f) for f in files)}")

    async def stop(self, target: Target, tag: str) -> None:
        """Stop the running app: the configured command, or the launcher's TERM, wait, KILL."""
        values = self.values(target, tag)
        if self.settings.stop is not None:
            await target.host.run(
                self._argv(self.settings.stop, values, "runtime.stop"), timeout=300
            )
            return
        if self.settings.launcher is None:
            return
        pidfile = posixpath.join(self.deploy_to(target), PIDFILE)
        ticks = max(1, int(self.settings.launcher.stop_timeout.total_seconds() * 20))
        script = (
            f"{_ALIVE}; "
            f"pid=$(cat {q(pidfile)} 2>/dev/null) || exit 0; "
            f'if alive "$pid"; then kill -TERM "$pid"; i=0; '
            f'  while alive "$pid"; do i=$((i+1)); '
            f'    if [ $i -ge {ticks} ]; then kill -KILL "$pid"; sleep 0.05; break; fi; sleep 0.05; done; '
            f"fi; rm -f {q(pidfile)}"
        )
        await self._sh(
            target, script, timeout=self.settings.launcher.stop_timeout.total_seconds() + 30
        )

    # --- health and state -------------------------------------------------------------------

    async def wait_healthy(self, target: Target, tag: str) -> str:
        url = self.health_url(target, tag)
        if url is None:
            return "no runtime.health_url configured; not waited for"
        return await health.wait_healthy(
            target.name,
            url,
            timeout=self.settings.health_timeout.total_seconds(),
            still_starting=(lambda: self._died(target)) if self.settings.launcher else None,
        )

    async def _died(self, target: Target) -> str | None:
        """None while the launched app runs; the tail of its log once it has exited."""
        base = self.deploy_to(target)
        script = (
            f'{_ALIVE}; alive "$(cat {q(posixpath.join(base, PIDFILE))} 2>/dev/null)" && exit 0; '
            f"tail -n 20 {q(posixpath.join(base, LOGFILE))} 2>/dev/null; exit 1"
        )
        result = await target.host.run(["sh", "-c", script], check=False)
        return None if result.ok else (result.stdout.strip() or "(no log output)")

    async def state(self, target: Target) -> HostState:
        base = self.deploy_to(target)
        script = (
            f"{_ALIVE}; cd {q(base)} 2>/dev/null || exit 0; "
            'echo "link=$(readlink current 2>/dev/null)"; '
            f'echo "current=$(cat .current-{target.env}-version 2>/dev/null)"; '
            f'echo "previous=$(cat .previous-{target.env}-version 2>/dev/null)"; '
            f'alive "$(cat {PIDFILE} 2>/dev/null)" && echo running=yes; '
            f'for d in releases/*/; do [ -f "$d{MARKER}" ] && echo "release=$(basename "$d")"; done; '
            "true"
        )
        lines = (await self._sh(target, script)).splitlines()
        fields: dict[str, str] = {}
        releases: list[str] = []
        for line in lines:
            key, _, value = line.partition("=")
            if key == "release":
                releases.append(value)
            else:
                fields[key] = value
        current = fields.get("current") or None
        running = fields.get("running") == "yes" if self.settings.launcher else None
        return HostState(
            host=target.name,
            current=current,
            previous=fields.get("previous") or None,
            running=running,
            link=posixpath.basename(fields.get("link", "")) or None,
            releases=tuple(sorted(releases)),
        )

    def logs_argv(
        self, target: Target, *, service: str | None, tail: int, follow: bool
    ) -> list[str]:
        if self.settings.launcher is None:
            raise BadInput(
                "this runtime starts the app through a service manager; its log is there",
                hint="e.g. rollout exec ENV -- journalctl -u <unit> -n 100",
            )
        if service not in (None, "web"):
            raise BadInput(f"release-dir apps have one log (web), not {service!r}")
        logfile = posixpath.join(self.deploy_to(target), LOGFILE)
        return ["tail", "-n", str(tail), *(["-F"] if follow else []), logfile]

    async def prune(self, target: Target, keep: int) -> list[str]:
        state = await self.state(target)
        base = posixpath.join(self.deploy_to(target), "releases")
        listing = await self._sh(target, f"cd {q(base)} && ls -1t")
        protected = {state.current, state.previous, state.link}
        candidates = [name for name in listing.split() if name in state.releases]
        doomed = [n for n in candidates[keep:] if n not in protected]
        if doomed:
            paths = " ".join(q(posixpath.join(base, n)) for n in doomed)
            await self._sh(target, f"rm -rf {paths}")
        return doomed
