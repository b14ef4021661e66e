"""Importers: TFLite benchmark_model logs and ExecuTorch benchmark_results.json -> reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from device_bench.importers import (
    UnrecognisedOutput,
    parse_benchmark_model_log,
    report_from_benchmark_model,
    reports_from_executorch,
)
from device_bench.store import Store

FIX = Path(__file__).resolve().parents[1] / "fixtures"
CONTEXT = json.loads((FIX / "import_context.json").read_text())
ET_CONTEXT = {
    "runtime": {"version": "1.5.1"},
    "models": {name: {"model": {"sha256": "ab" * 32, "input_shape": [1, 3, 224, 224]}} for name in ("mv2", "freenet_s2")},
}


def test_benchmark_model_log_numbers():
    p = parse_benchmark_model_log((FIX / "tflite/benchmark_model_xnnpack_mobilenetv2.log").read_text())
    assert (p["init_us"], p["first_us"], p["avg_us"]) == (61804.0, 14861.0, 7086.4)
    assert p["warmup"]["count"] == 68 and p["timed"]["count"] == 141 and p["timed"]["median"] == 7004.0
    assert p["peak_mb"] == 52.7031 and (p["delegated"], p["nodes"]) == (66, 66)


def test_benchmark_model_report_is_aggregate_only():
    r = report_from_benchmark_model((FIX / "tflite/benchmark_model_xnnpack_mobilenetv2.log").read_text(), CONTEXT)
    assert r.status == "ok" and r.timing.samples_kind == "aggregate" and r.timing.samples_ms == []
    assert r.timing.aggregate.mean_ms == pytest.approx(7.0864) and r.timing.aggregate.count == 141
    assert r.timing.load_ms == pytest.approx(61.804) and r.timing.first_inference_ms == pytest.approx(14.861)
    assert r.runtime.accelerator == "xnnpack" and r.placement == {"xnnpack": 66, "cpu": 0}
    assert r.memory.peak_bytes == int(52.7031 * 2**20)
    # Same input -> same run_id: importing twice stores once.
    again = report_from_benchmark_model((FIX / "tflite/benchmark_model_xnnpack_mobilenetv2.log").read_text(), CONTEXT)
    assert again.run_id == r.run_id


def test_failed_benchmark_model_run_is_an_error_report():
    r = report_from_benchmark_model((FIX / "tflite/benchmark_model_gpu_failed_freenet_s2.log").read_text(), CONTEXT)
    assert r.status == "error" and "Tensor dimensions must be less than 5" in r.error
    assert r.runtime.accelerator == "gpu" and r.placement == {"gpu": 16, "cpu": 620}


def test_executorch_results():
    (r,) = reports_from_executorch((FIX / "executorch/benchmark_results.json").read_bytes(), ET_CONTEXT)
    assert r.status == "ok" and r.timing.samples_kind == "aggregate"
    assert r.timing.aggregate.mean_ms == pytest.approx(4.8127, rel=1e-4) and r.timing.aggregate.count is None
    assert r.timing.aggregate.trimmed_mean_ms == pytest.approx(4.6211, rel=1e-4)
    assert (r.device.manufacturer, r.device.model, r.device.os_version) == ("samsung", "SM-S921B", "14")
    assert r.device.memory_bytes is None  # minibench writes totalMem 0: unknown, not zero
    assert (r.model.name, r.model.artifact_id, r.runtime.accelerator) == ("mv2", "mv2_xnnpack_fp32", "xnnpack")


def test_executorch_load_failure_is_an_error_report():
    (r,) = reports_from_executorch((FIX / "executorch/benchmark_results_load_failed.json").read_bytes(), ET_CONTEXT)
    assert r.status == "error" and "load_status=20" in r.error and r.runtime.accelerator == "vulkan"


@pytest.mark.parametrize("data", [b"{}", b'[{"x": 1}]', b'"text"'])
def test_executorch_rejects_other_json(data):
    with pytest.raises(UnrecognisedOutput, match="benchmark_results.json"):
        reports_from_executorch(data, ET_CONTEXT)


def test_cli_import_into_db_is_idempotent(tmp_path):
    db = f"sqlite:///{tmp_path / 'i.db'}"
    ctx = tmp_path / "ctx.json"
    ctx.write_text(json.dumps(CONTEXT))
    cmd = [sys.executable, "-m", "device_bench.cli", "import", "tflite",
           str(FIX / "tflite/benchmark_model_xnnpack_mobilenetv2.log"), "--context", str(ctx), "--db", db]
    root = Path(__file__).resolve().parents[2]
    out1 = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=True).stdout
    out2 = subprocess.run(cmd, capture_output=True, text=True, cwd=root, check=True).stdout
    assert "stored" in out1 and "already stored" in out2
    with Store(db) as s:
        assert s.count() == 1
    bad = subprocess.run(cmd[:-4] + ["--db", db], capture_output=True, text=True, cwd=root)
    assert bad.returncode != 0 and "model.sha256" in bad.stderr
