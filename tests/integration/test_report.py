"""`rollout report`: a deployment's report and the KPI page, from a real store.

Most tests read a history written through the Store API with times chosen by hand, so every
figure, timing and row they assert is worked out here: three weeks with deployments (2, then
1 rolled back, then 1 with an incident), steps with known timings, checks, a verified backup,
monitoring samples and an incident. Text from the records includes hostile HTML (a step
output with a script, a host named like a tag) that must reach the pages escaped. One test
runs a real deploy in the sandbox and reports on it.
"""

from __future__ import annotations

import html.parser
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rollout.config import load_runbook
from rollout.model import CheckResult, CheckStatus, Kind, Outcome, StepStatus, utcnow
from rollout.report import kpi_page
from rollout.store import Store, open_store
from tests.fixtures.sandbox import TAGS, Sandbox, make_sandbox

HOSTILE = "<script>alert('owned')</script>"
HOSTILE_HOST = "web-<b>2</b>"


@dataclass(frozen=True)
class History:
    box: Sandbox
    now: datetime
    reported: int  # the deployment with steps, checks, backup, samples and an incident
    rolled_back: int


def weekly_frequency(history: History) -> set[str]:
    """What the KPI page may say of the history's 4 deployments per week: they are counted from
    the UTC day of the first record (20 days 5 hours back) until the page is written, so the
    figure depends on the time of day; the page is written between ``history.now`` and now."""
    first = history.now - timedelta(days=20, hours=5)
    day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    return {f"{4 / ((at - day) / timedelta(weeks=1)):.2f}/week" for at in (history.now, utcnow())}


def _deployment(store: Store, started: datetime, tag: str, status: Outcome, **extra: object) -> int:
    found = store.create_deployment(
        app="demo-app", env="production", kind=Kind.DEPLOY, tag=tag, actor="ana",
        started_at=started, **extra,  # type: ignore[arg-type]
    )  # fmt: skip
    store.finish_deployment(found, status=status, finished_at=started + timedelta(seconds=40))
    return found


def _step(store: Store, deployment: int, phase: str, name: str, host: str | None,
          start: datetime, begin: float, end: float, output: str = "",
          status: StepStatus = StepStatus.SUCCEEDED) -> None:  # fmt: skip
    step = store.start_step(
        deployment, phase=phase, name=name, host=host, started_at=start + timedelta(seconds=begin)
    )
    store.finish_step(
        step, status=status, finished_at=start + timedelta(seconds=end), output=output
    )


def make_history(root: Path) -> History:
    """The hand-made history described at the top of this module, in a sandbox's store."""
    box = make_sandbox(root, hosts=1, tags=[])
    runbook = load_runbook(box.config, box.env)
    now = utcnow()
    with open_store(runbook.store_url, redactor=runbook.redactor) as store:
        # Three weeks back: two good deployments.
        for hours in (0, 5):
            _deployment(store, now - timedelta(days=20, hours=hours), TAGS[0], Outcome.SUCCEEDED)
        # Two weeks back: one rolled back (and the rollback that put it back).
        bad = _deployment(store, now - timedelta(days=13), TAGS[1], Outcome.ROLLED_BACK)
        back = store.create_deployment(
            app="demo-app", env="production", kind=Kind.ROLLBACK, tag=TAGS[0], actor="ana",
            rollback_of=bad, started_at=now - timedelta(days=13) + timedelta(minutes=5),
        )  # fmt: skip
        store.finish_deployment(back, status=Outcome.SUCCEEDED)
        # This week: the deployment the report is about, with an incident.
        start = now - timedelta(days=2)
        reported = _deployment(store, start, TAGS[2], Outcome.SUCCEEDED, previous_tag=TAGS[1])
        _fill(store, reported, start)
    return History(box, now, reported, bad)


def _fill(store: Store, deployment: int, start: datetime) -> None:
    _step(store, deployment, "preflight", "disk", "web-1", start, 1, 3, "disk: pass 24 % used")
    _step(store, deployment, "deploy", "install", "web-1", start, 3, 9, f"installed\n{HOSTILE}")
    _step(store, deployment, "deploy", "install", HOSTILE_HOST, start, 4, 13, "installed")
    _step(store, deployment, "verify", "endpoint /api/health", "web-1", start, 13, 16.5)
    store.record_check(
        CheckResult("disk", CheckStatus.PASS, "24 % used", "< 80 %", "df -P /srv", host="web-1"),
        env="production", phase="preflight", deployment_id=deployment,
    )  # fmt: skip
    store.record_check(
        CheckResult("latency", CheckStatus.FAIL, "2.5 s", "< 2 s", f"GET / {HOSTILE}",
                    remedy="look at the slow query log"),
        env="production", phase="verify", deployment_id=deployment,
    )  # fmt: skip
    backup = store.add_backup(
        env="production", kind="pre-deploy", deployment_id=deployment,
        folder="/var/backups/production-pre-deploy", database="app.db", dump_sha256="ab" * 32,
        size=3 * 1024 * 1024, point_in_time=start + timedelta(seconds=2), seconds=0.8,
        manifest="{}",
    )  # fmt: skip
    store.add_backup_check(
        backup_id=backup, dump_sha256="ab" * 32, level=3, status="verified", detail="", seconds=1
    )
    samples = [
        {"metric": metric, "host": host, "source": "probe", "at": start + timedelta(seconds=20 + i),
         "value": value}
        for i in range(10)
        for host in ("web-1", HOSTILE_HOST)
        for metric, value in (("latency_seconds", 0.1 + i / 100), ("http_error", float(i >= 8)))
    ]  # fmt: skip
    store.add_samples("production", deployment, samples)
    incident = store.open_incident(
        env="production", deployment_id=deployment, level=2, title="level 2 (major) incident",
        symptoms=f"error_rate 0.5 > 0.01 {HOSTILE}", impact_start=start + timedelta(seconds=28),
        detected_at=start + timedelta(seconds=29), action="page-on-call",
    )  # fmt: skip
    store.update_incident(incident, status="mitigated", mitigated_at=start + timedelta(minutes=12))


class Tables(html.parser.HTMLParser):
    """Every table of a page as rows of cell texts (what a reader sees, unescaped)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)

    def row(self, first: str, *, second: str | None = None, header: str = "") -> list[str]:
        """The first row starting with these cells, in a table with ``header`` among its heads."""
        return next(
            r for t in self.tables if not header or header in t[0] for r in t
            if r and r[0] == first and (second is None or r[1] == second)
        )  # fmt: skip


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> History:
    return make_history(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def written(history: History, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """The report on the deployment with everything: its HTML and Markdown texts."""
    folder = tmp_path_factory.mktemp("written")
    page, md = folder / "report.html", folder / "report.md"
    done = history.box.rollout(
        "report", str(history.reported), "--out", str(page), "--markdown", str(md)
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["wrote", str(page), "wrote", str(md)]
    return page.read_text(), md.read_text()


def test_the_deployment_report_has_timings_checks_backup_monitoring_and_incidents(
    written: tuple[str, str],
) -> None:
    text = written[0]
    tables = Tables(text)
    # Stage timings: from the first step's start to the last one's end, after the start.
    assert tables.row("preflight", second="+1.00 s")[1:] == ["+1.00 s", "2.00 s", "1", "0"]
    assert tables.row("deploy", second="+3.00 s")[1:] == ["+3.00 s", "10.0 s", "2", "0"]
    assert tables.row("verify", second="+13.0 s")[1:] == ["+13.0 s", "3.50 s", "1", "0"]
    # Checks with their values and thresholds; a failure with its remedy.
    assert tables.row("preflight", second="disk", header="threshold")[2:6] == [
        "web-1",
        "pass",
        "24 % used",
        "< 80 %",
    ]
    latency = tables.row("verify", second="latency", header="threshold")
    assert latency[3:6] == ["fail", "2.5 s", "< 2 s"]
    assert "fix: look at the slow query log" in latency[6]
    assert tables.row("taken")[1:5] == ["pre-deploy", "/var/backups/production-pre-deploy",
                                        "app.db", "3.0 MiB"]  # fmt: skip
    assert tables.row("taken")[7] == "L3"
    incident = tables.row("#1")
    assert incident[1:3] == ["2", "mitigated"]
    assert incident[8] == "page-on-call"
    # Monitoring: a chart per metric from the samples of its window, and their summary.
    assert tables.row("latency_seconds")[1:3] == ["20", "0"]
    assert tables.row("http_error")[1:7] == ["20", "0", "0", "0", "1", "1"]
    assert text.count("<svg") == 3  # the timeline, latency, error rate
    assert "outcome" in text and "succeeded" in text


def test_a_deployment_report_escapes_what_the_records_say(written: tuple[str, str]) -> None:
    text, markdown = written
    assert "<script" not in text and "<b>2</b>" not in text
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in text  # step output, check
    assert (
        HOSTILE in Tables(text).row("verify", second="latency", header="threshold")[6]
    )  # read back as written
    assert "web-&lt;b&gt;2&lt;/b&gt;" in text  # a host in a table and in a chart's legend
    # Markdown passes HTML through: escaped in tables, kept whole inside a fenced block.
    assert "| deploy | install | web-&lt;b&gt;2&lt;/b&gt; | succeeded |" in markdown
    assert f"```\ninstalled\n{HOSTILE}\n```" in markdown
    assert markdown.count(HOSTILE) == 1


def test_a_rollback_report_names_what_it_rolled_back(history: History, tmp_path: Path) -> None:
    page = tmp_path / "bad.html"
    md = tmp_path / "bad.md"
    done = history.box.rollout(
        "report", str(history.rolled_back), "--out", str(page), "--markdown", str(md)
    )
    assert done.returncode == 0, done.stderr
    text = md.read_text()
    assert "- **outcome**: rolled_back" in text
    assert f"- **rolled back by**: #{history.rolled_back + 1} {TAGS[0]} (succeeded)" in text
    assert "_no monitoring samples recorded during this run_" in text


def test_the_kpi_page_has_every_figure_and_the_weekly_trend(
    history: History, tmp_path: Path
) -> None:
    page, picture = tmp_path / "kpi.html", tmp_path / "kpi.png"
    done = history.box.rollout("report", "--kpi", "--out", str(page), "--png", str(picture))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    tables = Tables(text)
    # 4 deployments since the records start (about 3 weeks of the 90 days), 2 failed (one
    # rolled back, one with an incident).
    frequency = tables.row("deployment frequency")
    assert frequency[1] in weekly_frequency(history)
    assert frequency[2:4] == [">= weekly (1/week)", "met"]
    assert tables.row("change failure rate")[1:4] == ["50%", "<= 5 %", "missed"]
    assert tables.row("change failure rate")[4:6] == ["low", "low"]  # DORA 2023, 2024
    assert tables.row("failed deployment recovery time (median)")[1] == "11.5 min"
    for label in ("lead time, commit to production (median)", "availability",
                  "error budget left", "response time p95", "error rate"):  # fmt: skip
        assert tables.row(label)
    # Week by week, oldest first: 13 weeks back from now, the last three with deployments.
    weeks = [r for t in tables.tables for r in t if re.match(r"\d{4}-\d\d-\d\d to ", r[0])]
    assert len(weeks) == 13
    assert [w[1] for w in weeks[-4:]] == ["0", "2", "1", "1"]  # deployments per week
    assert [w[3] for w in weeks[-4:]] == ["-", "0", "100", "100"]  # change failure rate %
    assert text.count("<svg") == 9
    assert picture.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_weekly_trend_is_the_kpi_computation_of_each_week(history: History) -> None:
    runbook = load_runbook(history.box.config, history.box.env)
    with open_store(runbook.store_url) as store:
        built = kpi_page.build(store.engine, runbook, "production", timedelta(days=21), history.now)
    assert [(w.until - w.since).days for w in built.weeks] == [7, 7, 7]
    assert [w.value("deployment_frequency") for w in built.weeks] == [2, 1, 1]
    assert [w.value("recovery_time") for w in built.weeks] == [
        None,
        None,
        pytest.approx(11.53, abs=0.01),
    ]
    assert built.weeks[-1].until == history.now


def test_a_report_after_a_real_deploy_times_its_stages(sandbox: Sandbox, tmp_path: Path) -> None:
    done = sandbox.rollout("deploy", "production", TAGS[0], "--no-monitor")
    assert done.returncode == 0, done.stdout + done.stderr
    page, md = tmp_path / "real.html", tmp_path / "real.md"
    made = sandbox.rollout("report", "1", "--out", str(page), "--markdown", str(md))
    assert made.returncode == 0, made.stderr
    tables = Tables(page.read_text())
    stages = {r[0]: r for r in tables.tables[0][1:]}
    assert {"preflight", "deploy", "verify"} <= set(stages)
    assert all(re.fullmatch(r"\+[\d.]+ s", r[1]) and r[4] == "0" for r in stages.values())
    assert tables.row("deploy", second="activate")[3] == "succeeded"
    assert "tok-5ecret-value" not in page.read_text() + md.read_text()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["report", "999"], "no deployment with id 999"),
        (["report"], "give a deployment id or --kpi"),
        (["report", "1", "--kpi"], "give a deployment id or --kpi"),
        (["report", "--kpi", "--out", "/proc/no/kpi.html"], "cannot write /proc/no/kpi.html"),
        (["report", "--kpi", "--out", "kpi.txt"], "give it a .html name"),
        (["report", "--kpi", "--since", "soon"], "--since"),
    ],
)
def test_bad_input_exits_2_saying_what_is_wrong(
    history: History, args: list[str], says: str
) -> None:
    done = history.box.rollout(*args)
    assert done.returncode == 2
    assert says in done.stderr
