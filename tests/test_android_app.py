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

The engine modules (LiteRT, ONNX Runtime, ExecuTorch) cannot be built without Gradle and the
runtimes' AARs, so they are compiled with javac against signature stubs that
tests/android_api_stubs.py generates from the runtimes' recorded public API
(../shared/android-api/api.json), each module against the artifacts its build.gradle declares:
a call the real runtime does not have fails here as it would in Android Studio. The same tests
reintroduce the two errors the engines once had and check javac rejects them, and parse the
Gradle files: every version comes from gradle/libs.versions.toml.
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
import re
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import numpy as np
import pytest

from device_bench.schema import judge_parity, parity_tolerance, parse_report
import android_api_stubs  # tests/android_api_stubs.py (pytest puts tests/ on sys.path)
from export.manifest import Artifact, Manifest, Reference, TensorSpec

ROOT = Path(__file__).resolve().parents[1]
# pytest-xdist (`make test`): every test of this file runs on one worker, in order (its setup script, JDK compiles and aggregator are module fixtures built once).
pytestmark = pytest.mark.xdist_group("android")
APP = ROOT / "android_app"
CORE = APP / "bench-core"
TOOLS = Path(os.environ.get("FREENET_TOOLS", Path.home() / ".cache" / "freenet-deploy")) / "android"
JUNIT_CP = os.pathsep.join(["/usr/share/java/junit4.jar", "/usr/share/java/hamcrest-core.jar"])
SCHEMA = json.loads((ROOT / "device_bench" / "schema" / "report.schema.json").read_text())
FIXTURES = ROOT / "tests" / "fixtures" / "reports"
CORE_FIXTURES = ["android_core_ok.json", "android_core_error.json", "android_core_parity_failed.json"]
FIXTURE_STATUS = {"android_core_ok.json": "ok", "android_core_error.json": "error",
                  "android_core_parity_failed.json": "parity_failed"}
UNIT_TESTS = ["JsonTest", "ManifestTest", "TargetsTest", "BenchmarkRunnerTest", "ReportQueueTest", "ParityTest"]
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


def test_parity_verdict_agrees_with_the_schemas_judge(core_classes: Path, tmp_path: Path) -> None:
    """bench-core's Parity against device_bench.schema.judge_parity, the one definition."""
    rng = np.random.default_rng(0)
    cases = []
    for precision in ("fp32", "fp16", "int8"):
        for accelerator in ("cpu", "xnnpack", "portable", "gpu", "nnapi", "vulkan", "jvm-fake"):
            for scale in (1.0, 1e-5):  # 1e-5: a reference below fp16's smallest normal
                for drift in (0.0, 5e-4, 2e-2, 0.5):
                    ref = (rng.standard_normal(16) * scale).astype(np.float32)
                    out = (ref * np.float32(1 + drift)).astype(np.float32)
                    diff = float(np.max(np.abs(out.astype(np.float64) - ref.astype(np.float64))))
                    verdict = judge_parity(diff, float(np.max(np.abs(ref.astype(np.float64)))),
                                           precision, accelerator)
                    cases.append({"precision": precision, "accelerator": accelerator,
                                  "out": out.tolist(), "ref": ref.tolist(), "rel_diff": verdict.rel_diff,
                                  "tolerance": verdict.tolerance, "passed": verdict.passed})
    assert {c["passed"] for c in cases} == {True, False, None}
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    proc = _junit(core_classes, "ParitySchemaCasesTest", f"-Dfreenet.parityCases={tmp_path / 'cases.json'}")
    assert "OK (1 test)" in proc.stdout, proc.stdout


# ---- against the real aggregator -------------------------------------------------------------

def _f32(values: np.ndarray) -> bytes:
    return values.astype("<f4").tobytes()


def _write_bundle(root: Path, bundle: str) -> None:
    """A bundle for bench-core's fake engine, written with the export side's manifest model.

    "fake_ok" is consistent; "fake_drifted" runs, but its reference output is 1.5x what the
    model computes (rel_diff 1/3: parity fails); "fake_tampered" announces a wrong sha256 for its
    model file, so the runner must refuse it and report an error.
    """
    shape = [1, 3, 8, 8]
    x = np.random.default_rng(0).standard_normal(int(np.prod(shape))).astype(np.float32)
    artifacts = []
    for art_id, scale, drift, tamper in (("fake_ok", 2.0, 1.0, False), ("fake_drifted", 2.0, 1.5, False),
                                         ("fake_tampered", 3.0, 1.0, True)):
        d = root / bundle / art_id
        d.mkdir(parents=True)
        files = {"model.tflite": struct.pack("<f", scale), "ref_in.f32": _f32(x),
                 "ref_out.f32": _f32(x * np.float32(scale * drift))}
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
    assert "OK (5 tests)" in proc.stdout, proc.stdout
    reports = {name: json.loads((out / name).read_text()) for name in CORE_FIXTURES}
    if os.environ.get("FREENET_UPDATE_FIXTURES") == "1":
        for name, report in reports.items():
            (FIXTURES / name).write_text(json.dumps(report, indent=2) + "\n")
    # Run ids of AggregatorIntegrationTest's batch upload: {"stored": [...], "rejected": [...]}.
    reports["batch"] = json.loads((out / "batch_run_ids.json").read_text())
    return reports


def test_core_reports_reached_the_server_once(core_reports: dict[str, dict[str, Any]],
                                              aggregator: dict[str, str]) -> None:
    r = httpx.get(f"{aggregator['url']}/api/v1/reports", params={"model": "fake_scale", "limit": 50},
                  timeout=10)
    assert r.status_code == 200, r.text
    body = r.json()
    rows = body["reports"]  # the list endpoint's one shape: {"reports": [...], "next_cursor": ...}
    assert body["next_cursor"] is None, body  # all of them fit in one page of 50
    stored = sorted(row["run_id"] for row in rows)
    batch = core_reports["batch"]
    # The runner's reports and the batch test's (its 422 one is not stored) went up through
    # POST /api/v1/reports/batch, each once.
    expected = [core_reports[name]["run_id"] for name in CORE_FIXTURES] + batch["stored"]
    assert stored == sorted(expected), body
    assert not set(batch["rejected"]) & set(stored)
    by_id = {row["run_id"]: row for row in rows}
    for name in CORE_FIXTURES:
        assert by_id[core_reports[name]["run_id"]]["status"] == FIXTURE_STATUS[name], name
    full = httpx.get(f"{aggregator['url']}/api/v1/reports/{core_reports['android_core_ok.json']['run_id']}",
                     timeout=10).json()
    assert full["model"]["family"] == "fake"
    drifted = httpx.get(f"{aggregator['url']}/api/v1/reports/"
                        f"{core_reports['android_core_parity_failed.json']['run_id']}", timeout=10).json()
    assert drifted["parity"]["passed"] is False and len(drifted["timing"]["samples_ms"]) == 20
    # The dashboard shows them: the index lists the model, each report has its page.
    index = httpx.get(f"{aggregator['url']}/", timeout=30)
    assert index.status_code == 200 and "fake_scale" in index.text
    for rep in (core_reports[name] for name in CORE_FIXTURES):
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
    assert parsed.status == FIXTURE_STATUS[name]
    assert parsed.model.family == "fake"


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
        assert parsed.parity.max_abs_diff == 0.0 and parsed.parity.passed is True
    elif parsed.status == "parity_failed":
        assert len(parsed.timing.samples_ms) == 20 and parsed.parity.passed is False
        assert parsed.parity.rel_diff == pytest.approx(1 / 3, rel=1e-5)
        assert parsed.parity.tolerance == parity_tolerance(parsed.model.precision, parsed.runtime.accelerator)
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


# ---- engine modules against the runtimes' recorded API ------------------------------------

CATALOG = tomllib.loads((APP / "gradle" / "libs.versions.toml").read_text())
ENGINE_MODULES = ["engine-litert", "engine-onnxruntime", "engine-executorch"]
API_JSON = android_api_stubs.default_api_json(ROOT)
# The upstream code of these artifacts was never recorded on its own; each has the Java API of a
# recorded artifact (same sources, other native build).
SAME_API_AS = {"org.pytorch:executorch-android-vulkan": "org.pytorch:executorch-android"}
# Dependencies that only the local-AAR path adds (what executorch-android's POM brings); no
# engine code calls them.
NOT_RUNTIME_API = {"com.facebook.fbjni:fbjni", "com.facebook.soloader:nativeloader",
                   "org.jetbrains.kotlin:kotlin-stdlib", "androidx.annotation:annotation"}


@pytest.fixture(scope="module")
def runtime_stubs(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> android_api_stubs.Stubs:
    if not API_JSON.is_file():
        pytest.fail(f"the runtimes' API facts are missing: {API_JSON} (set "
                    f"${android_api_stubs.API_DIR_ENV} to the folder holding api.json)")
    return android_api_stubs.build(API_JSON, tools / "android.jar", tmp_path_factory.mktemp("runtime-stubs"))


@pytest.fixture(scope="module")
def core_main_classes(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench-core-main")
    _run(["javac", "-source", "8", "-target", "8", "-Xlint:-options", "-nowarn", "-encoding", "UTF-8",
          "-bootclasspath", str(tools / "android.jar"), "-d", str(out),
          *_java_sources(CORE / "src" / "main")], timeout=180)
    return out


def _compile_dependencies(module: str) -> list[str]:
    """Maven modules of `implementation libs.x` lines of a module (every branch of its build)."""
    text = (APP / module / "build.gradle").read_text()
    aliases = re.findall(r"^\s*implementation\s+libs\.([A-Za-z0-9_.]+)", text, re.M)
    return [CATALOG["libraries"][a.replace(".", "-")]["module"] for a in aliases]


def _namespace(module: str) -> str:
    match = re.search(r'namespace\s+"([\w.]+)"', (APP / module / "build.gradle").read_text())
    assert match, f"{module}/build.gradle names no namespace"
    return match.group(1)


def _compile_engine(module: str, stubs: android_api_stubs.Stubs, core: Path, tools: Path, out: Path,
                    artifacts: list[str], sources: dict[str, str] | None = None,
                    ) -> subprocess.CompletedProcess[str]:
    """javac of one engine module as AGP would run it: Java 8, API-23 android.jar, bench-core,
    a BuildConfig, and the stubs of `artifacts`; `sources` replaces files by their path."""
    src = out / "src"
    ns = _namespace(module)
    build_config = src / "gen" / ns.replace(".", "/") / "BuildConfig.java"
    build_config.parent.mkdir(parents=True)
    build_config.write_text(f"package {ns};\npublic final class BuildConfig {{\n"
                            f'  public static final String RUNTIME_VERSION = "test";\n}}\n')
    files = [build_config]
    for path in sorted((APP / module / "src" / "main" / "java").rglob("*.java")):
        rel = str(path.relative_to(APP))
        if sources and rel in sources:
            path = src / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(sources[rel])
        files.append(path)
    classpath = [str(core), str(stubs.needed), *(str(stubs.classes[a]) for a in artifacts)]
    return subprocess.run(
        ["javac", "-source", "8", "-target", "8", "-Xlint:-options", "-encoding", "UTF-8",
         "-bootclasspath", str(tools / "android.jar"), "-cp", os.pathsep.join(classpath),
         "-d", str(out / "classes"), *map(str, files)],
        cwd=APP, capture_output=True, text=True, timeout=300)


def _recorded(deps: list[str], stubs: android_api_stubs.Stubs) -> list[str]:
    out = []
    for dep in deps:
        dep = SAME_API_AS.get(dep, dep)
        if dep in stubs.classes:
            if dep not in out:
                out.append(dep)
        else:
            assert dep in NOT_RUNTIME_API, (
                f"{dep} is a dependency whose API ../shared/android-api/api.json does not record: "
                "record it there (or say why no engine code calls it) before using it")
    return out


def _engine_artifacts(module: str, stubs: android_api_stubs.Stubs) -> list[str]:
    """The recorded artifacts whose stubs javac gets for a module: its `implementation` lines."""
    arts = _recorded(_compile_dependencies(module), stubs)
    assert arts, f"{module} declares no runtime dependency from the catalog"
    return arts


@pytest.mark.parametrize("module", ENGINE_MODULES)
def test_engine_module_compiles_against_the_runtime_api_facts(
        module: str, runtime_stubs: android_api_stubs.Stubs, core_main_classes: Path, tools: Path,
        tmp_path: Path) -> None:
    arts = _engine_artifacts(module, runtime_stubs)
    proc = _compile_engine(module, runtime_stubs, core_main_classes, tools, tmp_path, arts)
    assert proc.returncode == 0, f"{module} does not compile against {arts}:\n{proc.stderr}"
    assert list((tmp_path / "classes").rglob("*Engine.class")), "javac wrote no engine class"


def _source(rel: str) -> str:
    return (APP / rel).read_text()


LITERT = "engine-litert/src/main/java/dev/freenet/bench/litert/LiteRtEngine.java"
EXECUTORCH = "engine-executorch/src/main/java/dev/freenet/bench/executorch/ExecuTorchEngine.java"
ORT = "engine-onnxruntime/src/main/java/dev/freenet/bench/ort/OrtEngine.java"
# The engines' old mistakes put back into today's code; each must be a javac error.
OLD_LITERT_GPU = '''
  static void oldGpuPath() throws Exception {
    org.tensorflow.lite.Interpreter.Options options = new org.tensorflow.lite.Interpreter.Options();
    org.tensorflow.lite.gpu.GpuDelegate gpuDelegate = new org.tensorflow.lite.gpu.GpuDelegate();
    options.addDelegate(gpuDelegate);
    gpuDelegate.close();
  }
}
'''


def _with_old_litert_gpu(text: str) -> str:
    return text[:text.rstrip().rindex("}")] + OLD_LITERT_GPU


REINTRODUCED = {
    # LiteRT 2.x: Interpreter.Options has no delegate API, and GpuDelegate's supertype
    # org.tensorflow.lite.Delegate is in no 2.x artifact (the old build also had litert-gpu).
    "litert-addDelegate": ("engine-litert", LITERT, _with_old_litert_gpu,
                           ["com.google.ai.edge.litert:litert-gpu", "com.google.ai.edge.litert:litert-gpu-api"],
                           ["error: cannot find symbol", "symbol:   method addDelegate(GpuDelegate)",
                            "error: cannot access Delegate",
                            "class file for org.tensorflow.lite.Delegate not found"]),
    # ExecuTorch 1.3+: loadMethod returns void and throws.
    "executorch-int-loadMethod": ("engine-executorch", EXECUTORCH,
                                  lambda t: t.replace('module.loadMethod("forward");',
                                                      'int err = module.loadMethod("forward");', 1),
                                  [], ["error: incompatible types: void cannot be converted to int",
                                       'int err = module.loadMethod("forward");']),
    # A misspelt execution provider: any name the facts lack is an error.
    "onnxruntime-misspelt-method": ("engine-onnxruntime", ORT,
                                    lambda t: t.replace("o.addNnapi();", "o.addNNAPI();", 1),
                                    [], ["error: cannot find symbol", "symbol:   method addNNAPI()"]),
}


@pytest.mark.parametrize("case", sorted(REINTRODUCED))
def test_a_wrong_runtime_call_fails_the_build(case: str, runtime_stubs: android_api_stubs.Stubs,
                                              core_main_classes: Path, tools: Path, tmp_path: Path) -> None:
    module, rel, mutate, extra, expected = REINTRODUCED[case]
    original = _source(rel)
    changed = mutate(original)
    assert changed != original, f"{case}: the mutation no longer applies to {rel}; update the test"
    arts = _engine_artifacts(module, runtime_stubs) + extra
    proc = _compile_engine(module, runtime_stubs, core_main_classes, tools, tmp_path, arts, {rel: changed})
    assert proc.returncode != 0, f"{case}: javac accepted a call the runtime does not have"
    for line in expected:
        assert line in proc.stderr, f"{case}: javac said\n{proc.stderr}"


# The engine sources before they were moved to the real APIs (the commit issue 10 started from).
OLD_ENGINES_COMMIT = "4796906"


@pytest.mark.parametrize("module, rel, extra, expected", [
    ("engine-litert", LITERT,
     ["com.google.ai.edge.litert:litert-gpu", "com.google.ai.edge.litert:litert-gpu-api"],
     ["LiteRtEngine.java:60: error: cannot find symbol", "symbol:   method addDelegate(GpuDelegate)",
      "LiteRtEngine.java:126: error: cannot access Delegate", "2 errors"]),
    ("engine-executorch", EXECUTORCH, [],
     ["ExecuTorchEngine.java:35: error: incompatible types: void cannot be converted to int", "1 error"]),
])
def test_the_old_engine_code_does_not_compile(module: str, rel: str, extra: list[str], expected: list[str],
                                              runtime_stubs: android_api_stubs.Stubs, core_main_classes: Path,
                                              tools: Path, tmp_path: Path) -> None:
    """Today's stubs reject the code the issue reported, with the errors Android Studio gave."""
    old_root = tmp_path / "old"
    listing = _run(["git", "ls-tree", "-r", "--name-only", OLD_ENGINES_COMMIT, f"android_app/{module}/src"],
                   timeout=60).stdout.split()
    sources = {}
    for path in listing:
        if path.endswith(".java"):
            sources[path.removeprefix("android_app/")] = _run(
                ["git", "show", f"{OLD_ENGINES_COMMIT}:{path}"], timeout=60).stdout
    assert rel in sources, listing
    # The old code against the old Engine interface: compile it with the old bench-core too.
    core = old_root / "core"
    core_sources = []
    for path in _run(["git", "ls-tree", "-r", "--name-only", OLD_ENGINES_COMMIT,
                      "android_app/bench-core/src/main"], timeout=60).stdout.split():
        target = old_root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(_run(["git", "show", f"{OLD_ENGINES_COMMIT}:{path}"], timeout=60).stdout)
        core_sources.append(str(target))
    _run(["javac", "-source", "8", "-target", "8", "-Xlint:-options", "-nowarn", "-bootclasspath",
          str(tools / "android.jar"), "-d", str(core), *core_sources], timeout=180)
    old_arts = ["com.google.ai.edge.litert:litert", "com.google.ai.edge.litert:litert-api", *extra] \
        if module == "engine-litert" else _engine_artifacts(module, runtime_stubs)
    proc = _compile_old(module, sources, runtime_stubs, core, tools, old_root / "out", old_arts)
    assert proc.returncode != 0, "the old engine code compiled: the stubs lost an API fact"
    for line in expected:
        assert line in proc.stderr, proc.stderr


def _compile_old(module: str, sources: dict[str, str], stubs: android_api_stubs.Stubs, core: Path,
                 tools: Path, out: Path, artifacts: list[str]) -> subprocess.CompletedProcess[str]:
    src = out / "src"
    files = []
    for rel, text in sources.items():
        path = src / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        files.append(path)
    ns = _namespace(module)
    build_config = src / "gen" / ns.replace(".", "/") / "BuildConfig.java"
    build_config.parent.mkdir(parents=True)
    build_config.write_text(f'package {ns};\npublic final class BuildConfig {{ '
                            f'public static final String RUNTIME_VERSION = "old"; }}\n')
    classpath = [str(core), str(stubs.needed), *(str(stubs.classes[a]) for a in artifacts)]
    # Run from src/ so that javac names the files as android_app/-relative paths.
    return subprocess.run(
        ["javac", "-source", "8", "-target", "8", "-Xlint:-options", "-encoding", "UTF-8",
         "-bootclasspath", str(tools / "android.jar"), "-cp", os.pathsep.join(classpath),
         "-d", str(out / "classes"), *(str(f.relative_to(src)) for f in files),
         str(build_config.relative_to(src))],
        cwd=src, capture_output=True, text=True, timeout=300)


# ---- Gradle files -------------------------------------------------------------------------

GRADLE_FILES = sorted(p.relative_to(APP).as_posix() for p in APP.rglob("*.gradle") if "build" not in p.parts)


@pytest.mark.parametrize("rel", GRADLE_FILES)
def test_gradle_file_takes_every_version_from_the_catalog(rel: str) -> None:
    text = re.sub(r"//[^\n]*", "", (APP / rel).read_text())
    # "group:artifact:version" literals, plugin `version` clauses and bare SDK numbers.
    inline = re.findall(r"""["'][\w.-]+:[\w.-]+:[^"']+["']""", text)
    inline += re.findall(r"\bid\s*\(?\s*[\"'][\w.]+[\"']\s*\)?\s+version\b", text)
    inline += re.findall(r"\b(?:compileSdk|minSdk|targetSdk)\s*=?\s*\d+", text)
    assert not inline, f"{rel}: versions outside gradle/libs.versions.toml: {inline}"
    for kind, alias in re.findall(r"\blibs\.(plugins\.|versions\.)?([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)", text):
        alias = alias.removesuffix(".get")
        table = {"plugins.": "plugins", "versions.": "versions"}.get(kind, "libraries")
        key = alias.replace(".", "-")
        found = key in CATALOG[table] or (table == "versions" and alias in CATALOG[table])
        assert found, f"{rel}: libs.{kind}{alias} is not in gradle/libs.versions.toml [{table}]"


def test_catalog_is_complete_and_used() -> None:
    gradle = "\n".join((APP / rel).read_text() for rel in GRADLE_FILES)
    for alias, lib in CATALOG["libraries"].items():
        # `version.ref` is a dotted TOML key: {"version": {"ref": ...}}; no inline version strings.
        ref = lib.get("version", {}).get("ref") if isinstance(lib.get("version"), dict) else None
        assert ref in CATALOG["versions"], f"catalog library {alias} does not take its version from [versions]"
        assert f"libs.{alias.replace('-', '.')}" in gradle, f"catalog library {alias} is used by no module"
    for alias, plugin in CATALOG["plugins"].items():
        assert plugin["version"]["ref"] in CATALOG["versions"], alias
        assert f"libs.plugins.{alias.replace('-', '.')}" in gradle, alias
    # The runtimes match the export side (pyproject.toml pins the Python packages).
    pyproject = (ROOT / "pyproject.toml").read_text()
    for version, package in (("litert", "ai-edge-litert"), ("onnxruntime", "onnxruntime"),
                             ("executorch", "executorch")):
        assert f'"{package}=={CATALOG["versions"][version]}' in pyproject.replace("'", '"'), (
            f"{version} {CATALOG['versions'][version]} differs from pyproject.toml's {package}")


def test_gradle_properties_turn_androidx_on_and_document_the_switches() -> None:
    props = (APP / "gradle.properties").read_text()
    assert re.search(r"^android\.useAndroidX=true$", props, re.M), \
        "executorch-android depends on AndroidX: AGP refuses it without android.useAndroidX=true"
    readme = (APP / "README.md").read_text()
    for switch in ("executorchVulkan", "executorchAar", "litertGpu"):
        assert switch in props and switch in readme, switch
    first_build = readme[readme.index("## First build"):]
    for version in CATALOG["versions"].values():
        if version in ("36", "26"):
            continue
        assert version in readme, f"README does not say which version {version} Android Studio downloads"
    assert "not yet published" in first_build and "loadMethod" in first_build
    executorch = (APP / "engine-executorch" / "build.gradle").read_text()
    assert "libs.executorch.android.vulkan" in executorch
    local = executorch[executorch.index("if (localAar)"):executorch.index("} else if (vulkan)")]
    assert "libs.kotlin.stdlib" in local, "a local (Kotlin) AAR needs the Kotlin stdlib on its class path"
