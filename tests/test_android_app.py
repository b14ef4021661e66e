"""CI checks of the Android runner app (android_app/) on Linux, without Gradle or a phone.

This module owns the Linux verification of the Android app: bench-core (pure Java) is compiled
with javac and unit-tested with JUnit 4 from Debian; its integration test then runs the whole
runner loop (manifest, sha256-checked downloads, fake-engine measurement, upload with a device
token, idempotent resend, 401/422) against the real aggregator started on 127.0.0.1 with a
temporary SQLite database and a small bundle; the reports it produced are validated against the
generated JSON Schema and the pydantic schema, and compared with the committed fixtures
tests/fixtures/reports/android_core_*.json (regenerate those with
FREENET_UPDATE_FIXTURES=1). Finally the app shell is built into a signed debug APK with Debian's
aapt2/javac/dx/zipalign/apksigner and checked with `apksigner verify` and `aapt2 dump badging`.
Tools come from scripts/setup_android_tools.sh (under $FREENET_TOOLS).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest

from device_bench.schema import parse_report
from export.manifest import Artifact, Manifest, Reference, TensorSpec

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "android_app"
CORE = APP / "bench-core"
TOOLS = Path(os.environ.get("FREENET_TOOLS", Path.home() / ".cache" / "freenet-deploy")) / "android"
JUNIT_CP = os.pathsep.join(["/usr/share/java/junit4.jar", "/usr/share/java/hamcrest-core.jar"])
SCHEMA = json.loads((ROOT / "device_bench" / "schema" / "report.schema.json").read_text())
FIXTURES = ROOT / "tests" / "fixtures" / "reports"
CORE_FIXTURES = ["android_core_ok.json", "android_core_error.json"]
UNIT_TESTS = ["JsonTest", "ManifestTest", "TargetsTest", "BenchmarkRunnerTest", "ReportQueueTest"]
SETUP_HINT = "run `bash scripts/setup_android_tools.sh` (installs into $FREENET_TOOLS/android)"


def _run(cmd: list[str], *, timeout: float, cwd: Path = ROOT, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd[:3])} ... exited {proc.returncode}\n--- stdout\n{proc.stdout[-8000:]}"
            f"\n--- stderr\n{proc.stderr[-8000:]}")
    return proc


def _java_sources(*roots: Path) -> list[str]:
    return sorted(str(p) for r in roots for p in r.rglob("*.java"))


@pytest.fixture(scope="module")
def tools() -> Path:
    missing = [t for t in ("java", "javac", "aapt2", "zipalign", "apksigner", "dexdump", "zip")
               if shutil.which(t) is None]
    missing += [str(p) for p in (TOOLS / "android.jar", TOOLS / "dx.jar", TOOLS / "debug.keystore",
                                 Path("/usr/share/java/junit4.jar")) if not p.is_file()]
    if missing:
        pytest.fail(f"Android tools missing: {', '.join(missing)}; {SETUP_HINT}")
    return TOOLS


@pytest.fixture(scope="module")
def core_classes(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-core-classes")
    _run(["javac", "--release", "8", "-nowarn", "-encoding", "UTF-8", "-cp", JUNIT_CP, "-d", str(out),
          *_java_sources(CORE / "src" / "main", CORE / "src" / "test")], timeout=180)
    return out


def _junit(classes: Path, test_class: str, *props: str) -> subprocess.CompletedProcess[str]:
    return _run(["java", *props, "-cp", f"{classes}{os.pathsep}{JUNIT_CP}", "org.junit.runner.JUnitCore",
                 f"dev.freenet.bench.core.{test_class}"], timeout=300)


# ---- toolchain and bench-core ----------------------------------------------------------------

def test_setup_script_is_idempotent_and_fast(tools: Path) -> None:
    start = time.monotonic()
    proc = _run(["bash", str(ROOT / "scripts" / "setup_android_tools.sh")], timeout=600)
    assert "already installed" in proc.stdout, proc.stdout
    assert time.monotonic() - start < 10


def test_bench_core_is_pure_java_within_android_api_23(tools: Path, tmp_path: Path) -> None:
    """No Android import, and every JDK API it uses exists on API 23 (bootclasspath check)."""
    offenders = [p.name for p in (CORE / "src" / "main").rglob("*.java")
                 if "import android." in p.read_text() or "import androidx." in p.read_text()]
    assert not offenders, f"bench-core must not import Android: {offenders}"
    _run(["javac", "-source", "8", "-target", "8", "-Xlint:-options", "-encoding", "UTF-8",
          "-bootclasspath", str(tools / "android.jar"), "-d", str(tmp_path),
          *_java_sources(CORE / "src" / "main")], timeout=180)


@pytest.mark.parametrize("test_class", UNIT_TESTS)
def test_bench_core_junit(core_classes: Path, test_class: str) -> None:
    proc = _junit(core_classes, test_class)
    assert "OK (" in proc.stdout, proc.stdout


# ---- against the real aggregator -------------------------------------------------------------

def _f32(values: np.ndarray) -> bytes:
    return values.astype("<f4").tobytes()


def _write_bundle(root: Path, bundle: str) -> None:
    """A bundle for bench-core's fake engine, written with the export side's manifest model.

    "fake_ok" is consistent; "fake_tampered" announces a wrong sha256 for its model file, so
    the runner must refuse it and report an error.
    """
    shape = [1, 3, 8, 8]
    x = np.random.default_rng(0).standard_normal(int(np.prod(shape))).astype(np.float32)
    artifacts = []
    for art_id, scale, tamper in (("fake_ok", 2.0, False), ("fake_tampered", 3.0, True)):
        d = root / bundle / art_id
        d.mkdir(parents=True)
        files = {"model.tflite": struct.pack("<f", scale), "ref_in.f32": _f32(x),
                 "ref_out.f32": _f32(x * np.float32(scale))}
        for name, data in files.items():
            (d / name).write_bytes(data)
        sha = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
        artifacts.append(Artifact(
            id=art_id, model="fake_scale", model_family="fake", config_hash="0", format="tflite",
            target="litert-cpu", precision="fp32", status="ok", file=f"{art_id}/model.tflite",
            sha256=("0" * 64) if tamper else sha["model.tflite"], size_bytes=4,
            inputs=[TensorSpec(name="x", shape=shape, layout="NCHW")],
            outputs=[TensorSpec(name="y", shape=shape)],
            reference=Reference(input_file=f"{art_id}/ref_in.f32", output_file=f"{art_id}/ref_out.f32",
                                input_sha256=sha["ref_in.f32"], output_sha256=sha["ref_out.f32"], seed=0),
            macs=int(np.prod(shape)), params=1,
            notes=["bench-core test artifact: one float32 scale, not a neural network"]))
    Manifest(bundle_id=bundle, artifacts=artifacts).dump(root / bundle / "manifest.json")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def aggregator(tools: Path, tmp_path_factory: pytest.TempPathFactory):
    """`freenet serve` (as `python -m device_bench.cli serve`) on 127.0.0.1 with a temp DB."""
    tmp = tmp_path_factory.mktemp("aggregator")
    bundles = tmp / "bundles"
    _write_bundle(bundles, "android-test")
    db = f"sqlite:///{tmp / 'freenet.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    token = _run([sys.executable, "-m", "device_bench.cli", "token", "create", "--device", "junit-jvm",
                  "--db", db], timeout=120, env=env).stdout.strip().splitlines()[-1]
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "device_bench.cli", "serve", "--db", db, "--port", str(port),
         "--bundles", str(bundles), "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"aggregator did not start: {(tmp / 'server.log').read_text()[-4000:]}")
            time.sleep(0.3)
        yield {"url": url, "token": token, "bundle": "android-test"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def core_reports(core_classes: Path, aggregator: dict[str, str],
                 tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Runs AggregatorIntegrationTest; returns the reports bench-core wrote, by file name."""
    out = tmp_path_factory.mktemp("core-reports")
    proc = _junit(core_classes, "AggregatorIntegrationTest",
                  f"-Dfreenet.server={aggregator['url']}", f"-Dfreenet.token={aggregator['token']}",
                  f"-Dfreenet.bundle={aggregator['bundle']}", f"-Dfreenet.reportOut={out}")
    assert "OK (4 tests)" in proc.stdout, proc.stdout
    reports = {name: json.loads((out / name).read_text()) for name in CORE_FIXTURES}
    if os.environ.get("FREENET_UPDATE_FIXTURES") == "1":
        for name, report in reports.items():
            (FIXTURES / name).write_text(json.dumps(report, indent=2) + "\n")
    return reports


def test_core_reports_reached_the_server_once(core_reports: dict[str, dict[str, Any]],
                                              aggregator: dict[str, str]) -> None:
    r = httpx.get(f"{aggregator['url']}/api/v1/reports", params={"model": "fake_scale", "limit": 50},
                  timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    rows = body["reports"] if isinstance(body, dict) else body
    stored = sorted(row["run_id"] for row in rows)
    assert stored == sorted(rep["run_id"] for rep in core_reports.values()), body
    by_id = {row["run_id"]: row for row in rows}
    assert by_id[core_reports["android_core_error.json"]["run_id"]]["status"] == "error"
    # The dashboard shows them: the index lists the model, each report has its page.
    index = httpx.get(f"{aggregator['url']}/", timeout=30)
    assert index.status_code == 200 and "fake_scale" in index.text
    for rep in core_reports.values():
        page = httpx.get(f"{aggregator['url']}/reports/{rep['run_id']}", timeout=30)
        assert page.status_code == 200 and rep["model"]["artifact_id"] in page.text


@pytest.mark.parametrize("name", CORE_FIXTURES)
def test_core_reports_validate_against_the_json_schema(core_reports: dict[str, dict[str, Any]],
                                                       name: str) -> None:
    report = core_reports[name]
    errors = [f"{list(e.path)}: {e.message}"
              for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(report)]
    assert not errors, errors
    parsed = parse_report(report)
    assert parsed.client.platform == "android"
    assert parsed.status == ("ok" if name.endswith("_ok.json") else "error")


def _shape(value: Any) -> Any:
    """The key structure of a JSON value (values dropped), to compare reports of two runs."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return "list"
    return type(value).__name__ if value is not None else "null"


@pytest.mark.parametrize("name", CORE_FIXTURES)
def test_committed_fixture_is_what_the_core_produces(core_reports: dict[str, dict[str, Any]],
                                                     name: str) -> None:
    committed = json.loads((FIXTURES / name).read_text())
    fresh = core_reports[name]
    # Device facts depend on the JVM and machine that regenerated the fixture; the rest must
    # keep the same structure, so the fixture cannot drift from what bench-core sends.
    for report in (committed, fresh):
        report["device"] = {k: v for k, v in report["device"].items() if k != "memory_bytes"}
    assert _shape(committed) == _shape(fresh), (
        f"{name} no longer matches bench-core's output: regenerate with "
        "FREENET_UPDATE_FIXTURES=1 pytest tests/test_android_app.py")


@pytest.mark.parametrize("name", CORE_FIXTURES)
def test_committed_core_fixtures_are_valid_and_say_what_they_are(name: str) -> None:
    report = json.loads((FIXTURES / name).read_text())
    errors = [e.message for e in jsonschema.Draft202012Validator(SCHEMA).iter_errors(report)]
    assert not errors, errors
    parsed = parse_report(report)
    # A JVM fake-engine run must never pass for a phone speed result.
    assert parsed.runtime.emulated is True
    assert parsed.runtime.accelerator == "jvm-fake"
    assert "not a phone" in parsed.device.model
    if parsed.status == "ok":
        assert "FakeEngine" in parsed.runtime.delegate
        assert len(parsed.timing.samples_ms) == 20 and parsed.parity.reference_checked
        assert parsed.parity.max_abs_diff == 0.0
    else:
        assert "sha256 mismatch" in parsed.error and parsed.timing.samples_ms == []


# ---- the APK shell -----------------------------------------------------------------------

@pytest.mark.slow
def test_debug_apk_builds_signed_and_has_the_real_activity(tools: Path, tmp_path: Path) -> None:
    proc = _run(["bash", str(APP / "tools" / "build_shell_apk.sh"), str(tmp_path)], timeout=600)
    apk = tmp_path / "freenet-bench-shell-debug.apk"
    assert apk.is_file(), proc.stdout

    verify = _run(["apksigner", "verify", "--verbose", str(apk)], timeout=120).stdout
    assert "Verified using v2 scheme (APK Signature Scheme v2): true" in verify, verify

    badging = _run(["aapt2", "dump", "badging", str(apk)], timeout=60).stdout
    assert "package: name='dev.freenet.bench' versionCode='1' versionName='0.1.0'" in badging
    assert "sdkVersion:'23'" in badging
    assert "launchable-activity: name='dev.freenet.bench.app.MainActivity'" in badging
    assert "uses-permission: name='android.permission.INTERNET'" in badging

    dex = _run(["dexdump", str(apk)], timeout=120).stdout
    classes = {line.split("'")[1] for line in dex.splitlines() if "Class descriptor" in line}
    for needed in ("Ldev/freenet/bench/app/MainActivity;", "Ldev/freenet/bench/app/AndroidThermalProbe;",
                   "Ldev/freenet/bench/core/BenchmarkRunner;", "Ldev/freenet/bench/core/ReportQueue;",
                   "Ldev/freenet/bench/R$layout;"):
        assert needed in classes, f"{needed} missing from classes.dex"
    # The shell is the app minus the ML runtimes (only Gradle can bundle their AARs).
    runtimes = [c for c in classes if c.startswith(("Lorg/tensorflow/", "Lai/onnxruntime/", "Lorg/pytorch/"))]
    assert not runtimes, runtimes

    resources = _run(["aapt2", "dump", "resources", str(apk)], timeout=60).stdout
    for view_id in ("server", "token", "bundle", "runs", "warmups", "start", "stop", "upload",
                    "progress", "status", "results"):
        assert f" id/{view_id}\n" in resources, f"settings screen lacks the view id/{view_id}"
    layout = _run(["aapt2", "dump", "xmltree", "--file", "res/layout/activity_main.xml", str(apk)],
                  timeout=60).stdout
    widgets = [line.split("E: ")[1].split(" ")[0] for line in layout.splitlines() if "E: " in line]
    assert widgets.count("EditText") == 6 and widgets.count("Button") == 3, widgets
    assert "ProgressBar" in widgets and "ListView" in widgets, widgets
