"""Fixtures for the aggregator tests: report factory, SQLite and real PostgreSQL databases,
and a real uvicorn server process on 127.0.0.1."""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[2]
PG_SCRIPT = ROOT / "scripts" / "setup_postgres.sh"
BASE_REPORT = json.loads((ROOT / "tests/fixtures/reports/host_onnxruntime_freenet_s2.json").read_text())


def make_report(i: int = 0, *, model: str = "freenet_s2", samples=None, **top) -> dict:
    """A valid report; run_id derived from i so tests are deterministic."""
    doc = copy.deepcopy(BASE_REPORT)
    doc["run_id"] = str(uuid.UUID(int=(0xF1EE << 100) + i))
    doc["model"]["name"] = model
    if samples is not None:
        doc["timing"]["samples_ms"] = list(samples)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(doc.get(key), dict):
            doc[key].update(value)
        else:
            doc[key] = value
    return doc


@pytest.fixture(name="make_report")
def make_report_fixture():
    """The report factory (a fixture: tests/ is not a package, so it cannot be imported)."""
    return make_report


@pytest.fixture(scope="session")
def host_bundle(run_once) -> Path:
    """The host runner's bundle, exported once per test run and shared (read-only) by the runner,
    process and worker tests: FreeNet-tiny and StarNet-S050 at 64 px, fp32, for ONNX Runtime CPU,
    LiteRT (GPU target, also run on SwiftShader) and ExecuTorch XNNPACK."""
    from export.api import ExportPlan, export_bundle

    def build(out: Path) -> None:
        m = export_bundle(ExportPlan(models=["freenet_tiny", "starnet_s050"], formats=["onnx", "tflite", "executorch"],
                                     precisions=["fp32"], targets=["onnxruntime-cpu", "litert-gpu", "executorch-xnnpack"],
                                     out_dir=out, on_existing="overwrite", input_size=64))
        assert all(a.status == "ok" for a in m.artifacts), [a.error for a in m.artifacts]

    return run_once("host_bundle", build)


@pytest.fixture(scope="session")
def pg_url(run_once) -> str:
    """URL of the real PostgreSQL server (FREENET_TEST_PG_URL, or started by the setup script;
    one xdist worker runs the script, the others wait for it and read the URL it printed)."""
    url = os.environ.get("FREENET_TEST_PG_URL")
    if not url:
        url = (run_once("pg_url", _start_postgres) / "url").read_text()
    try:
        with psycopg.connect(_libpq(url), connect_timeout=5):
            pass
    except psycopg.Error as exc:
        pytest.fail(f"cannot connect to PostgreSQL at {url} ({exc}); run scripts/setup_postgres.sh "
                    "or set FREENET_TEST_PG_URL")
    return url


def _start_postgres(out: Path) -> None:
    try:
        proc = subprocess.run(["bash", str(PG_SCRIPT)], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"could not run {PG_SCRIPT} to start PostgreSQL: {exc}")
    if proc.returncode != 0:
        pytest.fail(f"PostgreSQL is required for the storage tests: scripts/setup_postgres.sh failed "
                    f"(rc={proc.returncode}):\n{proc.stderr[-2000:]}")
    out.mkdir()
    (out / "url").write_text(proc.stdout.strip().splitlines()[-1])


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
def fresh_pg(pg_url):
    """A new, empty PostgreSQL database for one test, dropped afterwards."""
    name = f"freenet_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(_libpq(pg_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'freenet.db'}"
    return request.getfixturevalue("fresh_pg")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`python -m device_bench.cli serve` in a subprocess on 127.0.0.1."""

    def __init__(self, db_url: str, bundles: Path | None = None, *, max_body: int | None = None, workers: int = 1):
        self.db_url, self.bundles, self.max_body, self.workers = db_url, bundles, max_body, workers
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "device_bench.cli", "serve", "--db", self.db_url,
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"]
        if self.bundles:
            cmd += ["--bundles", str(self.bundles)]
        if self.max_body:
            cmd += ["--max-body-bytes", str(self.max_body)]
        if self.workers > 1:
            cmd += ["--workers", str(self.workers)]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited rc={self.proc.returncode}:\n{self.proc.stdout.read().decode()[-3000:]}")
            try:
                if httpx.get(self.base + "/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("server did not become healthy within 60 s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL: no graceful shutdown, like a crash
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server_factory():
    started: list[ServerProcess] = []

    def make(db_url: str, **kw) -> ServerProcess:
        s = ServerProcess(db_url, **kw).start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()
