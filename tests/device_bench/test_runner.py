"""The host runner and the main job against real runtimes: one worker process per artifact,
schema reports to a real server or the embedded store, the GPU path on SwiftShader marked
emulated, and `freenet compare` writing its Markdown/HTML/PNG report with the headline table."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest

import freenet  # noqa: F401
from device_bench.compare import ComparePlan, run_compare
from device_bench.roofline import achieved_gflops, detect, fraction_of_peak
from device_bench.runner import BenchPlan, http_sink, run_bench, store_sink
from device_bench.schema import Report
from device_bench.store import Store
from export.api import ExportPlan, export_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle")
    m = export_bundle(ExportPlan(models=["freenet_tiny", "starnet_s050"], formats=["onnx", "tflite", "executorch"], precisions=["fp32"],
                                 targets=["onnxruntime-cpu", "litert-gpu", "executorch-xnnpack"], out_dir=out, on_existing="overwrite", input_size=64))
    assert all(a.status == "ok" for a in m.artifacts), [a.error for a in m.artifacts]
    return out


def test_bench_embedded_store(bundle, tmp_path):
    db = f"sqlite:///{tmp_path / 'r.db'}"
    plan = BenchPlan(bundle, runtimes=["onnxruntime", "litert", "executorch", "pytorch", "litert-gpu-emulated"], warmup=1, rounds=2, runs_per_round=3)
    seen = []
    reports = run_bench(plan, store_sink(db), lambda *a: seen.append(a))
    assert len(reports) == 10  # 2 models x 5 runtimes
    assert seen and seen[-1][0] == "done"
    for r in reports:
        assert r.status == "ok", r.error
        assert len(r.timing.samples_ms) == 6 and r.timing.load_ms > 0 and r.timing.first_inference_ms > 0
        assert r.parity.reference_checked and r.parity.max_abs_diff < 1e-3 * 50
        assert r.runtime.threads == 1 and r.client.platform == "host"
        assert r.runtime.emulated == (r.runtime.accelerator == "gpu")
        assert len(r.model.sha256) == 64 and r.model.macs > 0
    gpu = [r for r in reports if r.runtime.emulated]
    assert gpu and all(r.placement and r.placement.get("cpu") == 0 for r in gpu)
    assert Store(db).count() == 10


def test_bench_posts_to_a_real_server(bundle, tmp_path, server_factory):
    db = f"sqlite:///{tmp_path / 's.db'}"
    _, token = Store(db).create_token("host-ci")
    srv = server_factory(db)
    reports = run_bench(BenchPlan(bundle, runtimes=["onnxruntime"], warmup=1, rounds=1, runs_per_round=2), http_sink(srv.base, token))
    listed = httpx.get(f"{srv.base}/api/v1/reports", params={"runtime": "onnxruntime"}).json()
    ids = {r["run_id"] for r in (listed["reports"] if isinstance(listed, dict) else listed)}
    assert {str(r.run_id) for r in reports} <= ids
    with pytest.raises(RuntimeError, match="401"):
        run_bench(BenchPlan(bundle, runtimes=["onnxruntime"], warmup=0, rounds=1, runs_per_round=1), http_sink(srv.base, "wrong-token"))


def test_worker_crash_becomes_an_error_report(bundle, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    manifest = json.loads((bundle / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        if a["format"] == "onnx":
            (bad / a["file"]).parent.mkdir(parents=True, exist_ok=True)
            (bad / a["file"]).write_bytes(b"not an onnx file")
    for sub in ("reference",):
        (bad / sub).symlink_to(bundle / sub)
    (bad / "manifest.json").write_text(json.dumps(manifest))
    reports = run_bench(BenchPlan(bad, runtimes=["onnxruntime"], warmup=0, rounds=1, runs_per_round=1), lambda r: None)
    assert reports and all(r.status == "error" and r.error and not r.timing.samples_ms for r in reports)
    Report.model_validate_json(reports[0].model_dump_json())


@pytest.mark.parametrize("kw, err", [(dict(runtimes=["tensorrt"]), "valid"), (dict(rounds=0), ">= 1"), (dict(models=["nope"]), "not in the bundle")])
def test_bench_bad_input(bundle, kw, err):
    with pytest.raises(ValueError, match=err):
        run_bench(BenchPlan(bundle, **kw), lambda r: None)


def test_bench_needs_a_bundle(tmp_path):
    with pytest.raises(FileNotFoundError, match="freenet export"):
        run_bench(BenchPlan(tmp_path), lambda r: None)


def test_roofline_from_cpu_flags():
    zen4 = detect({"flags": "fma avx avx2 avx512f", "vendor_id": "AuthenticAMD", "cpu family": "25", "cpu MHz": "2600.0", "model name": "EPYC"})
    intel = detect({"flags": "fma avx avx2 avx512f", "vendor_id": "GenuineIntel", "cpu family": "6", "cpu MHz": "2000.0"})
    old = detect({"flags": "sse2", "vendor_id": "GenuineIntel", "cpu family": "6", "cpu MHz": "1000.0"})
    assert zen4.flops_per_cycle == 32 and intel.flops_per_cycle == 64 and old.flops_per_cycle == 4
    assert zen4.peak_gflops(1) == pytest.approx(83.2)
    assert achieved_gflops(1_000_000_000, 20.0) == pytest.approx(100.0)
    assert fraction_of_peak(None, 20.0, zen4) is None and achieved_gflops(10, None) is None
    assert detect({"flags": "avx2 fma"}).peak_gflops() is None  # no clock: unknown, not 0


@pytest.mark.slow
def test_compare_main_job_writes_the_report(tmp_path):
    plan = ComparePlan(models=["freenet_s2", "starnet_s4", "mobilenet_v2"], formats=["onnx", "tflite"], precisions=["fp32"],
                       runtimes=["onnxruntime", "litert"], work_dir=tmp_path, rounds=2, runs_per_round=3, warmup=1, input_size=64,
                       processes=2, profile_anomalies=False)
    out = run_compare(plan)
    md = (out / "report.md").read_text()
    head = md.split("## Every model")[0]
    assert "FreeNet-S2 / StarNet-S4" in head and "onnxruntime" in head and "litert" in head
    assert "0.71 (desktop GPU)" in head and "MAC ratio" in head
    assert (out / "latency_vs_macs.png").stat().st_size > 10_000
    assert (out / "freenet_s2_vs_starnet_s4.png").stat().st_size > 5_000
    html = (out / "report.html").read_text()
    assert "<table>" in html and "latency_vs_macs.png" in html
    assert "hierarchical bootstrap interval over 2 fresh processes" in head
    assert Store(plan.db).count() == 12  # 3 models x 2 runtimes x 2 processes, one report per process
    # a re-run reuses the exported artifacts (same sha256, no re-export)
    before = json.loads((plan.bundle / "manifest.json").read_text())
    run_compare(plan)
    after = json.loads((plan.bundle / "manifest.json").read_text())
    assert [a["sha256"] for a in before["artifacts"]] == [a["sha256"] for a in after["artifacts"]]
    assert [a["export_seconds"] for a in before["artifacts"]] == [a["export_seconds"] for a in after["artifacts"]]


def test_executorch_worker_uses_the_requested_threads(bundle):
    """ExecuTorch's XNNPACK threadpool defaults to every core; the worker must pin it like the others."""
    import subprocess
    import sys

    code = ("import device_bench.host_worker as w, pathlib, json;"
            "from executorch.extension.pybindings import portable_lib as p;"
            "m = json.loads(pathlib.Path(r'%s').read_text());"
            "a = next(a for a in m['artifacts'] if a['target'] == 'executorch-xnnpack');"
            "w._executorch(pathlib.Path(r'%s') / a['file'], 1, {});"
            "print(p._threadpool_get_thread_count())") % (bundle / "manifest.json", bundle)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "1"


def test_eager_pytorch_times_the_bundles_model_not_the_default(tmp_path):
    """A bundle exported with constructor options (--set equimo=true) is timed as THAT model:
    eager PyTorch used to rebuild the default model from the name alone and report it "ok" with
    a parity difference of several units."""
    out = tmp_path / "equimo"
    m = export_bundle(ExportPlan(models=["freenet_tiny"], formats=["onnx"], precisions=["fp32"], targets=["onnxruntime-cpu"],
                                 out_dir=out, input_size=64, model_kwargs={"equimo": True}))
    assert m.artifacts[0].status == "ok" and m.artifacts[0].model_options == {"equimo": True}
    (r,) = run_bench(BenchPlan(out, runtimes=["pytorch"], warmup=0, rounds=1, runs_per_round=1), lambda r: None)
    assert r.status == "ok", r.error
    assert r.parity.passed is True and r.parity.rel_diff < 1e-4 and r.parity.tolerance == 1e-3
    assert r.model.family == "freenet"


def test_eager_pytorch_refuses_a_model_it_cannot_rebuild(tmp_path):
    out = tmp_path / "b"
    export_bundle(ExportPlan(models=["freenet_tiny"], formats=["onnx"], precisions=["fp32"], targets=["onnxruntime-cpu"], out_dir=out, input_size=64))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["artifacts"][0]["config_hash"] = "0123456789abcdef"  # exported by other code than this
    (out / "manifest.json").write_text(json.dumps(manifest))
    (r,) = run_bench(BenchPlan(out, runtimes=["pytorch"], warmup=0, rounds=1, runs_per_round=1), lambda r: None)
    assert r.status == "error" and "config hash" in r.error and not r.timing.samples_ms
    manifest["artifacts"][0]["weights"] = "checkpoint:" + "ab" * 32
    (out / "manifest.json").write_text(json.dumps(manifest))
    (r,) = run_bench(BenchPlan(out, runtimes=["pytorch"], warmup=0, rounds=1, runs_per_round=1), lambda r: None)
    assert r.status == "error" and "--checkpoint" in r.error


def test_output_off_the_reference_is_parity_failed_on_every_runtime(bundle, tmp_path):
    """A runtime whose output misses the bundle's reference beyond the tolerance is never "ok":
    its report says parity_failed (samples kept, never a speed result)."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(bundle, bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    for a in manifest["artifacts"]:
        ref = bad / a["reference"]["output_file"]
        ref.write_bytes((np.fromfile(ref, dtype="<f4") * 1.05).astype("<f4").tobytes())  # 5% off: far above 1e-3
    reports = run_bench(BenchPlan(bad, runtimes=["onnxruntime", "litert", "executorch", "pytorch"], models=["freenet_tiny"],
                                  warmup=0, rounds=1, runs_per_round=2), lambda r: None)
    assert len(reports) == 4
    for r in reports:
        assert r.status == "parity_failed", (r.runtime.name, r.status, r.parity)
        assert r.parity.passed is False and r.parity.rel_diff > r.parity.tolerance and len(r.timing.samples_ms) == 2
        assert "tolerance" in r.error
    db = f"sqlite:///{tmp_path / 'p.db'}"
    for r in reports:
        store_sink(db)(r)
    assert Store(db).count() == 4
