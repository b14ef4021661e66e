"""Runtime anomalies: efficiency against the model's best runtime, and the op named by real per-op
profiles (ONNX Runtime's profiler on a hand-built graph; LiteRT's one-op profile and ONNX Runtime
on a small StarNet that has 7x7 depthwise convolutions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from device_bench.anomaly import (
    ANOMALY_THRESHOLD, Anomaly, Blame, Row, anomalies, blame, bundle_locator, efficiency, onnx_conv_labels, profiling_runtime,
)
from device_bench.runtimes import RUNTIMES, get_runtime


def test_efficiency_is_gflops():
    assert efficiency(1_000_000_000, 10.0) == pytest.approx(200.0)


def test_anomaly_flags_only_the_runtime_far_below_the_models_best():
    macs = 2_000_000_000
    rows = [Row("starnet_s4", "onnxruntime", macs, 20.0), Row("starnet_s4", "litert", macs, 66.0),
            Row("starnet_s4", "pytorch", macs, 36.0), Row("freenet_s2", "litert", macs // 2, 10.0), Row("freenet_s2", "onnxruntime", macs // 2, 14.0)]
    seen = []

    def locate(model, rt, best):
        seen.append((model, rt, best))
        return Blame("depthwise Conv 7x7", 2.5, 0.1, "test")

    out = anomalies(rows, locate=locate)
    assert [(a.model, a.runtime, a.best_runtime) for a in out] == [("starnet_s4", "litert", "onnxruntime")]
    a = out[0]
    assert a.relative == pytest.approx(20 / 66) and a.relative < ANOMALY_THRESHOLD and a.op == "depthwise Conv 7x7"
    assert seen == [("starnet_s4", "litert", "onnxruntime")]  # profiles only what is flagged
    assert "op: depthwise Conv 7x7 takes 2.50 ms vs 0.10 ms there (test)" in a.describe()
    # eager PyTorch at 0.56x is slower, not anomalous; a stricter threshold flags it too
    assert {x.runtime for x in anomalies(rows, threshold=0.6)} == {"litert", "pytorch"}
    assert anomalies(rows)[0].as_dict()["model"] == "starnet_s4"
    with pytest.raises(ValueError):
        anomalies(rows, threshold=1.5)


def test_blame_takes_the_largest_excess_and_refines_coarse_labels():
    affected = {"Conv": 70.0, "Conv 1x1": 20.0, "Add": 1.0}
    best = {"depthwise Conv 7x7": 5.0, "Conv 1x1": 18.0, "Add": 1.0}
    b = blame(affected, best, "t")
    assert (b.op, b.ms, b.ms_best) == ("Conv", 70.0, None)  # "Conv" has no unique refinement
    b = blame({"depthwise Conv": 70.0, "Conv 1x1": 20.0}, best, "t")
    assert (b.op, b.ms_best) == ("depthwise Conv 7x7", 5.0)
    # largest excess, not largest time: Conv 1x1 is big everywhere
    assert blame({"Conv 1x1": 30.0, "depthwise Conv 7x7": 12.0}, {"Conv 1x1": 29.0, "depthwise Conv 7x7": 1.0}, "t").op == "depthwise Conv 7x7"
    assert blame({}, best, "t") is None


def _dw_onnx(path: Path, c: int = 32, hw: int = 28, k: int = 7) -> Path:
    rng = np.random.default_rng(0)
    w_dw = numpy_helper.from_array(rng.standard_normal((c, 1, k, k)).astype(np.float32), "w_dw")
    w_pw = numpy_helper.from_array(rng.standard_normal((c, c, 1, 1)).astype(np.float32), "w_pw")
    nodes = [helper.make_node("Conv", ["x", "w_dw"], ["y"], group=c, pads=[k // 2] * 4, name="dw"),
             helper.make_node("Conv", ["y", "w_pw"], ["z"], name="pw"), helper.make_node("Relu", ["z"], ["out"], name="act")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, hw, hw])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, c, hw, hw])], [w_dw, w_pw])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


def test_each_profiler_belongs_to_the_runtime_that_runs_its_format():
    """The per-op profilers are runtime objects' `profile_ops`; the anomaly report finds them by the
    reports' runtime name, and a runtime without one (eager PyTorch) gets no op named."""
    profiling = {name for name, rt in RUNTIMES.items() if rt.op_profiler}
    assert {"onnxruntime", "litert", "executorch"} <= profiling
    assert profiling_runtime("litert") is get_runtime("litert")
    assert profiling_runtime("pytorch") is None
    with pytest.raises(NotImplementedError, match="pytorch"):
        get_runtime("pytorch").profile_ops(Path("x"), np.zeros(1, np.float32))


def test_onnx_profile_names_the_depthwise_kernel(tmp_path):
    p = _dw_onnx(tmp_path / "dw.onnx")
    prof = get_runtime("onnxruntime").profile_ops(p, np.ones((1, 32, 28, 28), np.float32), runs=3)
    assert "depthwise Conv 7x7" in prof and "Conv 1x1" in prof and all(v >= 0 for v in prof.values())
    assert onnx_conv_labels(p) == ["depthwise Conv 7x7"]  # the 1x1 is a GEMM in XNNPACK, not listed
    p3 = _dw_onnx(tmp_path / "dw3.onnx", k=3)
    assert "depthwise Conv 3x3" in get_runtime("onnxruntime").profile_ops(p3, np.ones((1, 32, 28, 28), np.float32), runs=3)


@pytest.mark.slow
def test_litert_anomaly_on_a_real_starnet_names_depthwise_7x7(tmp_path):
    """A small StarNet (7x7 depthwise convs) exported to ONNX and TFLite: the LiteRT one-op
    profile of its .tflite blames the 7x7 depthwise conv against ONNX Runtime's profile."""
    import freenet  # noqa: F401
    from export.api import ExportPlan, export_bundle

    m = export_bundle(ExportPlan(models=["starnet_s050"], formats=["onnx", "tflite"], precisions=["fp32"],
                                 targets=["onnxruntime-cpu", "litert-cpu"], out_dir=tmp_path, on_existing="overwrite", input_size=128))  # 7x7 depthwise dominates at this size, even on a loaded host
    assert all(a.status == "ok" for a in m.artifacts), [a.error for a in m.artifacts]
    tfl = next(a for a in m.artifacts if a.format == "tflite")
    prof = get_runtime("litert").profile_ops(tmp_path / tfl.file, runs=15)
    assert "depthwise Conv 7x7" in prof and "Conv 1x1" in prof
    found = bundle_locator(tmp_path, runs=15)("starnet_s050", "litert", "onnxruntime")
    assert found is not None and found.op == "depthwise Conv 7x7" and found.ms > found.ms_best
    assert Anomaly("m", "litert", 1.0, "onnxruntime", 3.0, 0.33, found.op).describe().endswith("op: depthwise Conv 7x7")
