"""`freenet compare` re-run: stored measurements of identical artifacts are reused
(device_bench/reuse.py) — same artifact sha256, runtime version, device and protocol — and
`remeasure` (--remeasure) measures everything again."""

from __future__ import annotations

import json

import pytest

from device_bench.compare import ComparePlan, run_compare
from device_bench.schema import Report
from device_bench.store import Store


def _plan(tmp_path, **kw) -> ComparePlan:
    base = dict(models=["freenet_tiny", "starnet_s050"], formats=["onnx"], precisions=["fp32"], runtimes=["onnxruntime", "pytorch"],
                work_dir=tmp_path, input_size=64, rounds=1, runs_per_round=3, warmup=1, processes=2, profile_anomalies=False,
                export_jobs=0)
    return ComparePlan(**{**base, **kw})


def _run(plan: ComparePlan) -> tuple[list[Report], set[str]]:
    phases: set[str] = set()
    out = run_compare(plan, lambda phase, what, done, total: phases.add(phase))
    return [Report.model_validate(r) for r in json.loads((out / "reports.json").read_text())], phases


def _ids(reports, runtime=None) -> set[str]:
    return {r.run_id for r in reports if runtime is None or r.runtime.name == runtime}


@pytest.mark.slow
def test_a_rerun_reuses_identical_measurements_and_remeasure_measures_again(tmp_path, monkeypatch):
    first, phases = _run(_plan(tmp_path))
    assert "measure" in phases and "reuse" not in phases
    assert len(first) == 2 * 2 * 2  # 2 models x 2 runtimes x 2 processes
    stored = Store(_plan(tmp_path).db).count()

    again, phases = _run(_plan(tmp_path))  # everything up to date: nothing measured, the same reports
    assert "reuse" in phases and "measure" not in phases
    assert _ids(again) == _ids(first) and Store(_plan(tmp_path).db).count() == stored
    assert all(r.notes["artifact_sha256"] for r in again)

    # --remeasure and a changed protocol act before any runtime is looked at (device_bench/reuse.py:
    # `remeasure` skips the lookup, every protocol field is compared the same way for every runtime),
    # so ONNX Runtime alone shows them: an eager PyTorch process costs ~4 s of imports, one of ONNX
    # Runtime ~0.5 s. Eager PyTorch's own identity (the bundle artifact it rebuilt) is checked by the
    # reuse above and below.
    fresh, phases = _run(_plan(tmp_path, remeasure=True, runtimes=["onnxruntime"]))
    assert "measure" in phases and "reuse" not in phases and _ids(fresh) and not _ids(fresh) & _ids(first)

    other = _plan(tmp_path, runs_per_round=4, runtimes=["onnxruntime"])  # another protocol: measured again
    changed, phases = _run(other)
    assert "reuse" not in phases and _ids(changed) and not _ids(changed) & (_ids(first) | _ids(fresh))

    # a new runtime version: that runtime is measured again, the other one reused
    from device_bench.runtimes import get_runtime

    monkeypatch.setattr(type(get_runtime("onnxruntime")), "version", lambda self: "0.0-other")
    mixed, phases = _run(_plan(tmp_path))
    assert {"measure", "reuse"} <= phases
    assert _ids(mixed, "pytorch") == _ids(first, "pytorch")
    assert _ids(mixed, "onnxruntime") and not _ids(mixed, "onnxruntime") & (_ids(first) | _ids(fresh) | _ids(changed))
