"""The United Cars example app and its release build script."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from starlette.exceptions import StarletteDeprecationWarning

# Starlette 1.10's TestClient prefers the httpx2 package and warns (an error under the project's
# filterwarnings) when it falls back to httpx, the only one installed. Silenced here, at the one
# import, until httpx2 joins the dev dependencies.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "united-cars"
# The example is a separate app, not part of the rollout package: it is imported the way its
# release runs it, with its folder on the path.
sys.path.insert(0, str(EXAMPLE_DIR))

import build_release  # noqa: E402
from united_cars import Settings, create_app  # noqa: E402
from united_cars.auth import SESSION_COOKIE, make_token  # noqa: E402

TAG = "v2024.01.15-a1b2c3d"
SECRET = "test-secret"
SECURITY_HEADERS = {
    "strict-transport-security": "max-age=63072000; includeSubDomains",
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "content-security-policy": "default-src 'self'; frame-ancestors 'none'",
    "referrer-policy": "strict-origin-when-cross-origin",
}


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    release_dir = tmp_path / "release"
    release_dir.mkdir(exist_ok=True)
    release_file = release_dir / "release.json"
    release_file.write_text(
        json.dumps({"version": TAG, "commit": "a1b2c3d", "built_at": "2024-01-15T10:00:00Z"})
    )
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'app.db'}",
        "release_file": release_file,
        "secret_key": SECRET,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(tmp_path))) as c:
        yield c


def bearer() -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('demo', SECRET.encode())}"}


def metric_value(text: str, name: str, labels: dict[str, str]) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


# --- health, version, pages -------------------------------------------------------------------


def test_health_ok(client: TestClient) -> None:
    response = client.get("/api/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "version": TAG, "database": "ok"}


def test_health_503_when_database_unusable(tmp_path: Path) -> None:
    # SQLite cannot create a file in a folder that does not exist; the app still starts.
    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path}/missing/app.db")
    with TestClient(create_app(settings)) as c:
        response = c.get("/api/health")
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "down"
        assert body["version"] == TAG
        assert body["database"].startswith("error: ")
        assert "unable to open database file" in body["database"]
        assert c.get("/api/vehicles").status_code == 503


def test_health_503_when_health_down(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, faults={"health_down": True}))) as c:
        response = c.get("/api/health")
        assert response.status_code == 503
        assert response.json() == {"status": "down", "version": TAG, "database": "ok"}


def test_faults_json_beside_release_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    (settings.release_file.parent / "faults.json").write_text('{"health_down": true}')
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/health").status_code == 503


def test_invalid_faults_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown fault keys: error_rat"):
        create_app(make_settings(tmp_path, faults={"error_rat": 1.0}))
    with pytest.raises(ValueError, match=r"between 0\.0 and 1\.0"):
        create_app(make_settings(tmp_path, faults={"error_rate": 2}))


def test_version_reports_tag(client: TestClient) -> None:
    assert client.get("/api/version").json() == {
        "version": TAG,
        "commit": "a1b2c3d",
        "built_at": "2024-01-15T10:00:00Z",
    }


def test_version_dev_without_release_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, release_file=tmp_path / "nowhere" / "release.json")
    with TestClient(create_app(settings)) as c:
        assert c.get("/api/version").json()["version"] == "dev"


def test_index_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<title>United Cars</title>" in response.text
    assert TAG in response.text


def test_security_headers_on_every_route(tmp_path: Path) -> None:
    faults = {"error_rate": 1.0, "routes": ["/broken"]}
    with TestClient(create_app(make_settings(tmp_path, faults=faults))) as c:
        responses = [
            c.get("/"),
            c.get("/static/style.css"),
            c.get("/api/health"),
            c.get("/api/version"),
            c.get("/auth/signin"),
            c.post("/auth/signin", data={"username": "x", "password": "y"}),
            c.get("/api/vehicles"),
            c.get("/api/vehicles/42"),
            c.post("/api/vehicles", json={}),
            c.get("/metrics"),
            c.get("/does-not-exist"),
            c.get("/broken"),  # an injected 500
        ]
    for response in responses:
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (response.request.url, name)
        assert response.headers.get("permissions-policy")


# --- sign-in and vehicles ----------------------------------------------------------------------


def test_signin_form(client: TestClient) -> None:
    response = client.get("/auth/signin")
    assert response.status_code == 200
    assert 'name="username"' in response.text
    assert 'name="password"' in response.text


def test_signin_success_sets_session_cookie(client: TestClient) -> None:
    response = client.post(
        "/auth/signin", data={"username": "demo", "password": "demo"}, follow_redirects=False
    )
    assert response.status_code == 302
    assert response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}={make_token('demo', SECRET.encode())};")
    lowered = cookie.lower()
    assert "httponly" in lowered
    assert "secure" in lowered
    assert "samesite=lax" in lowered


def test_signin_failure(client: TestClient) -> None:
    response = client.post(
        "/auth/signin", data={"username": "demo", "password": "wrong"}, follow_redirects=False
    )
    assert response.status_code == 401
    assert "set-cookie" not in response.headers


def test_vehicles_list_is_public(client: TestClient) -> None:
    response = client.get("/api/vehicles")
    assert response.status_code == 200
    assert response.json() == []


def test_create_vehicle_needs_auth(client: TestClient) -> None:
    vehicle = {"make": "Volvo", "model": "V70", "year": 2004}
    assert client.post("/api/vehicles", json=vehicle).status_code == 401
    forged = {"Authorization": "Bearer demo.0000"}
    assert client.post("/api/vehicles", json=vehicle, headers=forged).status_code == 401

    response = client.post("/api/vehicles", json=vehicle, headers=bearer())
    assert response.status_code == 201
    created = response.json()
    assert created["id"] == 1
    assert {k: created[k] for k in vehicle} == vehicle
    assert client.get("/api/vehicles").json() == [created]
    assert client.get("/api/vehicles/1").json() == created
    assert client.get("/api/vehicles/2").status_code == 404


def test_create_vehicle_with_session_cookie(tmp_path: Path) -> None:
    # The cookie is Secure, so the client only sends it back over https.
    app = create_app(make_settings(tmp_path))
    with TestClient(app, base_url="https://testserver") as c:
        signin = c.post(
            "/auth/signin", data={"username": "demo", "password": "demo"}, follow_redirects=False
        )
        assert signin.status_code == 302
        vehicle = {"make": "Saab", "model": "900", "year": 1990}
        assert c.post("/api/vehicles", json=vehicle).status_code == 201
        assert "Signed in as demo" in c.get("/").text


@pytest.mark.parametrize(
    "body",
    [
        {"make": "Volvo", "model": "V70"},
        {"make": "", "model": "V70", "year": 2004},
        {"make": "Volvo", "model": "V70", "year": "2004"},
        {"make": "Volvo", "model": "V70", "year": 1700},
        {"make": "Volvo", "model": "V70", "year": 3000},
        {"make": "x" * 65, "model": "V70", "year": 2004},
        {"make": "Volvo", "model": "V70", "year": 2004, "colour": "red"},
    ],
)
def test_create_vehicle_rejects_bad_input(client: TestClient, body: dict[str, object]) -> None:
    assert client.post("/api/vehicles", json=body, headers=bearer()).status_code == 422


# --- faults and metrics ------------------------------------------------------------------------


def test_error_rate_fails_business_routes_not_health(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, faults={"error_rate": 1.0}))) as c:
        for _ in range(3):
            response = c.get("/api/vehicles")
            assert response.status_code == 500
            assert response.json()["error"] == "internal server error"
        assert c.get("/api/health").status_code == 200
        assert c.get("/metrics").status_code == 200


def test_latency_applies_to_configured_routes(tmp_path: Path) -> None:
    faults = {"latency_ms": 300, "routes": ["/api/vehicles"]}
    with TestClient(create_app(make_settings(tmp_path, faults=faults))) as c:
        start = time.perf_counter()
        assert c.get("/api/vehicles").status_code == 200
        assert time.perf_counter() - start >= 0.3
        start = time.perf_counter()
        assert c.get("/api/version").status_code == 200
        assert time.perf_counter() - start < 0.3


def test_metrics_count_by_route_template(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, faults={"routes": ["/x"]}))) as c:
        c.get("/api/vehicles/7")
        c.get("/api/vehicles/8")
        c.get("/no/such/path")
        text = c.get("/metrics").text
    template = {"method": "GET", "route": "/api/vehicles/{vehicle_id}", "status": "404"}
    assert metric_value(text, "http_requests_total", template) == 2.0
    assert metric_value(text, "http_requests_total", {"route": "/api/vehicles/7"}) is None
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert metric_value(text, "http_requests_total", unmatched) == 1.0
    duration = {"method": "GET", "route": "/api/vehicles/{vehicle_id}"}
    assert metric_value(text, "http_request_duration_seconds_count", duration) == 2.0
    assert metric_value(text, "united_cars_build_info", {"version": TAG}) == 1.0


def test_metrics_count_injected_faults(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, faults={"error_rate": 1.0}))) as c:
        c.get("/api/vehicles")
        text = c.get("/metrics").text
    labels = {"method": "GET", "route": "/api/vehicles", "status": "500"}
    assert metric_value(text, "http_requests_total", labels) == 1.0


def test_apps_do_not_share_metrics(tmp_path: Path) -> None:
    first, second = create_app(make_settings(tmp_path)), create_app(make_settings(tmp_path))
    assert first.state.metrics.registry is not second.state.metrics.registry


# --- settings ----------------------------------------------------------------------------------


def test_settings_from_env() -> None:
    settings = Settings.from_env(
        {
            "UNITED_CARS_DATABASE_URL": "postgresql://app@db:5432/cars",
            "UNITED_CARS_RELEASE_FILE": "/srv/release.json",
            "UNITED_CARS_FAULTS": '{"error_rate": 0.25}',
            "UNITED_CARS_DEMO_USER": "alice",
        }
    )
    assert settings.database_url == "postgresql+psycopg://app@db:5432/cars"
    assert settings.release_file == Path("/srv/release.json")
    assert settings.faults_file == Path("/srv/faults.json")
    assert settings.faults == {"error_rate": 0.25}
    assert settings.demo_user == "alice"
    assert settings.demo_password == "demo"

    defaults = Settings.from_env({})
    assert defaults.database_url == "sqlite:///./united-cars.db"
    assert defaults.release_file == EXAMPLE_DIR / "release.json"
    assert defaults.faults is None
    with pytest.raises(ValueError, match="UNITED_CARS_FAULTS"):
        Settings.from_env({"UNITED_CARS_FAULTS": "{not json"})


# --- build_release -----------------------------------------------------------------------------


def test_build_release_is_deterministic(tmp_path: Path) -> None:
    kwargs: dict[str, object] = {"faults": {"error_rate": 0.5}, "built_at": "2024-01-15T10:00:00Z"}
    first = build_release.build_release(TAG, tmp_path / "a", **kwargs)  # type: ignore[arg-type]
    second = build_release.build_release(TAG, tmp_path / "b", **kwargs)  # type: ignore[arg-type]
    assert first.name == f"united-cars-{TAG}.tar.gz"
    assert first.read_bytes() == second.read_bytes()
    assert Path(f"{first}.sha256").read_text() == Path(f"{second}.sha256").read_text()


def test_build_release_contents_and_checksum(tmp_path: Path) -> None:
    artifact = build_release.build_release(TAG, tmp_path, built_at="2024-01-15T10:00:00Z")
    with tarfile.open(artifact) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        release = json.loads(tar.extractfile("release.json").read())  # type: ignore[union-attr]
    assert names == sorted(names)
    assert {"release.json", "united_cars", "united_cars/__init__.py", "united_cars/main.py"} <= set(
        names
    )
    assert "faults.json" not in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    assert all(n == "release.json" or n.startswith("united_cars") for n in names)
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname for m in members)
    assert release == {"version": TAG, "commit": "a1b2c3d", "built_at": "2024-01-15T10:00:00Z"}

    digest = hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert Path(f"{artifact}.sha256").read_text() == f"{digest}  {artifact.name}\n"


def test_build_release_with_faults_and_commit(tmp_path: Path) -> None:
    artifact = build_release.build_release(
        "v1.0", tmp_path, commit="deadbeef", faults={"health_down": True}
    )
    with tarfile.open(artifact) as tar:
        assert json.loads(tar.extractfile("faults.json").read()) == {"health_down": True}  # type: ignore[union-attr]
        release = json.loads(tar.extractfile("release.json").read())  # type: ignore[union-attr]
    assert release["commit"] == "deadbeef"
    assert release["version"] == "v1.0"


@pytest.mark.parametrize("tag", ["v1; rm -rf /", "", "-v1", "v1\n", "../v1", "v" * 129, "v1 2"])
def test_build_release_refuses_bad_tags(tmp_path: Path, tag: str) -> None:
    with pytest.raises(ValueError, match="invalid release tag"):
        build_release.build_release(tag, tmp_path)
    assert not any(tmp_path.iterdir())


def test_build_release_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = build_release.main([TAG, "--out", str(tmp_path), "--faults", '{"error_rate": 0.1}'])
    assert code == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / f"united-cars-{TAG}.tar.gz")
    assert build_release.main(["v1; rm -rf /", "--out", str(tmp_path)]) == 2


# --- a real server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_release_runs_under_uvicorn(tmp_path: Path) -> None:
    artifact = build_release.build_release(TAG, tmp_path / "dist")
    release_dir = tmp_path / "release"
    with tarfile.open(artifact) as tar:
        tar.extractall(release_dir, filter="data")
    port = free_port()
    # Only the release on the path, and no inherited UNITED_CARS_* settings: the defaults must
    # find release.json at the release root and put the database in the working directory.
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNITED_CARS_")}
    env["PYTHONPATH"] = str(release_dir)
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "united_cars.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        cwd=release_dir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        response: httpx.Response | None = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert response is not None, (tmp_path / "server.log").read_text()
        assert response.status_code == 200
        assert response.json() == {"status": "ok", "version": TAG, "database": "ok"}
        assert response.headers["x-frame-options"] == "DENY"
        assert (release_dir / "united-cars.db").exists()
    finally:
        proc.terminate()  # SIGTERM to this PID only: uvicorn shuts down gracefully
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_module_import_has_no_app() -> None:
    # Only united_cars.main builds an app; the package itself must stay side-effect free.
    import united_cars

    assert not any(isinstance(v, FastAPI) for v in vars(united_cars).values())


def test_unhandled_error_is_json_500_with_headers(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("bug")

    with TestClient(app) as c:
        response = c.get("/boom")
        text = c.get("/metrics").text
    assert response.status_code == 500
    assert response.json() == {"error": "internal server error"}
    assert response.headers["x-content-type-options"] == "nosniff"
    labels = {"method": "GET", "route": "/boom", "status": "500"}
    assert metric_value(text, "http_requests_total", labels) == 1.0
