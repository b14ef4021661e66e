"""Independent repetitions in the host runner: fresh worker processes per artifact, pinned, one
report per process that says which process it came from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import freenet  # noqa: F401
from device_bench.runner import BenchPlan, pin_cpus, run_bench
from device_bench.stats import compare_runs, stability


@pytest.fixture
def onnx_bundle(host_bundle) -> Path:
    """The run's shared host bundle: its ONNX Runtime CPU (and, in the first test, LiteRT) artifacts
    of FreeNet-tiny and StarNet-S050 (one per model, as each runtime selects them) are what these
    tests measure."""
    return host_bundle


def test_each_artifact_is_measured_in_several_fresh_pinned_processes(onnx_bundle):
    # two file runtimes (a LiteRT worker starts in ~0.5 s, an eager PyTorch one in ~4 s of imports:
    # eager's own processes are measured in test_reuse.py and test_runner.py)
    plan = BenchPlan(onnx_bundle, runtimes=["onnxruntime", "litert"], warmup=1, rounds=2, runs_per_round=3, processes=3)
    reports = run_bench(plan, lambda r: None)
    assert len(reports) == 2 * 2 * 3  # models x runtimes x processes
    assert len({r.notes["session"] for r in reports}) == 1
    # batch-major: process p of every runtime before process p + 1 of any (the intervals must see
    # the machine's drift over the whole invocation), the runtimes' order rotating per batch
    assert [r.notes["process"] for r in reports] == ["0"] * 4 + ["1"] * 4 + ["2"] * 4
    firsts = [next(r.runtime.name for r in reports if r.notes["process"] == p) for p in "012"]
    assert firsts == ["onnxruntime", "litert", "onnxruntime"]
    for rt in ("onnxruntime", "litert"):
        for model in ("freenet_tiny", "starnet_s050"):
            mine = [r for r in reports if r.runtime.name == rt and r.model.name == model]
            assert sorted(r.notes["process"] for r in mine) == ["0", "1", "2"]
            assert all(r.status == "ok" and len(r.timing.samples_ms) == 6 and r.notes["processes"] == "3" for r in mine)
    want = pin_cpus(1)
    if want is None:
        assert all("cpus" not in r.notes for r in reports)
    else:
        assert all(r.notes["cpus"] == ",".join(map(str, want)) for r in reports)
        assert want[0] == max(os.sched_getaffinity(0))
    # the reports pool into runs for the hierarchical comparison and the stability verdict
    runs = {m: [r.timing.samples_ms for r in sorted((r for r in reports if r.runtime.name == "onnxruntime" and r.model.name == m),
                                                    key=lambda r: int(r.notes["process"]))] for m in ("freenet_tiny", "starnet_s050")}
    c = compare_runs(runs["freenet_tiny"], runs["starnet_s050"], paired=True)
    assert c.low <= c.ratio <= c.high and stability(runs["freenet_tiny"], runs["starnet_s050"]).runs == 3


def test_headline_pools_processes_into_runs(onnx_bundle, tmp_path, monkeypatch):
    """One report per process: the summary pools a model's processes into ONE row of its table
    (all samples), and the headline compares the runs themselves (paired by process index)."""
    from device_bench import compare as cmp
    from device_bench.store import Store
    from device_bench.summary import summarize_run
    from export.manifest import Manifest

    db = f"sqlite:///{tmp_path / 'p.db'}"
    store = Store(db)
    reports = run_bench(BenchPlan(onnx_bundle, runtimes=["onnxruntime"], warmup=1, rounds=1, runs_per_round=4, processes=3),
                        store.add_report)
    assert len(reports) == 6
    (g,) = summarize_run(store, [r.run_id for r in reports])
    assert sorted(r.model for r in g.rows) == ["freenet_tiny", "starnet_s050"]
    for row in g.rows:  # 3 processes x 4 samples in one row, not three rows
        assert row.runs == 3 and row.stats.n == 12 and len(row.samples) == 12
    monkeypatch.setattr(cmp, "READINGS", {"freenet_tiny": "tiny"})
    monkeypatch.setattr(cmp, "PAIR", ("freenet_tiny", "starnet_s050"))
    report = cmp.build_report([g], reports, Manifest.load(onnx_bundle / "manifest.json"), cmp.ComparePlan(work_dir=tmp_path), None)
    (h,) = report.headline
    c = h.comparison
    assert h.runs == (3, 3) and h.paired and c.n_a == c.n_b == 12 and c.low <= c.ratio <= c.high
    assert len(h.stability) == 1 and h.stability[0].runs == 3  # paired: judged on per-process ratios
    assert h.verdict == c.verdict or h.verdict.startswith("unstable")


def test_one_process_keeps_the_old_reports(onnx_bundle):
    reports = run_bench(BenchPlan(onnx_bundle, runtimes=["onnxruntime"], warmup=0, rounds=1, runs_per_round=2, pin=False), lambda r: None)
    assert len(reports) == 2 and all("process" not in r.notes and "cpus" not in r.notes for r in reports)


def test_processes_must_be_positive(onnx_bundle):
    with pytest.raises(ValueError, match="processes"):
        run_bench(BenchPlan(onnx_bundle, processes=0), lambda r: None)
