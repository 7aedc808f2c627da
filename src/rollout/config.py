"""The runbook file, rollout.yml: its models and the loader that reads it.

``load_runbook`` turns the file into a frozen ``Runbook`` or raises one ``ConfigError`` naming
every problem as ``file:line: field.path: message``. The lines come from ``yaml_source``, which
also resolves ``${VAR}`` references from the environment and registers every resolved value with
the runbook's ``Redactor``; pydantic's errors are translated here into issues at those lines.
"""

from __future__ import annotations

import math
import os
import re
import types
import typing
from collections.abc import Mapping
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from rollout.errors import BadInput, ConfigError, ConfigIssue
from rollout.redact import Redactor
from rollout.yaml_source import Document, FieldPath, dotted, read_document

DEFAULT_TAG_PATTERN = r"^v\d{4}\.\d{2}\.\d{2}-[0-9a-f]{7,40}$"

# --- Value types -------------------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_HOST_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def _shown(value: object) -> str:
    """A bad value as quoted in a message: short, since it may be a whole mapping."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _number(value: object) -> float | None:
    """A finite number from YAML, or from a string such as a resolved ``${VAR}``."""
    # bool is an int in Python, but `true` is never meant as a number of seconds or percent.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _duration_seconds(value: object) -> float | None:
    number = _number(value)
    if number is not None or not isinstance(value, str):
        return number
    match = _DURATION.fullmatch(value.strip())
    return None if match is None else float(match[1]) * _UNIT_SECONDS[match[2]]


def parse_duration(value: object) -> timedelta:
    """``"100ms"``, ``"10s"``, ``"30m"``, ``"2h"``, ``"1d"``, ``"1w"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    seconds = _duration_seconds(value)
    if seconds is None or seconds < 0 or seconds > 10 * 365 * 86400:
        raise PydanticCustomError(
            "duration", "expected a duration like 30s, 5m, 2h (got {got})", {"got": _shown(value)}
        )
    return timedelta(seconds=seconds)


def parse_percent(value: object) -> float:
    """``"70%"``, ``"99.9%"`` or ``70``: a percentage from 0 to 100."""
    text = value.strip().removesuffix("%") if isinstance(value, str) else value
    number = _number(text)
    if number is None or not 0 <= number <= 100:
        raise PydanticCustomError(
            "percent",
            "expected a percentage from 0 to 100 like 70% (got {got})",
            {"got": _shown(value)},
        )
    return number


def _parse_batch(value: object) -> int | str:
    """A number of hosts (``2``), or a share of them kept as a normalised string (``"25%"``)."""
    if isinstance(value, str) and value.strip().endswith("%"):
        share = _number(value.strip()[:-1])
        if share is not None and 0 < share <= 100:
            return f"{share:g}%"
    else:
        number = _number(value)
        if number is not None and number >= 1 and number == int(number):
            return int(number)
    raise PydanticCustomError(
        "batch",
        "expected a number of hosts (1 or more) or a percentage like 25% (got {got})",
        {"got": _shown(value)},
    )


def _check_slug(value: str) -> str:
    if _SLUG.fullmatch(value) is None:
        raise PydanticCustomError(
            "slug",
            "expected a short name of lowercase letters, digits, '-' and '_' (got {got})",
            {"got": _shown(value)},
        )
    return value


def _check_host_name(value: str) -> str:
    if _HOST_NAME.fullmatch(value) is None:
        raise PydanticCustomError(
            "host_name",
            "expected a name of letters, digits, '.', '_' and '-' (got {got})",
            {"got": _shown(value)},
        )
    return value


def _check_duration_key(value: str) -> str:
    parse_duration(value)
    return value


def _parse_follow_up(value: object) -> str | dict[str, str]:
    """A post-deployment activity: ``retrospective``, or ``{retrospective: alice}`` with its owner."""
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, dict) and len(value) == 1:
        ((name, owner),) = value.items()
        if isinstance(name, str) and isinstance(owner, str) and name.strip() and owner.strip():
            return {name.strip(): owner.strip()}
    raise PydanticCustomError(
        "follow_up",
        "expected an activity name, or one `activity: owner` pair (got {got})",
        {"got": _shown(value)},
    )


# As data (JSON) a duration is its number of seconds, which parse_duration reads back.
Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(lambda d: d.total_seconds(), return_type=float, when_used="json"),
]
Percent = Annotated[float, PlainValidator(parse_percent)]
Batch = Annotated[int | str, PlainValidator(_parse_batch)]
Slug = Annotated[str, AfterValidator(_check_slug)]
HostName = Annotated[str, AfterValidator(_check_host_name)]
DurationKey = Annotated[str, AfterValidator(_check_duration_key)]
FollowUpItem = Annotated[str | dict[str, str], PlainValidator(_parse_follow_up)]


class _Section(BaseModel):
    # Unknown keys are typos until proven otherwise; a loaded runbook never changes.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _section() -> Any:
    """The default of a section left out: ``{}`` validated by the enclosing model.

    Not ``default_factory=TheSection``: calling the class builds that model's own validator, a
    second copy of a schema the runbook's validator already holds, which cost every command
    ~60 ms when most sections are left out.
    """
    return Field(default_factory=dict, validate_default=True)


# --- release and runtime -----------------------------------------------------------------------


class ReleaseSettings(_Section):
    tag_pattern: str = DEFAULT_TAG_PATTERN
    keep: int = Field(default=5, ge=1)
    artifact: str | None = None

    @field_validator("tag_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value

    @field_validator("artifact")
    @classmethod
    def _names_the_tag(cls, value: str | None) -> str | None:
        if value is not None and "{tag}" not in value:
            raise ValueError("must contain {tag}, e.g. dist/app-{tag}.tar.gz")
        return value


class Launcher(_Section):
    """rollout's own process launcher, for hosts without a service manager."""

    # Numbers in commands and env (ports) are meant as text.
    model_config = ConfigDict(
        extra="forbid", frozen=True, defer_build=True, coerce_numbers_to_str=True
    )

    command: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    stop_timeout: Duration = timedelta(seconds=10)


class ReleaseDirRuntime(_Section):
    """Releases unpacked side by side on each host, switched by a symlink."""

    kind: Literal["release-dir"] = "release-dir"
    path: str = "app"
    start: str | list[str] | None = None
    stop: str | list[str] | None = None
    launcher: Launcher | None = None
    health_url: str | None = None
    health_timeout: Duration = timedelta(seconds=30)

    @model_validator(mode="after")
    def _one_way_to_start(self) -> Self:
        if self.start is None and self.launcher is None:
            raise ValueError("give `start` (a service manager command) or `launcher`")
        if self.start is not None and self.launcher is not None:
            raise ValueError("give `start` or `launcher`, not both")
        return self


class ComposeRuntime(_Section):
    """The app run by docker compose (or a compatible tool), one image tag per release."""

    kind: Literal["compose"] = "compose"
    command: str = "docker compose"
    # The container engine that answers "does this image exist"; None: guessed from `command`.
    engine: Literal["docker", "podman"] | None = None
    compose_file: str = "docker-compose.yml"
    env_file: str = ".env"
    project_dir: str = "."
    service: str = "web"
    pull: bool = True
    health_url: str | None = None
    health_timeout: Duration = timedelta(seconds=60)
    # The compose project name (`-p`); None: the tool's own default (the compose file's folder).
    project: str | None = None
    # Extra environment for every compose and engine command (DOCKER_HOST, CONTAINERS_CONF...).
    env: dict[str, str] = Field(default_factory=dict)

    @field_validator("env", mode="before")
    @classmethod
    def _env_as_text(cls, value: object) -> object:
        # Ports and timeouts read as YAML numbers are meant as text.
        if isinstance(value, dict):
            return {
                k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v
                for k, v in value.items()
            }
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is None:
                raise ValueError(f"{name!r} is not an environment variable name")
        return value

    @field_validator("project")
    @classmethod
    def _project_name(cls, value: str | None) -> str | None:
        if value is not None and re.fullmatch(r"[a-z0-9][a-z0-9_-]*", value) is None:
            raise ValueError(
                "lowercase letters, digits, '-' and '_', starting with a letter or digit"
            )
        return value

    @model_validator(mode="after")
    def _engine_known(self) -> Self:
        _ = self.container_engine  # raises on a command that cannot be split or placed
        return self

    @property
    def command_argv(self) -> list[str]:
        """`command` split like a shell would, never pasted into one."""
        import shlex

        try:
            argv = shlex.split(self.command)
        except ValueError as exc:
            raise ValueError(f"command: cannot split {self.command!r}: {exc}") from exc
        if not argv:
            raise ValueError("command: empty; e.g. docker compose, docker-compose, podman-compose")
        return argv

    @property
    def container_engine(self) -> Literal["docker", "podman"]:
        """`engine`, or the one `command` belongs to (docker compose -> docker, podman-compose -> podman)."""
        if self.engine is not None:
            return self.engine
        program = self.command_argv[0].rsplit("/", 1)[-1]
        if program in ("docker", "docker-compose"):
            return "docker"
        if program in ("podman", "podman-compose"):
            return "podman"
        raise ValueError(f"engine: cannot tell from command {self.command!r}; set docker or podman")


Runtime = Annotated[ReleaseDirRuntime | ComposeRuntime, Field(discriminator="kind")]
RUNTIME_KINDS = ("release-dir", "compose")


# --- environments ------------------------------------------------------------------------------


class HostConfig(_Section):
    # `vars` hold ports and paths, which YAML reads as numbers; templates want text.
    model_config = ConfigDict(
        extra="forbid", frozen=True, defer_build=True, coerce_numbers_to_str=True
    )

    name: HostName
    address: str
    kind: Literal["local", "ssh"] = "ssh"
    user: str | None = None
    port: int = Field(default=22, ge=1, le=65535)
    key_file: str | None = None  # overrides ssh.key_file for this host
    sudo: bool = False  # run commands through `sudo -n`
    proxy_jump: str | None = None  # [user@]host[:port] to reach this host through
    root: str | None = None
    roles: list[str] = Field(default_factory=list)
    vars: dict[str, str] = Field(default_factory=dict)
    url: str | None = None

    @model_validator(mode="after")
    def _local_has_root(self) -> Self:
        if self.kind == "local" and not self.root:
            raise ValueError("a local host needs `root`, the folder standing for its filesystem")
        return self


class MigrationsConfig(_Section):
    """The app's schema migrations: read, linted and applied by `rollout db plan|migrate`."""

    kind: Literal["alembic", "sql"] = "alembic"
    path: str = "migrations"  # alembic: the folder holding alembic.ini; sql: a folder of NNN_*.sql
    lock_timeout: Duration = timedelta(
        seconds=2
    )  # a DDL waiting longer gives up, never blocks reads
    statement_timeout: Duration = timedelta(minutes=15)
    retries: int = Field(default=5, ge=0)  # lock timeouts retried with backoff
    allow_contract: bool = (
        False  # deploys refuse contract migrations unless this or --allow-contract
    )


class DatabaseConfig(_Section):
    url: str
    via: str | None = None
    backups: str | None = None
    verify_level: int = Field(default=3, ge=1, le=3)
    sanity_queries: list[str] = Field(default_factory=list)
    backup_before_deploy: bool = True  # the deploy's backup phase: a verified backup first
    compression: int | None = Field(default=None, ge=0, le=9)  # pg_dump -Z; None: its default
    keep: int = Field(default=10, ge=1)  # backups kept by `rollout db prune`
    max_age: Duration | None = None  # and none older than this (the newest verified one stays)
    migrations: MigrationsConfig | None = None


class Environment(_Section):
    url: str | None = None
    hosts: list[HostConfig] = Field(min_length=1)
    batch: Batch = 1
    parallel: int = Field(default=16, ge=1)  # hosts worked on at once (installs, checks, exec)
    database: DatabaseConfig | None = None

    @field_validator("hosts")
    @classmethod
    def _unique_names(cls, hosts: list[HostConfig]) -> list[HostConfig]:
        names = [h.name for h in hosts]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"host names must be unique: {', '.join(repeated)} repeated")
        return hosts

    @field_validator("database")
    @classmethod
    def _via_known_host(
        cls, database: DatabaseConfig | None, info: ValidationInfo
    ) -> DatabaseConfig | None:
        # Hosts come first in the model, so they are in info.data unless they were invalid.
        names = [h.name for h in info.data.get("hosts", [])]
        via = None if database is None else database.via
        if via is not None and names and via not in names:
            raise ValueError(f"via: no host named {via!r} (hosts: {', '.join(names)})")
        return database

    def batch_size(self, n_hosts: int) -> int:
        """How many of ``n_hosts`` to switch at a time: a share rounds up; at least 1."""
        if isinstance(self.batch, int):
            size = self.batch
        else:
            # Fractions, since float rounding would turn 10% of 30 hosts into 4.
            size = math.ceil(Fraction(self.batch[:-1]) * n_hosts / 100)
        return max(1, min(size, n_hosts))


class SshSettings(_Section):
    """How rollout reaches `kind: ssh` hosts. Host keys are always verified."""

    known_hosts: str = "~/.ssh/known_hosts"  # relative paths are taken from the config's folder
    key_file: str | None = None  # None: the agent and ~/.ssh default keys
    agent: bool = True
    connect_timeout: Duration = timedelta(seconds=10)
    command_timeout: Duration = timedelta(minutes=10)
    keepalive_interval: Duration = timedelta(seconds=15)
    keepalive_count_max: int = Field(default=3, ge=1)
    # Keep connections open this long after their last use, in a local holder process, so the
    # next run skips the handshake (OpenSSH's ControlPersist). 0: each run closes its own.
    persist: Duration = timedelta(0)
    control_dir: str | None = None  # the holder's private folder; default $XDG_RUNTIME_DIR/rollout


# --- gates: readiness, checks, verify ----------------------------------------------------------


class Approvals(_Section):
    count: int = Field(default=0, ge=0)
    distinct_people: bool = True
    roles: list[str] = Field(default_factory=list)


class Window(_Section):
    min: Duration | None = None
    max: Duration | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is longer than max")
        return self


class Readiness(_Section):
    approvals: Approvals = _section()
    require: list[str] = Field(default_factory=list)
    window: Window = _section()


class Checks(_Section):
    certificate_min_days: int = 30
    cpu_max: Percent = 70.0
    memory_max: Percent = 80.0
    disk_max: Percent = 80.0
    disk_mounts: list[str] = Field(default_factory=lambda: ["/"])
    backup_max_age: Duration = timedelta(hours=26)
    monitoring_url: str | None = None


class Endpoint(_Section):
    path: str
    method: str = "GET"
    conditions: list[str] = Field(default_factory=lambda: ["[STATUS] < 400"])
    timeout: Duration = timedelta(seconds=10)

    @field_validator("path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        return value

    @field_validator("method")
    @classmethod
    def _upper_case(cls, value: str) -> str:
        return value.upper()

    @field_validator("conditions")
    @classmethod
    def _parse(cls, conditions: list[str]) -> list[str]:
        # Parsed now so a typo is a config error with its line, never a check that passes.
        from rollout.checks.conditions import parse

        for condition in conditions:
            try:
                parse(condition)
            except BadInput as exc:
                raise ValueError(f"{exc.message}; {exc.hint}" if exc.hint else exc.message) from exc
        return conditions


class VersionCheck(_Section):
    path: str = "/api/version"
    field: str = "version"
    settle: Duration = timedelta(seconds=10)  # how long the new release may take to answer
    streak: int = Field(default=3, ge=1)  # matching answers in a row, each on a fresh connection


class LoadCheck(_Section):
    requests: int = Field(default=200, ge=1)
    concurrency: int = Field(default=10, ge=1)
    thresholds: list[str] = Field(default_factory=list)

    @field_validator("thresholds")
    @classmethod
    def _parse(cls, thresholds: list[str]) -> list[str]:
        from rollout.checks.load import parse_threshold

        for threshold in thresholds:
            try:
                parse_threshold(threshold)
            except BadInput as exc:
                raise ValueError(exc.message) from exc
        return thresholds


class HeadersCheck(_Section):
    required: list[str] = Field(default_factory=list)
    min_grade: str | None = None


class TlsCheck(_Section):
    min_grade: str = "A"


class Verify(_Section):
    endpoints: list[Endpoint] = Field(default_factory=list)
    version: VersionCheck | None = None
    load: LoadCheck | None = None
    headers: HeadersCheck | None = None
    tls: TlsCheck | None = None


# --- after the switch: monitor, incidents, notify, people --------------------------------------


class Metric(_Section):
    # Thresholds stay raw ("2s", "1%", "80"): their unit depends on the metric, known to the judge.
    model_config = ConfigDict(
        extra="forbid", frozen=True, defer_build=True, coerce_numbers_to_str=True
    )

    source: Literal["probe", "prometheus", "host", "database", "logs"]
    query: str | None = None
    stat: Literal["p50", "p90", "p95", "p99", "mean", "error_rate", "health"] | None = None
    max: str | None = None
    min: str | None = None
    trend: str | None = None
    # Kayenta-style comparison with the previous release: which way is worse, and whether a
    # failing comparison fails the whole window whatever the score.
    direction: Literal["increase", "decrease", "either"] = "increase"
    critical: bool = False

    @model_validator(mode="after")
    def _prometheus_has_query(self) -> Self:
        from rollout.monitor.rules import parse_threshold

        if self.source == "prometheus" and not self.query:
            raise ValueError("a prometheus metric needs a `query`")
        if self.query is not None:
            from rollout.monitor.rules import check_promql

            check_promql(self.query)
        for bound in (self.max, self.min):
            if bound is not None:
                parse_threshold(bound, self.source)  # a unit that does not parse: exit 2 now
        return self

    def limit(self, bound: str | None) -> float | None:
        from rollout.monitor.rules import parse_threshold

        return None if bound is None else parse_threshold(bound, self.source)


class MonitorSources(_Section):
    prometheus: str | None = None


class Monitor(_Section):
    window: Duration = timedelta(minutes=30)
    interval: Duration = timedelta(seconds=10)
    baseline: Duration | None = None
    # What the probe reads on every host each interval: these paths, else the verify endpoints
    # (the health URL always).
    paths: list[str] = Field(default_factory=list)
    metrics: dict[str, Metric] = Field(default_factory=dict)
    sources: MonitorSources = _section()
    failure_limit: int = Field(default=3, ge=1)
    consecutive_error_limit: int = Field(default=4, ge=1)

    @model_validator(mode="after")
    def _prometheus_configured(self) -> Self:
        users = [n for n, m in self.metrics.items() if m.source == "prometheus"]
        if users and not self.sources.prometheus:
            raise ValueError(f"sources.prometheus is needed by metrics: {', '.join(users)}")
        return self


class IncidentLevel(_Section):
    when: list[str] = Field(default_factory=list)
    respond_within: Duration
    actions: list[str] = Field(default_factory=list)
    persists: Duration | None = None

    @field_validator("actions")
    @classmethod
    def _known_actions(cls, actions: list[str]) -> list[str]:
        from rollout.monitor.rules import check_actions

        check_actions(actions)
        return actions


class Incidents(_Section):
    level1: IncidentLevel | None = None
    level2: IncidentLevel | None = None
    level3: IncidentLevel | None = None


class StatusPage(_Section):
    dir: str
    components: list[str] = Field(default_factory=list)


class Notify(_Section):
    deployments: list[str] = Field(default_factory=list)
    incidents: list[str] = Field(default_factory=list)
    paging: list[str] = Field(default_factory=list)
    status_page: StatusPage | None = None


class OnCall(_Section):
    name: str
    notify: str


class People(_Section):
    roles: dict[str, str] = Field(default_factory=dict)
    on_call: list[OnCall] = Field(default_factory=list)
    escalation: list[str] = Field(default_factory=list)


class KpiTargets(_Section):
    deployment_frequency: str = "weekly"
    lead_time: Duration = timedelta(hours=2)
    recovery_time: Duration = timedelta(minutes=30)
    change_failure_rate: Percent = 5.0
    availability: Percent = 99.9
    response_time_p95: Duration = timedelta(seconds=2)
    error_rate: Percent = 1.0
    db_query_time: Duration = timedelta(milliseconds=100)


class Kpi(_Section):
    targets: KpiTargets = _section()


# --- the runbook -------------------------------------------------------------------------------


class Runbook(_Section):
    """One rollout.yml, validated. Built by ``load_runbook``, which also sets where it came
    from and the redactor holding its secrets."""

    app: Slug
    store: str = ".rollout/rollout.db"
    release: ReleaseSettings = _section()
    runtime: Runtime
    environments: dict[Slug, Environment] = Field(min_length=1)
    ssh: SshSettings = _section()
    readiness: Readiness = _section()
    checks: Checks = _section()
    verify: Verify = _section()
    monitor: Monitor = _section()
    incidents: Incidents = _section()
    notify: Notify = _section()
    people: People = _section()
    # Post-deployment activities by time after the deployment finished: a name, or
    # `{name: owner}` to name who owns it (rollout.followups.activities: names and owners).
    followups: dict[DurationKey, list[FollowUpItem]] = Field(default_factory=dict)
    kpi: Kpi = _section()

    _source: Path = PrivateAttr(default_factory=lambda: Path("rollout.yml"))
    _redactor: Redactor = PrivateAttr(default_factory=Redactor.empty)

    @model_validator(mode="after")
    def _symptoms_name_metrics(self) -> Self:
        from rollout.monitor.rules import parse_symptom, probe_stat

        metrics = {n: (m.source, m.max is not None) for n, m in self.monitor.metrics.items()}
        for name, metric in self.monitor.metrics.items():
            if metric.source == "probe":
                probe_stat(name, metric.stat)
        for number in (1, 2, 3):
            level = getattr(self.incidents, f"level{number}")
            for symptom in level.when if level is not None else []:
                parse_symptom(symptom, metrics)
        return self

    @field_validator("store")
    @classmethod
    def _path_or_postgresql(cls, value: str) -> str:
        if "://" in value and not _is_postgresql(value):
            raise ValueError("expected a file path or a postgresql:// URL")
        return value

    @property
    def source(self) -> Path:
        """The file this runbook was loaded from (absolute when loaded by ``load_runbook``)."""
        return self._source

    @property
    def redactor(self) -> Redactor:
        return self._redactor

    @property
    def config_dir(self) -> Path:
        """The folder of rollout.yml: relative paths in it are relative to this folder."""
        return self._source.absolute().parent

    @property
    def store_url(self) -> str:
        """A SQLAlchemy URL: the postgresql URL as given, or sqlite with an absolute path."""
        if _is_postgresql(self.store):
            return self.store
        return f"sqlite:///{self.config_dir / Path(self.store).expanduser()}"

    def environment(self, name: str) -> Environment:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(self.environments)
            raise BadInput(
                f"no environment named {name!r} in {self._source.name}",
                hint=f"known environments: {known}",
            ) from None


def _is_postgresql(value: str) -> bool:
    return value.startswith(("postgresql://", "postgresql+"))


# --- pydantic errors -> issues -----------------------------------------------------------------


def _data_path(loc: tuple[str | int, ...], data: Any) -> FieldPath:
    """The part of a pydantic location that exists in the data.

    Pydantic puts its own steps into locations (the runtime kind of a tagged union, `str` for
    one member of `str | list[str]`, `[key]` for a bad dict key); they are skipped here, so the
    path names only keys and indexes that the user wrote.
    """
    path: list[str | int] = []
    for part in loc:
        in_dict = isinstance(data, dict) and isinstance(part, str) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if in_dict or in_list:
            data = data[part]
            path.append(part)
    return tuple(path)


def _options(annotation: Any) -> list[Any]:
    """The types an annotation may stand for, without Annotated wrappers and None."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _options(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for arg in typing.get_args(annotation) for t in _options(arg)]
    return [] if annotation is type(None) else [annotation]


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _kinds(model: type[BaseModel]) -> tuple[Any, ...]:
    """The tag values of a member of a union tagged by ``kind`` (empty for other models)."""
    kind = model.model_fields.get("kind")
    return () if kind is None else typing.get_args(kind.annotation)


def _child(annotation: Any, part: str | int) -> Any:
    """The type found at ``part`` inside ``annotation``, following pydantic's location steps."""
    for option in _options(annotation):
        origin = typing.get_origin(option)
        if _is_model(option) and part in option.model_fields:
            return option.model_fields[part].annotation
        if _is_model(option) and part in _kinds(option):
            return option
        if origin is dict:
            return typing.get_args(option)[1]
        if origin is list:
            return typing.get_args(option)[0]
    return None


def _allowed_keys(loc: tuple[str | int, ...]) -> list[str]:
    """The keys of the model that holds the unknown key at ``loc``."""
    annotation: Any = Runbook
    for part in loc[:-1]:
        annotation = _child(annotation, part)
    models = [o for o in _options(annotation) if _is_model(o)]
    return list(models[0].model_fields) if models else []


def _message(error: ErrorDetails) -> str:
    kind, ctx = error["type"], error.get("ctx", {})
    if kind == "missing":
        return "field required"
    if kind == "union_tag_not_found":
        return f"field required (one of: {', '.join(RUNTIME_KINDS)})"
    if kind == "extra_forbidden":
        return f"unknown key (allowed: {', '.join(_allowed_keys(error['loc']))})"
    if kind == "union_tag_invalid":
        allowed = str(ctx["expected_tags"]).replace("'", "")
        return f"unknown kind {ctx['tag']!r} (allowed: {allowed})"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "expected a mapping"
    if kind == "value_error":
        return str(ctx["error"])
    return error["msg"][:1].lower() + error["msg"][1:]


def _issue(error: ErrorDetails, doc: Document) -> tuple[FieldPath, ConfigIssue]:
    path = _data_path(error["loc"], doc.data)
    # A field missing from the file gets the line of the mapping that should hold it,
    # by way of line_of's fallback to the nearest written ancestor.
    if error["type"] == "missing":
        path = (*path, error["loc"][-1])
    elif error["type"] in ("union_tag_not_found", "union_tag_invalid"):
        path = (*path, str(error.get("ctx", {}).get("discriminator", "kind")).strip("'"))
    return path, ConfigIssue(doc.file, doc.line_of(path), dotted(path), _message(error))


def _validation_issues(exc: ValidationError, doc: Document) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in exc.errors(include_url=False):
        path, issue = _issue(error, doc)
        if path not in doc.unresolved and issue not in issues:
            issues.append(issue)
    return issues


# --- the loader --------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [ConfigIssue(str(path), None, "", "file not found")],
            hint="run `rollout init` to write a starter rollout.yml",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigIssue(str(path), None, "", f"cannot read it: {exc}")]) from exc


def _config_error(doc: Document, redactor: Redactor) -> ConfigError:
    issues = sorted(doc.issues, key=lambda i: (i.line is None, i.line or 0))
    # Messages can quote values, and values can hold resolved secrets.
    safe = [ConfigIssue(i.file, i.line, i.path, redactor.redact(i.message)) for i in issues]
    names = list(dict.fromkeys(doc.missing_vars))
    hint = f"export {', '.join(names)} before running rollout" if names else None
    return ConfigError(safe, hint=hint)


def load_runbook(path: Path, environ: Mapping[str, str] | None = None) -> Runbook:
    """Read and validate rollout.yml; raise ``ConfigError`` listing every problem, by line."""
    doc = Document(str(path))
    redactor = Redactor.empty()
    text = _read_text(path)
    if not read_document(text, doc, os.environ if environ is None else environ, redactor):
        # broken YAML: there is nothing to validate
        raise _config_error(doc, redactor)
    try:
        runbook = Runbook.model_validate(doc.data)
    except ValidationError as exc:
        doc.issues.extend(_validation_issues(exc, doc))
        # `from None`: pydantic's own error quotes input values, which may be secrets.
        raise _config_error(doc, redactor) from None
    if doc.issues:
        raise _config_error(doc, redactor)
    runbook._source = path.absolute()
    runbook._redactor = redactor
    return runbook


def write_starter(path: Path, *, force: bool = False) -> None:
    """Write the commented starter rollout.yml to ``path``, never over a file unless forced."""
    if path.exists() and not force:
        raise BadInput(f"{path} already exists", hint="pass --force to overwrite it")
    from importlib import resources  # only here: importing it costs every command ~25 ms

    text = resources.files("rollout").joinpath("starter.yml").read_text(encoding="utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
