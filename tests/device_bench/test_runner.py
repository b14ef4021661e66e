"""The host runner and the main job against real runtimes: one worker process per artifact,
schema reports to a real server or the embedded store, the GPU path on SwiftShader marked
emulated, and `freenet compare` writing its Markdown/HTML/PNG report with the headline table."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import numpy as np
import pytest

import freenet  # noqa: F401
from device_bench.compare import PAPER_CLAIMS, ComparePlan, run_compare
from device_bench.roofline import Ceiling, achieved_gflops, detect, fraction_of_peak, measure_ceiling
from device_bench.runner import BenchPlan, http_sink, run_bench, store_sink
from device_bench.schema import Report
from device_bench.store import Store
from export.api import ExportPlan, export_bundle


@pytest.fixture
def bundle(host_bundle) -> Path:
    """The run's shared host bundle (tests/device_bench/conftest.py); tests never modify it."""
    return host_bundle


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
    ids = {r["run_id"] for r in listed["reports"]}
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


def test_roofline_ceiling_is_measured_once_per_run():
    """The ceiling is a measured one-thread GEMM of the installed BLAS, not the nominal clock."""
    import torch

    threads = torch.get_num_threads()
    c = measure_ceiling(1)
    assert measure_ceiling(1) is c  # cached: one measurement per run
    assert torch.get_num_threads() == threads  # the process's thread setting is left as it was
    assert c.threads == 1 and "torch.mm" in c.method and "best of" in c.method
    assert 1 < c.gflops < 2000  # a CPU core: more than 1 GFLOP/s, less than a GPU
    assert f"measured ceiling {c.gflops:.0f} GFLOP/s" in c.describe()
    derived = c.derived.peak_gflops(1)
    assert derived is None or f"nominal-clock figure would be {derived:.0f}" in c.describe()
    fixed = Ceiling(gflops=50.0, threads=1, method="m", derived=c.derived)
    assert fraction_of_peak(1_000_000_000, 20.0, fixed) == pytest.approx(2.0)  # 100 / 50: shown with its reason
    with pytest.raises(ValueError, match="threads"):
        measure_ceiling(0)


@pytest.mark.slow
def test_compare_main_job_writes_the_report(tmp_path):
    plan = ComparePlan(models=["freenet_s2", "starnet_s4", "mobilenet_v2"], formats=["onnx", "tflite"], precisions=["fp32"],
                       runtimes=["onnxruntime", "litert"], work_dir=tmp_path, rounds=2, runs_per_round=3, warmup=1, input_size=64,
                       processes=2, profile_anomalies=False)
    out = run_compare(plan)
    md = (out / "report.md").read_text()
    head = md.split("## Every model")[0]
    assert "FreeNet-S2 / StarNet-S4" in head and "onnxruntime" in head and "litert" in head
    assert "MAC ratio" in head
    # one headline row per measured runtime, with a ratio, its interval, and the manifest's MAC ratio
    manifest = json.loads((plan.bundle / "manifest.json").read_text())
    macs = {a["model"]: a["macs"] for a in manifest["artifacts"] if a["macs"]}
    split_row = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header = split_row(next(line for line in head.splitlines() if line.startswith("| runtime")))
    rows = [dict(zip(header, split_row(line), strict=True)) for line in head.splitlines() if line.startswith(("| onnxruntime", "| litert"))]
    assert sorted(r["runtime"].split()[0] for r in rows) == ["litert", "onnxruntime"]
    print("\n".join(line for line in head.splitlines() if line.startswith(("| runtime", "| onnxruntime", "| litert"))))
    claims = " / ".join(f"{v} ({k})" for k, v in PAPER_CLAIMS.items())
    interval = r"\[\d+\.\d\d–\d+\.\d\d\]"
    for r in rows:  # columns by their header: a new column must not shift what each check reads
        assert r["reading"] == "ours (dense mixer)" and r["paper claim"] == claims
        assert re.fullmatch(r"\d+\.\d\d× " + interval, r["FreeNet-S2 / StarNet-S4 [95% next run]"])
        assert re.fullmatch(interval, r["95% CI"])
        assert r["verdict"] in ("faster", "slower", "no difference") or r["verdict"].startswith("unstable: runs disagree by ")
        assert float(r["MAC ratio"].split()[0]) == pytest.approx(macs["freenet_s2"] / macs["starnet_s4"], rel=1e-3)
    assert "measured ceiling" in md and "nominal-clock figure" in md
    for line in md.splitlines():  # every model row: a fraction of the ceiling above 1 is never shown bare
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| [") and cells[7] != "—" and float(cells[7]) > 1:
            assert cells[7].endswith("†")
    assert "FreeNet" in md and "StarNet" in md and "MobileNet" in md  # family from the reports
    assert (out / "latency_vs_macs.png").stat().st_size > 10_000
    assert (out / "freenet_s2_vs_starnet_s4.png").stat().st_size > 5_000
    html = (out / "report.html").read_text()
    assert "<table>" in html and "latency_vs_macs.png" in html
    assert "over the runs (2 fresh worker process(es) per model, one report each) with two 95% intervals from one hierarchical bootstrap" in head
    assert "2 fresh processes of 2 interleaved rounds x 3" in head  # the protocol line states the split
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

    code = ("import pathlib, json; from device_bench.runtimes import get_runtime;"
            "from executorch.extension.pybindings import portable_lib as p;"
            "m = json.loads(pathlib.Path(r'%s').read_text());"
            "a = next(a for a in m['artifacts'] if a['target'] == 'executorch-xnnpack');"
            "get_runtime('executorch').open({'path': str(pathlib.Path(r'%s') / a['file']), 'target': a['target'], 'threads': 1});"
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


def test_eager_pytorch_refuses_a_model_it_cannot_rebuild(bundle, tmp_path):
    import shutil

    out = tmp_path / "b"
    shutil.copytree(bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    tiny = [a for a in manifest["artifacts"] if a["model"] == "freenet_tiny"]

    def bench_tiny():
        (out / "manifest.json").write_text(json.dumps(manifest))
        (r,) = run_bench(BenchPlan(out, runtimes=["pytorch"], models=["freenet_tiny"], warmup=0, rounds=1, runs_per_round=1), lambda r: None)
        return r

    for a in tiny:
        a["config_hash"] = "0123456789abcdef"  # exported by other code than this
    r = bench_tiny()
    assert r.status == "error" and "config hash" in r.error and not r.timing.samples_ms
    for a in tiny:
        a["weights"] = "checkpoint:" + "ab" * 32
    r = bench_tiny()
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


def test_runtime_objects_are_the_only_runtime_table():
    """Every host runtime is one object; the runner and the worker hold no runtime names."""
    from device_bench import runner
    from device_bench.runtimes import RUNTIMES, HostRuntime, default_runtimes
    from export.backends import FORMATS

    assert list(RUNTIMES) == ["onnxruntime", "litert", "executorch", "pytorch", "litert-gpu-emulated", "onnxruntime-cuda"]
    assert not RUNTIMES["onnxruntime-cuda"].default and RUNTIMES["onnxruntime-cuda"].report_name == "onnxruntime"
    for name, rt in RUNTIMES.items():
        assert isinstance(rt, HostRuntime) and rt.name == name and rt.accelerator
        if rt.format is not None:
            assert set(rt.accepted_targets()) <= set(FORMATS[rt.format].target_names) and rt.accepted_targets()
    assert runner.DEFAULT_RUNTIMES == default_runtimes() == ("onnxruntime", "litert", "executorch", "pytorch")
    assert RUNTIMES["litert-gpu-emulated"].emulated and RUNTIMES["litert-gpu-emulated"].report_name == "litert"
    assert RUNTIMES["executorch"].accepted_targets() == ("executorch-xnnpack",)  # the only .pte that runs here
    root = Path(__file__).parents[2] / "device_bench"
    for module in ("runner.py", "host_worker.py", "anomaly.py"):  # anomaly: profilers are the objects' profile_ops
        text = (root / module).read_text()
        assert not [n for n in RUNTIMES if f'"{n}"' in text], module


def test_a_runtime_that_is_not_a_worker_process_plugs_in(tmp_path):
    """A browser-style runtime: its own `start()` object answers the worker commands; the runner
    measures it and builds the report from the object's facts, with no runner change."""
    from device_bench.runner import Job, measure_jobs
    from device_bench.runtimes import RUNTIMES, HostRuntime, register
    from export.manifest import Artifact, Reference, TensorSpec

    class FakePage:
        def __init__(self, job):
            self.job, self.error, self.samples, self.load = job, None, [], {}

        def ask(self, cmd):
            return {"load": {"load_ms": 5.0, "first_inference_ms": 2.0, "runtime_version": "9.9", "placement": {"gpu": 3, "cpu": 0}},
                    "warmup": {"ok": True}, "run": {"samples_ms": [1.0] * cmd.get("n", 0)},
                    "parity": {"max_abs_diff": 1e-6, "reference_max_abs": 1.0}}[cmd["cmd"]]

        def close(self):
            pass

    class BrowserRuntime(HostRuntime):
        name, report_name, package, accelerator, format, delegate = "test-browser", "onnxruntime-web", "none", "gpu", "onnx", "webgpu"
        default = False

        def start(self, job, spec, log_file=None):
            return FakePage(job)

    register(BrowserRuntime())
    try:
        art = Artifact(id="m.onnx.onnxruntime-cpu.fp32", model="freenet_tiny", model_family="freenet", config_hash="x", format="onnx",
                       target="onnxruntime-cpu", precision="fp32", status="ok", file="m.onnx", sha256="a" * 64,
                       inputs=[TensorSpec(name="input", shape=[1, 3, 64, 64])], outputs=[TensorSpec(name="output", shape=[1, 1000], layout="NC")],
                       reference=Reference(input_file="i", output_file="o", input_sha256="", output_sha256="", seed=0), macs=1, params=1)
        plan = BenchPlan(tmp_path, runtimes=["test-browser"], warmup=1, rounds=2, runs_per_round=3)
        (r,) = measure_jobs([Job("test-browser", art, tmp_path / "m.onnx", {}, tmp_path)], plan, lambda r: None)
        assert r.status == "ok" and r.runtime.name == "onnxruntime-web" and r.runtime.accelerator == "gpu"
        assert r.runtime.delegate == "webgpu" and r.placement == {"gpu": 3, "cpu": 0} and len(r.timing.samples_ms) == 6
    finally:
        RUNTIMES.pop("test-browser")
