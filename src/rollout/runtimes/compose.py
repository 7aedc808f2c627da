"""Docker compose: one image tag per release, chosen by ``IMAGE_TAG`` in the compose env file.

Layout on each host, under ``runtime.project_dir`` (taken under the host's root)::

    <compose_file>             uses ``image: registry/app:${IMAGE_TAG}`` for ``runtime.service``
    <env_file>                 ``IMAGE_TAG=<tag>`` rewritten atomically, every other line kept
    .current-<env>-version     the runbook's version files, as for release directories
    .previous-<env>-version

A release is "installed" when its image (``release.artifact`` with ``{tag}``, e.g.
``ghcr.io/org/app:{tag}``) is in the host's image store. ``HostState.link`` is the tag the
service's running container was actually started from (``ps``), which may differ from what the
version files say when someone ran compose by hand.

``runtime.command`` may be ``docker compose``, ``docker-compose`` or ``podman-compose``; it is
split with ``shlex`` and every value is ``shlex.quote``d into one ``sh -c`` script per step.
"""

from __future__ import annotations

import asyncio
import posixpath
import re
import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from rollout.config import ComposeRuntime
from rollout.errors import BadInput, HostError, NotHealthy
from rollout.model import CheckResult, CheckStatus, HostState
from rollout.runtimes import health
from rollout.runtimes.base import Artifact, Target
from rollout.runtimes.template import render

# What `inspect` prints per container, one line each, fields split by "|".
_INSPECT = (
    '{{index .Config.Labels "com.docker.compose.service"}}|{{.Config.Image}}|'
    "{{.State.Status}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}|{{.Id}}"
)
_IMAGE = "{{.Created}}|{{range .RepoTags}}{{.}} {{end}}"
_CREATED = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(\.\d+)?")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # podman-compose colours even with --no-color
_POLL = 0.5  # seconds between compose health polls (each one is a compose + an engine call)
_LOG_LINES = 20


def q(value: str) -> str:
    return shlex.quote(value)


@dataclass(frozen=True)
class Container:
    """One container of the service, as the engine reports it."""

    service: str
    image: str
    status: str  # created, running, restarting, exited, dead...
    health: str  # "" without a healthcheck; starting, healthy, unhealthy
    id: str

    @property
    def tag(self) -> str | None:
        return image_tag(self.image)

    @property
    def gone(self) -> bool:
        """Exited for good (a restart policy shows "restarting" instead)."""
        return self.status in ("exited", "dead", "removing")

    @property
    def healthy(self) -> bool:
        return self.status == "running" and self.health in ("", "healthy")

    def describe(self) -> str:
        state = self.status + (f", {self.health}" if self.health else "")
        return f"container {self.id[:12]} ({self.image}) {state}"


def _created_key(created: str) -> tuple[str, str, float]:
    """A sort key for an image's creation time as either engine prints it (to the ns)."""
    found = _CREATED.match(created.strip())
    if found is None:
        return ("", "", 0.0)
    return (found.group(1), found.group(2), float(found.group(3) or 0))


def image_tag(ref: str) -> str | None:
    """The tag of an image reference (``reg:5000/app:v1`` -> ``v1``), None without one."""
    name = ref.split("@", 1)[0]
    repo, colon, tag = name.rpartition(":")
    return tag if colon and "/" not in tag and repo else None


class ComposeReleases:
    """``Runtime`` for apps run by docker compose (or podman-compose), one image per release."""

    def __init__(self, settings: ComposeRuntime, image: str | None) -> None:
        self.settings = settings
        self.image = image  # release.artifact: the image reference with {tag}
        self.engine = settings.container_engine

    # --- paths, commands and templates -----------------------------------------------------

    def project_dir(self, target: Target) -> str:
        return target.path(self.settings.project_dir)

    def compose_file(self, target: Target) -> str:
        return target.path(self.settings.project_dir, self.settings.compose_file)

    def env_file(self, target: Target) -> str:
        return target.path(self.settings.project_dir, self.settings.env_file)

    def version_file(self, target: Target, which: str) -> str:
        return posixpath.join(self.project_dir(target), f".{which}-{target.env}-version")

    def values(self, target: Target, tag: str) -> dict[str, str]:
        """The placeholders a template may use on this host for this release."""
        return {
            "tag": tag,
            "env": target.env,
            "host": target.name,
            "root": target.host.root,
            "project_dir": self.project_dir(target),
            **target.vars,
        }

    def image_ref(self, target: Target, tag: str) -> str:
        if self.image is None:
            raise BadInput(
                "runtime.kind compose needs release.artifact: the image of a release",
                hint="e.g. release: {artifact: 'ghcr.io/your-org/app:{tag}'}",
            )
        return render(self.image, self.values(target, tag), where="release.artifact")

    def health_url(self, target: Target, tag: str) -> str | None:
        url = self.settings.health_url
        return (
            None
            if url is None
            else render(url, self.values(target, tag), where="runtime.health_url")
        )

    def check_templates(self, target: Target, tag: str) -> None:
        """Render every template once, so a typo fails the plan rather than a host."""
        self.health_url(target, tag)
        self.image_ref(target, tag)

    def _prelude(self, target: Target, *, cd: bool = True) -> str:
        """The start of every script: the configured environment, no stray IMAGE_TAG (the env
        file decides it), the env file as ``"$@"`` for `_compose` when it exists (docker
        compose refuses a missing one; the first activation creates it), and the project
        folder as working directory."""
        exports = "".join(f"export {k}={q(v)}; " for k, v in self.settings.env.items())
        env_file = q(self.env_file(target))
        where = f"cd {q(self.project_dir(target))} || exit 66; " if cd else ""
        return (
            f"unset IMAGE_TAG; {exports}"
            f"if [ -f {env_file} ]; then set -- --env-file {env_file}; else set --; fi; "
            f"{where}"
        )

    def _compose(self, target: Target, *args: str) -> str:
        """``<command> -f FILE [--env-file FILE] [-p PROJECT] ARGS`` for a script that starts
        with `_prelude` (which puts ``--env-file FILE`` in ``"$@"``)."""
        project = ["-p", self.settings.project] if self.settings.project is not None else []
        base = shlex.join([*self.settings.command_argv, "-f", self.compose_file(target)])
        return f'{base} "$@" {shlex.join([*project, *args])}'

    def _engine(self, *args: str) -> str:
        return shlex.join([self.engine, *args])

    async def _sh(self, target: Target, script: str, timeout: float | None = 120) -> str:
        result = await target.host.run(["sh", "-c", script], timeout=timeout)
        return result.stdout

    # --- pre-flight and install ------------------------------------------------------------

    async def preflight(self, target: Target, tag: str) -> list[CheckResult]:
        """The compose file is there, the compose command answers, the release's image exists:
        checked at once (one round trip each, side by side), before anything changes."""
        return list(
            await asyncio.gather(
                self._check_compose_file(target),
                self._check_command(target),
                self._check_image(target, tag),
            )
        )

    async def _check_compose_file(self, target: Target) -> CheckResult:
        path = self.compose_file(target)
        result = await target.host.run(["test", "-f", path], check=False, timeout=60)
        return CheckResult(
            "compose-file",
            CheckStatus.PASS if result.ok else CheckStatus.FAIL,
            "present" if result.ok else "missing",
            "present",
            path,
            ""
            if result.ok
            else "put the compose file on the host, or fix runtime.project_dir / compose_file",
            target.name,
        )

    async def _check_command(self, target: Target) -> CheckResult:
        version = shlex.join([*self.settings.command_argv, "version"])
        script = f"{self._prelude(target, cd=False)}{version} 2>&1"
        result = await target.host.run(["sh", "-c", script], check=False, timeout=60)
        first = result.output.splitlines()[0] if result.output else ""
        return CheckResult(
            "compose-command",
            CheckStatus.PASS if result.ok else CheckStatus.FAIL,
            first if result.ok else f"exit {result.exit_status}",
            f"`{self.settings.command} version` answers",
            result.output[-500:],
            ""
            if result.ok
            else f"install {self.settings.command} on the host, or fix runtime.command",
            target.name,
        )

    async def _check_image(self, target: Target, tag: str) -> CheckResult:
        if self.image is None:
            return CheckResult(
                "image",
                CheckStatus.FAIL,
                "unknown",
                "release.artifact names the image",
                "runtime.kind compose finds a release by its image",
                "set release.artifact, e.g. 'ghcr.io/your-org/app:{tag}'",
                target.name,
            )
        ref = self.image_ref(target, tag)
        where, detail = await self._find_image(target, ref)
        look = "locally or in its registry" if self.settings.pull else "locally (pull: false)"
        return CheckResult(
            "image",
            CheckStatus.PASS if where else CheckStatus.FAIL,
            ref if where is None else f"{ref} ({where})",
            f"exists {look}",
            detail,
            ""
            if where
            else f"build and push {ref}"
            + ("" if self.settings.pull else f", or load it on {target.name}")
            + "; or check release.artifact and the tag",
            target.name,
        )

    async def _find_image(self, target: Target, ref: str) -> tuple[str | None, str]:
        """Where the image is ("local", "registry") or None, with the engine's words."""
        registry = (
            f"err=$({self._engine('manifest', 'inspect', ref)} 2>&1 >/dev/null) "
            "&& { echo registry; exit 0; }; printf '%s\\n' \"$err\" >&2; "
            if self.settings.pull
            else ""
        )
        script = (
            f"{self._prelude(target, cd=False)}"
            f"if {self._engine('image', 'inspect', ref)} >/dev/null 2>&1; "
            "then echo local; exit 0; fi; "
            f"{registry}exit 1"
        )
        result = await target.host.run(["sh", "-c", script], check=False, timeout=60)
        if result.ok:
            where = result.stdout.strip()
            place = "on the host" if where == "local" else "in its registry"
            return where, f"{self.engine}: {ref} found {place}"
        reason = result.stderr.strip().splitlines()[-1:] or ["not in the host's image store"]
        return None, f"{self.engine}: {ref} not found: {reason[0]}"

    async def installed(self, target: Target, tag: str) -> bool:
        ref = self.image_ref(target, tag)
        inspect = self._engine("image", "inspect", ref)
        script = f"{self._prelude(target, cd=False)}{inspect} >/dev/null 2>&1"
        result = await target.host.run(["sh", "-c", script], check=False, timeout=60)
        return result.ok

    async def install(self, target: Target, tag: str, artifact: Artifact | None) -> None:
        """Pull the release's image (``runtime.pull``) or make sure it is already there."""
        ref = self.image_ref(target, tag)
        if not self.settings.pull:
            if not await self.installed(target, tag):
                raise HostError(
                    target.name,
                    f"image {ref} is not on the host and runtime.pull is false",
                    hint=f"load it there ({self.engine} load / pull), or set runtime.pull: true",
                )
            return
        service = self.settings.service
        absent = (
            f"pulled {service}, but {ref} is not on the host: "
            "does its image in the compose file use ${IMAGE_TAG}?"
        )
        # IMAGE_TAG in the environment wins over the env file: pull the new image, run nothing.
        script = (
            f"{self._prelude(target)}"
            f"export IMAGE_TAG={q(tag)}; {self._compose(target, 'pull', service)} || exit $?; "
            f"{self._engine('image', 'inspect', ref)} >/dev/null 2>&1 || {{ "
            f"echo {q(absent)} >&2; "
            "exit 65; }"
        )
        await self._sh(target, script, timeout=900)

    # --- activate --------------------------------------------------------------------------

    async def activate(self, target: Target, tag: str, *, previous: str | None) -> None:
        """IMAGE_TAG=<tag> into the env file (atomically), ``up -d`` the service, then the
        version files; one script, stopping at the first failure."""
        env_file = self.env_file(target)
        tmp = f"{env_file}.rollout-tmp"
        current_file = self.version_file(target, "current")
        previous_file = self.version_file(target, "previous")
        # Replace the first IMAGE_TAG line in place (dropping repeats), or append one; the tag
        # reaches awk through its environment, so nothing in it is interpreted.
        rewrite = (
            'BEGIN { t = ENVIRON["ROLLOUT_TAG"] } '
            "/^[[:space:]]*(export[[:space:]]+)?IMAGE_TAG[[:space:]]*=/ "
            '{ if (!done) print "IMAGE_TAG=" t; done = 1; next } '
            "{ print } "
            'END { if (!done) print "IMAGE_TAG=" t }'
        )
        write_previous = (
            f"printf '%s\\n' {q(previous)} > {q(previous_file)}.tmp && "
            f"mv -f {q(previous_file)}.tmp {q(previous_file)}"
            if previous
            else f"rm -f {q(previous_file)}"
        )
        script = (
            "set -e; "
            f"{self._prelude(target)}"
            f"trap {q(f'rm -f {q(tmp)}')} EXIT; "
            f"mkdir -p {q(posixpath.dirname(env_file))}; "
            # A copy keeps the env file's owner and mode (it holds secrets); new ones are 0600.
            f"if [ -f {q(env_file)} ]; then cp -p {q(env_file)} {q(tmp)}; src={q(env_file)}; "
            f"else (umask 077; : > {q(tmp)}); src=/dev/null; fi; "
            f'ROLLOUT_TAG={q(tag)} awk {q(rewrite)} "$src" > {q(tmp)}; '
            f"mv -f {q(tmp)} {q(env_file)}; "
            f"set -- --env-file {q(env_file)}; "  # it exists now, if it did not before
            f"{self._compose(target, 'up', '-d', self.settings.service)}; "
            f"printf '%s\\n' {q(tag)} > {q(current_file)}.tmp && "
            f"mv -f {q(current_file)}.tmp {q(current_file)}; "
            f"{write_previous}"
        )
        await self._sh(target, script, timeout=600)

    async def deactivate(self, target: Target) -> None:
        """Stop the service (never the whole project: a database may live in it) and forget
        the current version."""
        script = (
            "set -e; "
            f"{self._prelude(target)}"
            f"{self._compose(target, 'stop', self.settings.service)}; "
            f"rm -f {q(self.version_file(target, 'current'))}"
        )
        await self._sh(target, script, timeout=300)

    # --- health and state -------------------------------------------------------------------

    async def containers(self, target: Target) -> list[Container] | None:
        """The service's containers (running ones first); None when compose could not tell.

        With ``runtime.project`` the engine is asked directly, by the labels both docker
        compose and podman-compose put on containers (one fast call, exited ones included);
        without, ``compose ps`` finds the project the way the tool itself names it."""
        if self.settings.project is not None:
            listing = self._engine(
                "ps",
                "-a",
                "-q",
                "--filter",
                f"label=com.docker.compose.project={self.settings.project}",
                "--filter",
                f"label=com.docker.compose.service={self.settings.service}",
            )
            prelude = self._prelude(target, cd=False)
        else:
            listing = self._compose(target, "ps", "-q")
            prelude = self._prelude(target)
        script = (
            f"{prelude}"
            f"ids=$({listing} 2>/dev/null) || {{ echo ps-failed; exit 0; }}; "
            "ids=$(printf '%s\\n' \"$ids\" | grep -E '^[0-9a-f]{12,64}$') || exit 0; "
            f"{self._engine('inspect', '--format', _INSPECT)} $ids 2>/dev/null || true"
        )
        result = await target.host.run(["sh", "-c", script], check=False, timeout=60)
        lines = result.stdout.splitlines()
        if "ps-failed" in lines or result.exit_status == 66:
            return None
        found = []
        for line in lines:
            parts = line.split("|")
            if len(parts) == 5 and parts[0] == self.settings.service:
                found.append(Container(*parts))
        return sorted(found, key=lambda c: c.status != "running")

    async def _log_tail(self, target: Target) -> str:
        logs = self._compose(
            target, "logs", "--no-color", "--tail", str(_LOG_LINES), self.settings.service
        )
        script = f"{self._prelude(target)}{logs} 2>&1 | tail -n {_LOG_LINES}"
        result = await target.host.run(["sh", "-c", script], check=False, timeout=60)
        return _ANSI.sub("", result.stdout).strip() or "(no log output)"

    async def _died(self, target: Target) -> str | None:
        """None while the service's container runs (or compose cannot tell); else why not."""
        containers = await self.containers(target)
        if containers is None or (containers and not containers[0].gone):
            return None
        return self._died_text(containers)

    async def wait_healthy(self, target: Target, tag: str) -> str:
        """The health URL when one is configured; else compose's own view: the container
        healthy, or running when the service has no healthcheck. A failure carries the tail of
        the service's log."""
        timeout = self.settings.health_timeout.total_seconds()
        url = self.health_url(target, tag)
        if url is None:
            return await self._wait_container(target, timeout)
        try:
            return await health.wait_healthy(
                target.name,
                url,
                timeout=timeout,
                still_starting=_at_most_every(1.0, lambda: self._died(target)),
            )
        except NotHealthy as exc:
            reason = exc.message.removeprefix(f"{target.name}: ")
            logs = await self._log_tail(target)
            raise NotHealthy(target.name, f"{reason}\n{logs}", hint=exc.hint) from exc

    async def _wait_container(self, target: Target, timeout: float) -> str:
        started = time.monotonic()
        deadline = started + timeout
        last = "no container yet"
        while True:
            pause = _POLL
            containers = await self.containers(target)
            if containers is not None:
                # "unhealthy" is the engine's verdict after the healthcheck's own retries.
                if not containers or containers[0].gone or containers[0].health == "unhealthy":
                    raise NotHealthy(
                        target.name,
                        f"{self._died_text(containers)}\n{await self._log_tail(target)}",
                    )
                container = containers[0]
                last = container.describe()
                if container.healthy:
                    return f"{last} after {time.monotonic() - started:.1f}s"
                if container.health == "starting" and self.engine == "podman":
                    await self._run_healthcheck(target, container)
                    pause = 0.1  # the check just ran: look at its verdict at once
            if time.monotonic() + pause > deadline:
                raise NotHealthy(
                    target.name,
                    f"{self.settings.service} not healthy within {timeout:.0f}s (last: {last})\n"
                    f"{await self._log_tail(target)}",
                    hint="check the service's log, its healthcheck and runtime.health_timeout",
                )
            await asyncio.sleep(pause)

    def _died_text(self, containers: list[Container]) -> str:
        if not containers:
            return f"no container of {self.settings.service} runs"
        container = containers[0]
        if container.health == "unhealthy" and not container.gone:
            return f"{container.describe()}: its healthcheck failed"
        return f"{container.describe()} before it was healthy"

    async def _run_healthcheck(self, target: Target, container: Container) -> None:
        """Podman runs healthchecks from systemd timers; without systemd nothing runs them, so
        run one now (harmless with systemd: one extra check)."""
        script = (
            f"{self._prelude(target, cd=False)}{self._engine('healthcheck', 'run', container.id)}"
        )
        await target.host.run(["sh", "-c", script + " >/dev/null 2>&1"], check=False, timeout=60)

    async def state(self, target: Target) -> HostState:
        """The version files, and what really runs: ``link`` is the tag of the image the
        service's running container was started from (None when none runs)."""
        script = (
            f"cd {q(self.project_dir(target))} 2>/dev/null || exit 0; "
            f'echo "current=$(cat .current-{target.env}-version 2>/dev/null)"; '
            f'echo "previous=$(cat .previous-{target.env}-version 2>/dev/null)"'
        )
        files, containers, releases = await asyncio.gather(
            self._sh(target, script, timeout=60), self.containers(target), self.local_tags(target)
        )
        fields = dict(line.partition("=")[::2] for line in files.splitlines())
        running = None if containers is None else any(c.status == "running" for c in containers)
        live = containers[0] if containers and containers[0].status == "running" else None
        return HostState(
            host=target.name,
            current=fields.get("current") or None,
            previous=fields.get("previous") or None,
            running=running,
            link=live.tag if live else None,
            healthy=None if live is None or not live.health else live.health == "healthy",
            releases=tuple(sorted(releases)),
        )

    async def local_tags(self, target: Target) -> list[str]:
        """Release tags whose image is in the host's store, newest first; [] without
        release.artifact (or one whose repository depends on the tag)."""
        if self.image is None:
            return []
        probe = "\x00tag\x00"
        pattern = self.image_ref(target, probe)
        repo, _, tag_part = pattern.split("@", 1)[0].rpartition(":")
        if probe in repo or probe not in tag_part:
            return []
        match = re.compile(re.escape(tag_part).replace(re.escape(probe), "(.+)"))
        # The engines sort `images` by creation to the second only; sort by the exact time.
        script = (
            f"{self._prelude(target, cd=False)}"
            f"ids=$({self._engine('images', '-q', repo)} 2>/dev/null | sort -u); "
            '[ -z "$ids" ] || '
            f"{self._engine('image', 'inspect', '--format', _IMAGE)} $ids 2>/dev/null; true"
        )
        result = await target.host.run(["sh", "-c", script], check=False, timeout=60)
        found: dict[str, tuple[str, str, float]] = {}
        for line in result.stdout.splitlines():
            created, _, refs = line.partition("|")
            for ref in refs.split():
                name, _, tag = ref.rpartition(":")
                hit = match.fullmatch(tag)
                if hit and (name == repo or name.endswith(f"/{repo}")):
                    found[hit.group(1)] = _created_key(created)
        return sorted(found, key=lambda t: found[t], reverse=True)

    def logs_argv(
        self, target: Target, *, service: str | None, tail: int, follow: bool
    ) -> list[str]:
        args = ["logs", "--no-color", "--tail", str(tail), *(["-f"] if follow else [])]
        script = (
            f"{self._prelude(target)}"
            f"exec {self._compose(target, *args, service or self.settings.service)}"
        )
        return ["sh", "-c", script]

    async def prune(self, target: Target, keep: int) -> list[str]:
        """Remove the release images beyond the newest ``keep``, never the current, previous
        or running one; an image a container still uses stays (the engine refuses)."""
        if self.image is None:
            return []
        state = await self.state(target)
        protected = {state.current, state.previous, state.link}
        doomed = [t for t in (await self.local_tags(target))[keep:] if t not in protected]
        if not doomed:
            return []
        removals = " ".join(
            f"{self._engine('rmi', self.image_ref(target, t))} >/dev/null 2>&1 && echo {q(t)};"
            for t in doomed
        )
        output = await self._sh(target, f"{self._prelude(target, cd=False)}{removals} true")
        return output.split()


def _at_most_every(
    seconds: float, check: Callable[[], Awaitable[str | None]]
) -> Callable[[], Awaitable[str | None]]:
    """``check``, run at most once per ``seconds`` (it costs a compose call); None between."""
    last = 0.0

    async def throttled() -> str | None:
        nonlocal last
        if time.monotonic() - last < seconds:
            return None
        last = time.monotonic()
        return await check()

    return throttled
