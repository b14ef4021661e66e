"""CI entry for the iOS app core: `swift test` of ios_app/BenchCore against the real aggregator.

This module owns the Linux verification of the iOS app. It checks the Swift toolchain installed
by `scripts/setup_swift.sh` (a Debian 13 chroot), builds a tiny model bundle with numpy (weights,
reference input and the numpy reference output, plus one artifact whose manifest sha256 is wrong),
starts `freenet serve` on 127.0.0.1 with a temporary SQLite database and a fresh device token,
and runs `swift test` inside the chroot with the URL, token and bundle in environment variables
(the chroot shares the host's loopback). The Swift live tests download the bundle, measure, and
upload; this side then validates every report they uploaded against the committed JSON Schema
(the contract test) and checks the server stored each one. The committed sample report
`tests/fixtures/reports/ios_benchcore_linux_tiny_linear.json` was produced by this test
(`FREENET_UPDATE_FIXTURES=1` rewrites it) and is validated and shown by the server here too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import jsonschema
import numpy as np
import pytest

from device_bench.schema import parity_tolerance, parse_report

ROOT = Path(__file__).resolve().parents[1]
# pytest-xdist (`make test`): every test of this file runs on one worker, in order (the Swift chroot's package directory and .build are shared state).
pytestmark = pytest.mark.xdist_group("ios")
TOOLS = Path(os.environ.get("FREENET_TOOLS", Path.home() / ".cache" / "freenet-deploy"))
CHROOT = TOOLS / "swift-chroot"
SETUP = ROOT / "scripts" / "setup_swift.sh"
PACKAGE = ROOT / "ios_app" / "BenchCore"
SCHEMA = json.loads((ROOT / "device_bench" / "schema" / "report.schema.json").read_text())
FIXTURE = ROOT / "tests" / "fixtures" / "reports" / "ios_benchcore_linux_tiny_linear.json"
BUNDLE_ID = "ios-benchcore-test"
# The Swift side measures with these and asserts them; keep in step with LiveAggregatorTests.
TIMED_RUNS = 30


def schema_errors(report: dict) -> list[str]:
    validator = jsonschema.Draft202012Validator(SCHEMA)
    return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(report)]


@pytest.mark.parametrize("path", sorted((ROOT / "tests" / "fixtures" / "reports").glob("ios_*.json")), ids=lambda p: p.name)
def test_committed_ios_report_is_valid(path: Path) -> None:
    report = json.loads(path.read_text())
    assert schema_errors(report) == []
    parsed = parse_report(report)
    assert parsed.client.platform == "ios"


def test_benchcore_fixture_came_from_the_swift_core() -> None:
    """The committed sample is BenchCore output, honestly marked as a Linux stand-in run."""
    report = json.loads(FIXTURE.read_text())
    assert report["client"]["app"] == "FreeNetBench"
    assert report["runtime"]["emulated"] is True
    assert report["device"]["os"] == "linux"
    assert report["status"] == "ok"
    assert len(report["timing"]["samples_ms"]) == TIMED_RUNS
    assert report["parity"]["reference_checked"] is True and report["parity"]["passed"] is True
    assert report["model"]["family"] == "tiny"
    assert "not a speed result" in report["notes"]["engine"]


# ---- live: the aggregator, a bundle, and swift test in the chroot ------------------------------


@pytest.fixture(scope="module")
def swift_chroot() -> Path:
    if not SETUP.is_file():
        pytest.fail(f"{SETUP} is missing")
    check = subprocess.run(["bash", str(SETUP), "--check"], capture_output=True, text=True,
                           env={**os.environ, "FREENET_TOOLS": str(TOOLS)})
    if check.returncode != 0:
        pytest.fail(f"Swift toolchain not installed: {check.stdout}{check.stderr}\n"
                    f"install it with: sudo bash scripts/setup_swift.sh")
    return CHROOT


def test_setup_script_rerun_is_fast_and_keeps_the_toolchain(swift_chroot: Path) -> None:
    """A second run of the installer takes the fast path and leaves a working swift behind."""
    start = time.monotonic()
    rerun = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "FREENET_TOOLS": str(TOOLS)})
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "already installed: Swift version 6." in rerun.stdout
    assert time.monotonic() - start < 30
    # No bind mount of the host's /dev: deleting the tools folder must not touch host devices.
    mounts = Path("/proc/mounts").read_text().split("\n")
    assert not [m for m in mounts if f" {swift_chroot}/dev " in m], "host /dev is bind-mounted into the chroot"


def write_tiny_bundle(root: Path) -> dict:
    """A bundle the runner can execute on Linux: logits = W @ mean_hw(x) + b, reference by numpy."""
    rng = np.random.default_rng(0)
    c, h, w, k = 3, 8, 8, 5
    weights = rng.standard_normal((k, c)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    x = rng.standard_normal((1, c, h, w)).astype(np.float32)
    y = (x.mean(axis=(2, 3)) @ weights.T + bias).astype(np.float32)
    bundle = root / BUNDLE_ID
    (bundle / "tiny").mkdir(parents=True)
    files = {
        "tiny/weights.bin": np.concatenate([weights.ravel(), bias]).astype("<f4").tobytes(),
        "tiny/ref_in.bin": x.astype("<f4").tobytes(),
        "tiny/ref_out.bin": y.astype("<f4").tobytes(),
        # 1.5x what the model computes: rel_diff 1/3, far beyond the fp32 CPU bound.
        "tiny/ref_out_drifted.bin": (y * np.float32(1.5)).astype("<f4").tobytes(),
    }
    for rel, data in files.items():
        (bundle / rel).write_bytes(data)
    sha = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}

    def artifact(art_id: str, file_sha: str, ref_out: str = "tiny/ref_out.bin") -> dict:
        return {
            "id": art_id, "model": "tiny_linear", "model_family": "tiny", "config_hash": "0" * 16,
            "format": "coreml", "target": "coreml-linux-reference", "precision": "fp32", "status": "ok",
            "file": "tiny/weights.bin", "sha256": file_sha, "size_bytes": len(files["tiny/weights.bin"]),
            "inputs": [{"name": "x", "shape": [1, c, h, w], "dtype": "float32", "layout": "NCHW"}],
            "outputs": [{"name": "logits", "shape": [1, k], "dtype": "float32", "layout": "NC"}],
            "reference": {"input_file": "tiny/ref_in.bin", "output_file": ref_out, "dtype": "float32",
                          "input_sha256": sha["tiny/ref_in.bin"], "output_sha256": sha[ref_out], "seed": 0},
            "tool_versions": {"numpy": np.__version__}, "macs": c * h * w + k * c, "params": k * c + k,
            "notes": ["test bundle for the BenchCore Linux stand-in engine; not a real Core ML model"],
        }

    manifest = {
        "schema_version": "1", "bundle_id": BUNDLE_ID, "created_at": "2026-11-25T00:00:00Z", "tool": "tests/test_ios_app.py",
        "artifacts": [
            artifact("tiny_linear-coreml-fp32", sha["tiny/weights.bin"]),
            # The manifest promises other bytes than the server sends: the app must refuse them.
            artifact("tiny_linear_tampered-coreml-fp32", "f" * 64),
            # Runs, but misses its reference output: parity_failed, samples kept.
            artifact("tiny_linear_drifted-coreml-fp32", sha["tiny/weights.bin"], "tiny/ref_out_drifted.bin"),
            # Not runnable by the iOS app: skipped, not reported.
            {**artifact("tiny_linear-tflite-fp32", sha["tiny/weights.bin"]), "format": "tflite", "target": "litert-cpu"},
        ],
    }
    (bundle / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def aggregator(tmp_path_factory):
    """`freenet serve` (as `python -m device_bench.cli serve`) with a bundle and one device token."""
    tmp = tmp_path_factory.mktemp("ios-aggregator")
    manifest = write_tiny_bundle(tmp / "bundles")
    # The export schema is the contract for manifests: the test bundle must satisfy it too.
    from export.manifest import Manifest
    Manifest.model_validate(manifest)
    db = f"sqlite:///{tmp / 'freenet.db'}"
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cli = [sys.executable, "-m", "device_bench.cli"]
    token = subprocess.run([*cli, "token", "create", "--device", "ios-benchcore-linux", "--db", db],
                           cwd=ROOT, env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    port = free_port()
    log = open(tmp / "server.log", "wb")
    proc = subprocess.Popen([*cli, "serve", "--db", db, "--host", "127.0.0.1", "--port", str(port),
                             "--bundles", str(tmp / "bundles"), "--log-level", "warning"],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"freenet serve exited rc={proc.returncode}:\n{(tmp / 'server.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("freenet serve did not become healthy within 60 s")
            time.sleep(0.2)
        yield {"url": url, "token": token, "log": tmp / "server.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def sync_package(chroot: Path) -> str:
    """Copy the package into the chroot, keeping its .build there so re-runs compile incrementally."""
    target = chroot / "opt" / "freenet" / "BenchCore"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("Sources", "Tests"):
        shutil.rmtree(target / name, ignore_errors=True)
        shutil.copytree(PACKAGE / name, target / name)
    shutil.copy2(PACKAGE / "Package.swift", target / "Package.swift")
    return "/opt/freenet/BenchCore"


@pytest.mark.slow
def test_swift_test_against_live_aggregator(swift_chroot: Path, aggregator: dict) -> None:
    inside = sync_package(swift_chroot)
    # Linux Foundation (swift-corelibs 6.0.3) crashes on a 401 whose WWW-Authenticate is a bare
    # "Bearer"; the Swift test runs its live wrong-token step only when the server's header is safe.
    probe = httpx.post(f"{aggregator['url']}/api/v1/reports", json={}, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert probe.status_code == 401
    challenge = probe.headers.get("www-authenticate", "")
    live_401 = "1" if challenge == "" or "=" in challenge else "0"
    out_rel = f"/tmp/freenet-ios-{uuid.uuid4().hex}"
    out = swift_chroot / out_rel.lstrip("/")
    env = ["PATH=/usr/local/bin:/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8",
           f"FREENET_SERVER_URL={aggregator['url']}", f"FREENET_TOKEN={aggregator['token']}",
           f"FREENET_BUNDLE={BUNDLE_ID}", f"FREENET_REPORT_OUT={out_rel}", f"FREENET_LIVE_401={live_401}"]
    try:
        proc = subprocess.run(["chroot", str(swift_chroot), "/usr/bin/env", "-i", *env,
                               "/bin/bash", "-c", f"cd {inside} && swift test 2>&1"],
                              capture_output=True, text=True, timeout=1500)
        log = proc.stdout + proc.stderr
        assert proc.returncode == 0, f"swift test failed (rc={proc.returncode}):\n{log[-6000:]}"
        # The live tests skip without the environment; here they must have run.
        assert "LiveAggregatorTests" in log and " skipped (" not in log, log[-4000:]
        assert "with 0 failures" in log, log[-4000:]

        reports = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
        queue_run_id = (out / "queue_test_run_id.txt").read_text().strip()
        rejected_run_id = (out / "queue_test_rejected_run_id.txt").read_text().strip()
        skipped = (out / "skipped.txt").read_text().split()
    finally:
        shutil.rmtree(out, ignore_errors=True)

    assert skipped == ["tiny_linear-tflite-fp32"]
    # Contract test: every report the Swift core uploaded satisfies the committed JSON Schema.
    for report in reports:
        assert schema_errors(report) == [], report["run_id"]
        parse_report(report)
    by_status = {r["status"]: r for r in reports}
    assert sorted(r["status"] for r in reports) == ["error", "ok", "parity_failed"]
    ok, err, drifted = by_status["ok"], by_status["error"], by_status["parity_failed"]
    assert ok["model"]["family"] == "tiny"
    assert ok["parity"]["passed"] is True and ok["parity"]["tolerance"] == parity_tolerance("fp32", "cpu")
    assert drifted["model"]["artifact_id"] == "tiny_linear_drifted-coreml-fp32"
    assert drifted["parity"]["passed"] is False and drifted["parity"]["rel_diff"] == pytest.approx(1 / 3, rel=1e-4)
    assert len(drifted["timing"]["samples_ms"]) == TIMED_RUNS
    assert ok["model"]["artifact_id"] == "tiny_linear-coreml-fp32"
    assert len(ok["timing"]["samples_ms"]) == TIMED_RUNS and all(s > 0 for s in ok["timing"]["samples_ms"])
    assert ok["timing"]["warmup_runs"] == 5 and ok["timing"]["load_ms"] > 0
    assert ok["parity"]["reference_checked"] is True and ok["parity"]["max_abs_diff"] < 1e-5
    assert ok["thermal"] == {"before": "unknown", "after": "unknown"}  # Linux has no thermal state
    assert ok["runtime"]["emulated"] is True and ok["client"]["platform"] == "ios"
    assert err["model"]["artifact_id"] == "tiny_linear_tampered-coreml-fp32"
    assert "sha256 mismatch" in err["error"] and err["timing"]["samples_ms"] == []

    # The server stored each of them (and the queue test's report) exactly once, through the
    # batch endpoint; the queue test's invalid report was answered 422 there and not stored.
    assert httpx.get(f"{aggregator['url']}/api/v1/reports/{rejected_run_id}", timeout=10).status_code == 404
    for run_id in [ok["run_id"], err["run_id"], drifted["run_id"], queue_run_id]:
        r = httpx.get(f"{aggregator['url']}/api/v1/reports/{run_id}", timeout=10)
        assert r.status_code == 200, (run_id, r.text[:500])
        assert r.json()["run_id"] == run_id
    listed = httpx.get(f"{aggregator['url']}/api/v1/reports", params={"platform": "ios", "limit": 100}, timeout=10)
    assert listed.status_code == 200
    listed_ids = [r["run_id"] for r in listed.json()["reports"]]
    assert {ok["run_id"], err["run_id"], drifted["run_id"], queue_run_id} <= set(listed_ids)
    assert len(listed_ids) == len(set(listed_ids))  # the re-sent queue report was not double counted

    if os.environ.get("FREENET_UPDATE_FIXTURES") == "1":
        FIXTURE.write_text(json.dumps(ok, indent=2, sort_keys=False) + "\n")


def test_dashboard_shows_the_committed_ios_report(aggregator: dict) -> None:
    report = json.loads(FIXTURE.read_text())
    headers = {"Authorization": f"Bearer {aggregator['token']}"}
    first = httpx.post(f"{aggregator['url']}/api/v1/reports", json=report, headers=headers, timeout=10)
    assert first.status_code in (200, 201), first.text[:2000]
    again = httpx.post(f"{aggregator['url']}/api/v1/reports", json=report, headers=headers, timeout=10)
    assert again.status_code == 200  # idempotent on run_id
    page = httpx.get(f"{aggregator['url']}/reports/{report['run_id']}", timeout=10)
    assert page.status_code == 200 and report["run_id"] in page.text
    index = httpx.get(f"{aggregator['url']}/", timeout=10)
    assert index.status_code == 200 and "tiny_linear" in index.text


def test_executorch_swiftpm_branch_follows_upstream_naming_and_the_pip_pin() -> None:
    """project.yml's ExecuTorch branch is `swiftpm-X.Y.Z` (release) or `swiftpm-X.Y.Z.YYYYMMDD`
    (nightly) and names the executorch version pyproject.toml exports with."""
    import re
    import tomllib

    # project.yml is read as text (no YAML library among the test dependencies).
    spec = (ROOT / "ios_app" / "project.yml").read_text()
    package = re.search(r"^  executorch:\n((?:    .*\n|\s*#.*\n)+)", spec, re.M)
    assert package, "project.yml has no `executorch` package"
    assert re.search(r"^    url: https://github.com/pytorch/executorch$", package[1], re.M)
    branch = re.search(r"^    branch: (\S+)$", package[1], re.M)[1]
    match = re.fullmatch(r"swiftpm-(\d+\.\d+\.\d+)(?:\.(\d{8}))?", branch)
    assert match, f"{branch!r} is not an upstream SwiftPM branch name (swiftpm-X.Y.Z or swiftpm-X.Y.Z.YYYYMMDD)"
    pins = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d.split("==")[1] for d in pins if d.startswith("executorch=="))
    nightly = re.fullmatch(r"(\d+\.\d+\.\d+)\.dev(\d{8})", pin)
    expected = f"swiftpm-{nightly[1]}.{nightly[2]}" if nightly else f"swiftpm-{pin}"
    assert branch == expected, f"pyproject pins executorch=={pin}: the SwiftPM branch must be {expected}"
    assert re.search(rf'^\s+FreeNetExecuTorchVersion: "{re.escape(pin)}"$', spec, re.M)
    readme = (ROOT / "ios_app" / "README.md").read_text()
    assert f"`{branch}`" in readme and "swiftpm-X.Y.Z.YYYYMMDD" in readme
