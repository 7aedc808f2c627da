import textwrap
from datetime import timedelta
from importlib import resources
from pathlib import Path

import pytest
from pydantic import ValidationError

from rollout.config import (
    ComposeRuntime,
    Environment,
    HostConfig,
    ReleaseDirRuntime,
    Runbook,
    load_runbook,
    parse_duration,
    parse_percent,
    write_starter,
)
from rollout.errors import BadInput, ConfigError

MINIMAL = """\
app: shop
runtime:
  kind: release-dir
  start: systemctl restart shop
environments:
  production:
    hosts:
      - {name: web-1, address: 10.0.0.11}
"""

# Modelled on /work/shared/rollout.example.yml, with the release-dir runtime.
FULL = r"""
app: united-cars
store: .rollout/rollout.db
release:
  tag_pattern: '^v\d{4}\.\d{2}\.\d{2}-[0-9a-f]{7,40}$'
  keep: 5
  artifact: dist/united-cars-{tag}.tar.gz
runtime:
  kind: release-dir
  path: app
  launcher:
    command: [python, -m, uvicorn, app:app, --port, '{port}']
    env: {WORKERS: 2}
    stop_timeout: 15s
  health_url: http://127.0.0.1:{port}/api/health
  health_timeout: 45s
environments:
  staging:
    url: https://staging.your-domain.com
    hosts:
      - {name: staging-1, address: 127.0.0.1, kind: local, root: /tmp/stage, vars: {port: 8001}}
  production:
    url: https://your-domain.com
    hosts:
      - {name: prod-1, address: prod-server, user: united-cars, roles: [web, db]}
      - {name: prod-2, address: prod-server-2, user: united-cars, port: 2222}
    batch: 50%
    database:
      url: '${PROD_DATABASE_URL}'
      via: prod-1
      backups: /var/united-cars/backups/db
      verify_level: 3
      sanity_queries: ["select count(*) > 0 from vehicles"]
readiness:
  approvals: {count: 2, distinct_people: true, roles: [platform, product-owner]}
  require: [ci-passed, staging-validated]
  window: {min: 24h, max: 48h}
checks:
  certificate_min_days: 30
  cpu_max: 70%
  memory_max: 80
  disk_max: 80%
  disk_mounts: [/, /var/united-cars]
  backup_max_age: 26h
  monitoring_url: http://prometheus.internal:9090/-/ready
verify:
  endpoints:
    - {path: /, conditions: ['[STATUS] == 200']}
    - {path: /api/vehicles, method: get, timeout: 5s}
  version: {path: /api/version, field: version}
  load: {requests: 200, concurrency: 10, thresholds: ['p(95)<2000']}
  headers: {required: [hsts], min_grade: B}
  tls: {min_grade: A}
monitor:
  window: 30m
  interval: 10s
  baseline: 30m
  metrics:
    response_time_p95: {source: probe, max: 2s}
    db_connections: {source: prometheus, query: pg_stat_activity_count, max: 80, trend: no-growth}
  sources: {prometheus: http://prometheus.internal:9090}
  failure_limit: 3
  consecutive_error_limit: 4
incidents:
  level1: {when: ['response_time_p95 > 1x'], respond_within: 15m, actions: [notify]}
  level3: {when: ['health down'], respond_within: 5m, actions: [rollback], persists: 1m}
people:
  roles: {deployer: platform}
  on_call: [{name: primary, notify: '${PAGER_PRIMARY}'}]
  escalation: [on-call, cto]
notify:
  deployments: ['${SLACK_URL}']
  status_page: {dir: /var/www/status, components: [web]}
followups:
  1h: [metrics-review]
  1w: [retrospective]
kpi:
  targets: {change_failure_rate: 5%, availability: 99.9%, db_query_time: 100ms}
"""

SECRETS = {
    "PROD_DATABASE_URL": "postgresql://app:hunter2@db/cars",
    "PAGER_PRIMARY": "pagerduty://key",
    "SLACK_URL": "slack://token",
}


def write(tmp_path: Path, text: str, name: str = "rollout.yml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors_of(path: Path, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_runbook(path, environ or {})
    return str(caught.value).splitlines()


# --- loading valid files -----------------------------------------------------------------------


def test_a_minimal_file_loads_with_every_default() -> None:
    runbook = Runbook.model_validate(
        {
            "app": "shop",
            "runtime": {"kind": "compose"},
            "environments": {"production": {"hosts": [{"name": "a", "address": "b"}]}},
        }
    )

    assert isinstance(runbook.runtime, ComposeRuntime)
    assert runbook.runtime.health_timeout == timedelta(seconds=60)
    assert runbook.release.keep == 5
    assert runbook.checks.backup_max_age == timedelta(hours=26)
    assert runbook.kpi.targets.db_query_time == timedelta(milliseconds=100)
    assert runbook.verify.endpoints == []


def test_a_full_release_dir_file_loads(tmp_path: Path) -> None:
    runbook = load_runbook(write(tmp_path, FULL), SECRETS)

    assert isinstance(runbook.runtime, ReleaseDirRuntime)
    assert runbook.runtime.launcher is not None
    assert runbook.runtime.launcher.env == {"WORKERS": "2"}
    assert runbook.runtime.launcher.stop_timeout == timedelta(seconds=15)
    production = runbook.environment("production")
    assert production.database is not None
    assert production.database.url == SECRETS["PROD_DATABASE_URL"]
    assert production.hosts[1].port == 2222
    assert runbook.environment("staging").hosts[0].vars == {"port": "8001"}
    assert runbook.readiness.window.max == timedelta(hours=48)
    assert runbook.checks.memory_max == 80.0
    assert runbook.verify.endpoints[1].method == "GET"
    assert runbook.verify.endpoints[1].conditions == ["[STATUS] < 400"]
    assert runbook.monitor.metrics["db_connections"].max == "80"
    assert runbook.incidents.level2 is None
    assert runbook.followups == {"1h": ["metrics-review"], "1w": ["retrospective"]}
    assert runbook.kpi.targets.availability == 99.9


def test_the_shared_compose_example_loads() -> None:
    example = Path("/work/shared/rollout.example.yml")
    if not example.exists():
        pytest.skip("the shared example is not on this machine")
    env = {**SECRETS, "PAGER_SECONDARY": "x://2", "SLACK_DEPLOYMENTS_URL": "x://3"}
    env["SLACK_INCIDENTS_URL"] = "x://4"

    runbook = load_runbook(example, env)

    assert isinstance(runbook.runtime, ComposeRuntime)
    assert runbook.runtime.compose_file == "deploy/compose/docker-compose.prod.yml"


def test_a_loaded_runbook_is_frozen(tmp_path: Path) -> None:
    runbook = load_runbook(write(tmp_path, MINIMAL), {})

    with pytest.raises(ValidationError):
        runbook.app = "other"  # type: ignore[misc]


def test_an_unknown_environment_names_the_known_ones(tmp_path: Path) -> None:
    runbook = load_runbook(write(tmp_path, MINIMAL), {})

    with pytest.raises(BadInput) as caught:
        runbook.environment("prod")

    assert "production" in str(caught.value)


# --- store ---------------------------------------------------------------------------------------


def test_a_relative_store_path_is_resolved_against_the_config_folder(tmp_path: Path) -> None:
    runbook = load_runbook(write(tmp_path, MINIMAL), {})

    assert runbook.config_dir == tmp_path
    assert runbook.store_url == f"sqlite:///{tmp_path}/.rollout/rollout.db"


def test_a_postgresql_store_url_is_kept_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "store: ${STORE_URL}\n")

    runbook = load_runbook(path, {"STORE_URL": "postgresql://rollout:pw@db/rollout"})

    assert runbook.store_url == "postgresql://rollout:pw@db/rollout"


def test_a_store_url_of_another_database_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "store: mysql://db/rollout\n")

    assert errors_of(path) == [
        f"{path}:9: store: expected a file path or a postgresql:// URL",
    ]


# --- error reports -------------------------------------------------------------------------------


def test_a_missing_field_is_reported_with_file_line_and_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(
        tmp_path,
        """\
        app: shop
        runtime: {kind: release-dir, start: run}
        environments:
          production:
            hosts:
              - name: web-1
                address: 10.0.0.11
              - name: web-2
                user: deploy
        """,
    )
    monkeypatch.chdir(tmp_path)

    assert errors_of(Path("rollout.yml")) == [
        "rollout.yml:8: environments.production.hosts[1].address: field required",
    ]


def test_missing_top_level_fields_point_at_the_document(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing but a comment\nstore: x.db\n")

    assert errors_of(path) == [
        f"{path}:2: app: field required",
        f"{path}:2: runtime: field required",
        f"{path}:2: environments: field required",
    ]


def test_an_unknown_top_level_key_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "enviroment: {}\n")

    [message] = errors_of(path)

    assert message.startswith(f"{path}:9: enviroment: unknown key (allowed: app, store, release,")


def test_an_unknown_nested_key_lists_the_allowed_ones(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("address: 10.0.0.11", "adress: 10.0.0.11"))

    assert errors_of(path) == [
        f"{path}:8: environments.production.hosts[0].address: field required",
        f"{path}:8: environments.production.hosts[0].adress: unknown key"
        " (allowed: name, address, kind, user, port, key_file, sudo, proxy_jump, root, roles, vars, url)",
    ]


def test_an_unknown_key_in_the_runtime_names_that_runtime_s_keys(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  kind: release-dir\n", "  kind: compose\n"))

    [message] = errors_of(path)

    assert message.startswith(f"{path}:4: runtime.start: unknown key (allowed: kind, command,")


def test_several_errors_are_reported_at_once_sorted_by_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        app: Shop!
        release: {keep: 0}
        runtime: {kind: release-dir, start: run}
        environments:
          production:
            hosts: [{name: web-1, address: a}]
            batch: lots
        checks: {cpu_max: 170%}
        release_notes: yes
        """,
    )

    assert errors_of(path) == [
        f"{path}:1: app: expected a short name of lowercase letters, digits, '-' and '_'"
        " (got 'Shop!')",
        f"{path}:2: release.keep: input should be greater than or equal to 1",
        f"{path}:7: environments.production.batch: expected a number of hosts (1 or more)"
        " or a percentage like 25% (got 'lots')",
        f"{path}:8: checks.cpu_max: expected a percentage from 0 to 100 like 70% (got '170%')",
        f"{path}:9: release_notes: unknown key (allowed: app, store, release, runtime,"
        " environments, ssh, readiness, checks, verify, monitor, incidents, notify, people,"
        " followups, kpi)",
    ]


def test_a_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    path = write(tmp_path, "app: shop\nruntime: {kind: compose\nenvironments: {}\n")

    [message] = errors_of(path)

    assert message.startswith(f"{path}:3: invalid YAML:")


def test_a_duplicate_key_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "app: other\n")

    assert errors_of(path) == [f"{path}:9: app: duplicate key (first on line 1)"]


def test_a_runtime_without_kind_lists_the_kinds(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("  kind: release-dir\n", ""))

    assert errors_of(path) == [
        f"{path}:2: runtime.kind: field required (one of: release-dir, compose)",
    ]


def test_an_unknown_runtime_kind_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("kind: release-dir", "kind: k8s"))

    assert errors_of(path) == [
        f"{path}:3: runtime.kind: unknown kind 'k8s' (allowed: release-dir, compose)",
    ]


def test_a_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_runbook(tmp_path / "rollout.yml", {})

    assert "file not found" in str(caught.value)
    assert caught.value.hint is not None
    assert "rollout init" in caught.value.hint


# --- ${VAR} references ---------------------------------------------------------------------------


def test_a_reference_is_resolved_whole_or_embedded(tmp_path: Path) -> None:
    text = MINIMAL.replace("address: 10.0.0.11", "address: '${HOST}', user: 'u-${USER_SUFFIX}'")

    runbook = load_runbook(write(tmp_path, text), {"HOST": "10.1.1.1", "USER_SUFFIX": "ops"})

    host = runbook.environment("production").hosts[0]
    assert (host.address, host.user) == ("10.1.1.1", "u-ops")


def test_a_missing_variable_is_an_issue_at_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)

    with pytest.raises(ConfigError) as caught:
        load_runbook(path, {k: v for k, v in SECRETS.items() if k != "PROD_DATABASE_URL"})

    line = path.read_text().splitlines().index("      url: '${PROD_DATABASE_URL}'") + 1
    assert str(caught.value).splitlines()[0] == (
        f"{path}:{line}: environments.production.database.url:"
        " environment variable PROD_DATABASE_URL is not set"
    )
    assert caught.value.hint == "export PROD_DATABASE_URL before running rollout"


def test_resolved_values_are_registered_as_secrets(tmp_path: Path) -> None:
    runbook = load_runbook(write(tmp_path, FULL), SECRETS)

    shown = runbook.redactor.redact("pg_dump postgresql://app:hunter2@db/cars failed")

    assert shown == "pg_dump [secret:PROD_DATABASE_URL] failed"
    assert runbook.redactor.names == ("PAGER_PRIMARY", "PROD_DATABASE_URL", "SLACK_URL")


def test_error_messages_never_show_a_secret(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "checks: {backup_max_age: '${AGE}'}\n")

    [message] = errors_of(path, {"AGE": "topsecret"})

    assert "topsecret" not in message
    assert "[secret:AGE]" in message


def test_a_doubled_dollar_keeps_a_literal_reference(tmp_path: Path) -> None:
    text = MINIMAL.replace("start: systemctl restart shop", "start: echo $${HOME} ${X}")

    runbook = load_runbook(write(tmp_path, text), {"X": "x"})

    assert isinstance(runbook.runtime, ReleaseDirRuntime)
    assert runbook.runtime.start == "echo ${HOME} x"


def test_a_malformed_reference_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("start: systemctl restart shop", "start: 'a ${b'"))

    assert errors_of(path) == [
        f"{path}:4: runtime.start: malformed ${{...}}: write ${{NAME}}, or $${{ for a literal ${{",
    ]


# --- value types ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("100ms", timedelta(milliseconds=100)),
        ("10s", timedelta(seconds=10)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("1.5h", timedelta(minutes=90)),
        ("1d", timedelta(days=1)),
        ("1w", timedelta(weeks=1)),
        (45, timedelta(seconds=45)),
        (0.5, timedelta(milliseconds=500)),
        ("90", timedelta(seconds=90)),
    ],
)
def test_durations_read_as_written(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize("value", ["soon", "5 minutes", "-1s", -3, True, "1y", [1]])
def test_bad_durations_say_what_is_expected(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration like 30s, 5m, 2h"):
        parse_duration(value)


@pytest.mark.parametrize(("value", "expected"), [("70%", 70.0), (70, 70.0), ("99.9%", 99.9)])
def test_percentages_read_with_or_without_the_sign(value: object, expected: float) -> None:
    assert parse_percent(value) == expected


@pytest.mark.parametrize("value", ["101%", -1, "lots", False])
def test_bad_percentages_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="expected a percentage from 0 to 100"):
        parse_percent(value)


def test_a_bad_followup_delay_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "followups: {soon: [check]}\n")

    assert errors_of(path) == [
        f"{path}:9: followups.soon: expected a duration like 30s, 5m, 2h (got 'soon')",
    ]


# --- environments and hosts ----------------------------------------------------------------------


def environment(batch: object, n_hosts: int) -> Environment:
    hosts = [{"name": f"web-{i}", "address": f"10.0.0.{i}"} for i in range(n_hosts)]
    return Environment.model_validate({"hosts": hosts, "batch": batch})


@pytest.mark.parametrize(
    ("batch", "n_hosts", "size"),
    [("25%", 8, 2), ("25%", 3, 1), ("10%", 30, 3), ("100%", 5, 5), (2, 5, 2), (10, 3, 3)],
)
def test_batch_size_rounds_a_share_up_and_stays_within_the_hosts(
    batch: object, n_hosts: int, size: int
) -> None:
    assert environment(batch, n_hosts).batch_size(n_hosts) == size


@pytest.mark.parametrize("batch", [0, "0%", "150%", "half", 1.5])
def test_a_bad_batch_is_rejected(batch: object) -> None:
    with pytest.raises(ValidationError, match="expected a number of hosts"):
        environment(batch, 2)


def test_a_local_host_needs_a_root(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL.replace("address: 10.0.0.11", "address: 127.0.0.1, kind: local"))

    assert errors_of(path) == [
        f"{path}:8: environments.production.hosts[0]:"
        " a local host needs `root`, the folder standing for its filesystem",
    ]


def test_a_local_host_with_a_root_is_fine() -> None:
    host = HostConfig(name="box", address="127.0.0.1", kind="local", root="/tmp/box")

    assert host.root == "/tmp/box"


def test_host_names_must_be_unique_within_an_environment(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "      - {name: web-1, address: 10.0.0.12}\n")

    assert errors_of(path) == [
        f"{path}:7: environments.production.hosts: host names must be unique: web-1 repeated",
    ]


def test_database_via_must_name_a_host(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "    database: {url: postgresql://db/x, via: db-1}\n")

    assert errors_of(path) == [
        f"{path}:9: environments.production.database: via: no host named 'db-1' (hosts: web-1)",
    ]


def test_a_bad_tag_pattern_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "release: {tag_pattern: 'v(\\d+'}\n")

    [message] = errors_of(path)

    assert message.startswith(f"{path}:9: release.tag_pattern: not a valid regular expression")


def test_release_dir_needs_exactly_one_way_to_start(tmp_path: Path) -> None:
    neither = write(tmp_path, MINIMAL.replace("  start: systemctl restart shop\n", ""))
    with_launcher = MINIMAL.replace("environments:", "  launcher: {command: [run]}\nenvironments:")
    both = write(tmp_path, with_launcher, "both.yml")

    assert errors_of(neither) == [
        f"{neither}:2: runtime: give `start` (a service manager command) or `launcher`",
    ]
    assert errors_of(both) == [f"{both}:2: runtime: give `start` or `launcher`, not both"]


def test_a_prometheus_metric_needs_a_query(tmp_path: Path) -> None:
    text = MINIMAL + "monitor:\n  metrics:\n    errors: {source: prometheus, max: 1%}\n"
    path = write(tmp_path, text)

    assert f"{path}:11: monitor.metrics.errors: a prometheus metric needs a `query`" in (
        errors_of(path)
    )


def test_monitoring_thresholds_queries_and_actions_are_checked_at_load(tmp_path: Path) -> None:
    text = MINIMAL + (
        "monitor:\n"
        "  sources: {prometheus: 'http://127.0.0.1:9090'}\n"
        "  metrics:\n"
        "    latency_p95: {source: probe, max: 2 parsecs}\n"
        "    errors: {source: prometheus, query: 'sum(rate(x[1m])', max: 1%}\n"
        "incidents:\n"
        "  level3: {when: ['health down'], respond_within: 5m, actions: [rollback, dance]}\n"
    )
    path = write(tmp_path, text)

    found = errors_of(path)

    assert any("monitor.metrics.latency_p95: threshold '2 parsecs'" in e for e in found)
    assert any(
        "monitor.metrics.errors: query 'sum(rate(x[1m])': '(' is not closed" in e for e in found
    )
    assert any("incidents.level3.actions: unknown action 'dance'" in e for e in found)


def test_a_symptom_must_name_a_metric_with_a_max(tmp_path: Path) -> None:
    text = MINIMAL + (
        "monitor:\n  metrics:\n    error_rate: {source: probe, max: 1%}\n"
        "incidents:\n  level2: {when: ['latency > 2x'], respond_within: 10m, actions: [page]}\n"
    )
    path = write(tmp_path, text)

    assert any("no metric 'latency' in monitor.metrics" in e for e in errors_of(path))


# --- the starter file ----------------------------------------------------------------------------


def test_the_starter_is_package_data() -> None:
    assert resources.files("rollout").joinpath("starter.yml").is_file()


def test_the_starter_is_written_and_loads_without_any_variable(tmp_path: Path) -> None:
    path = tmp_path / "rollout.yml"

    write_starter(path)
    runbook = load_runbook(path, {})

    assert isinstance(runbook.runtime, ReleaseDirRuntime)
    assert set(runbook.environments) == {"staging", "production"}
    assert all(h.kind == "ssh" for e in runbook.environments.values() for h in e.hosts)


def test_the_starter_never_overwrites_unless_forced(tmp_path: Path) -> None:
    path = write(tmp_path, "app: mine\n")

    with pytest.raises(BadInput) as caught:
        write_starter(path)
    assert path.read_text() == "app: mine\n"
    assert caught.value.hint is not None
    assert "--force" in caught.value.hint

    write_starter(path, force=True)
    assert load_runbook(path, {}).app == "my-app"
