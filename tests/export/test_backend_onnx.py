"""ONNX backend: file validity, recorded opset, metadata, fp32 I/O at every precision, parity with
eager PyTorch, mobile-EP coverage and the exporter's reason on a model it cannot convert."""

from __future__ import annotations

from collections import Counter

import freenet
import numpy as np
import onnx
import pytest
import torch
from torch import nn

from export.backends import onnx as onnx_backend
from export.backends.base import ExportRequest

from export.manifest import TOLERANCE


class SvdNet(nn.Module):
    """aten._linalg_svd has no ONNX function: the exporter must refuse it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x.flatten(2))[1]


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


@pytest.fixture(scope="module")
def exported(tiny_net, tmp_path_factory):
    """One export per (precision, target) used below, shared by the tests that read it."""
    model, x, _ = tiny_net
    calibration = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    results = {}
    for precision, target in [("fp32", "onnxruntime-cpu"), ("fp16", "onnxruntime-coreml"),
                              ("int8", "onnxruntime-nnapi"), ("int8", "onnxruntime-cpu")]:
        out = tmp_path_factory.mktemp("onnx") / f"{precision}-{target}.onnx"
        req = ExportRequest(model=model, example_input=x, out_path=out, target=target, precision=precision,
                            metadata={"freenet.model": "tiny_net", "freenet.precision": precision},
                            calibration=calibration)
        results[precision, target] = onnx_backend.export(req)
    return results


@pytest.mark.slow
@pytest.mark.parametrize("key", [("fp32", "onnxruntime-cpu"), ("fp16", "onnxruntime-coreml"),
                                 ("int8", "onnxruntime-nnapi")])
def test_file_is_valid_self_contained_and_carries_metadata(exported, key):
    res = exported[key]
    assert res.path.is_file() and res.path.suffix == ".onnx"
    assert [p.name for p in res.path.parent.iterdir()] == [res.path.name], "no external data files"
    proto = onnx.load(res.path)
    onnx.checker.check_model(proto, full_check=True)
    assert res.tool_versions["onnx_opset"] == str(onnx_backend.written_opset(proto))
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["freenet.model"] == "tiny_net" and props["freenet.precision"] == key[0]
    # Every precision keeps fp32 graph I/O so the apps feed the same tensors.
    assert [(s.name, s.dtype, s.shape, s.layout) for s in res.inputs] == [("input", "float32", [1, 3, 32, 32], "NCHW")]
    assert [(s.name, s.dtype, s.shape) for s in res.outputs] == [("output", "float32", [1, 10])]


@pytest.mark.slow
@pytest.mark.parametrize("precision,target", [("fp32", "onnxruntime-cpu"), ("fp16", "onnxruntime-coreml")])
def test_float_parity_with_eager(tiny_net, exported, precision, target):
    _, x, ref = tiny_net
    res = exported[precision, target]
    for run_target in onnx_backend.FORMAT.target_names:  # every target runs on the CPU EP here
        got = onnx_backend.FORMAT.open(res.path, run_target).infer(x.numpy())
        assert got.shape == ref.shape and got.dtype == np.float32
        assert _rel(got, ref) < TOLERANCE[precision]


@pytest.mark.slow
def test_fp16_weights_are_half_and_io_float(exported):
    proto = onnx.load(exported["fp16", "onnxruntime-coreml"].path)
    types = Counter(onnx.helper.tensor_dtype_to_np_dtype(t.data_type).name for t in proto.graph.initializer)
    assert types["float16"] > 0 and types["float32"] == 0, types
    assert sum(n.op_type == "Cast" for n in proto.graph.node) == 2  # one at the input, one at the output


@pytest.mark.slow
@pytest.mark.parametrize("target,activation", [("onnxruntime-nnapi", onnx.TensorProto.UINT8),
                                               ("onnxruntime-cpu", onnx.TensorProto.INT8)])
def test_int8_is_qdq_with_the_targets_activation_type(tiny_net, exported, target, activation):
    _, x, ref = tiny_net
    res = exported["int8", target]
    proto = onnx.load(res.path)
    ops = Counter(n.op_type for n in proto.graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    zero_points = {i.name: i.data_type for i in proto.graph.initializer}
    activation_zps = [zero_points[n.input[2]] for n in proto.graph.node if n.op_type == "QuantizeLinear"]
    assert set(activation_zps) == {activation}
    assert any("real images" in note for note in res.notes)
    got = onnx_backend.FORMAT.open(res.path, target).infer(x.numpy())
    assert np.isfinite(got).all() and _rel(got, ref) < 0.2  # int8 is judged by top-1 in the orchestrator


@pytest.mark.slow
def test_coverage_lists_the_targets_ep_first(exported):
    assert [c.delegate for c in exported["fp32", "onnxruntime-cpu"].coverage][0] == "NNAPI"
    assert exported["fp16", "onnxruntime-coreml"].coverage[0].delegate == "CoreML MLProgram"
    nnapi = exported["int8", "onnxruntime-nnapi"].coverage[0]
    assert nnapi.delegate == "NNAPI" and nnapi.detail["relevant_to_target"] is True
    assert nnapi.total_nodes and nnapi.supported_nodes == nnapi.total_nodes and nnapi.full
    # Core ML's EPs take no QDQ nodes: the checker must say so, not claim the model is covered.
    coreml = {c.delegate: c for c in exported["int8", "onnxruntime-nnapi"].coverage}["CoreML MLProgram"]
    assert coreml.full is False and "ai.onnx:QuantizeLinear" in coreml.unsupported


def test_unconvertible_model_raises_with_the_exporters_reason(tmp_path):
    req = ExportRequest(model=SvdNet().eval(), example_input=torch.randn(1, 3, 8, 8), out_path=tmp_path / "m.onnx",
                        target="onnxruntime-cpu", precision="fp32")
    with pytest.raises(onnx_backend.OnnxExportError, match=r"aten\._linalg_svd") as info:
        onnx_backend.export(req)
    assert "\x1b[" not in str(info.value)
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("field,value", [("target", "onnxruntime-tpu"), ("precision", "int4")])
def test_bad_request_is_refused_before_exporting(tiny_net, tmp_path, field, value):
    model, x, _ = tiny_net
    kwargs = {"target": "onnxruntime-cpu", "precision": "fp32", field: value}
    with pytest.raises(ValueError, match=value):
        onnx_backend.export(ExportRequest(model=model, example_input=x, out_path=tmp_path / "m.onnx", **kwargs))


def test_calibration_of_the_wrong_shape_is_refused(tiny_net, tmp_path):
    model, x, _ = tiny_net
    req = ExportRequest(model=model, example_input=x, out_path=tmp_path / "m.onnx", target="onnxruntime-cpu",
                        precision="int8", calibration=torch.randn(4, 3, 16, 16))
    with pytest.raises(ValueError, match="calibration images must be"):
        onnx_backend.export(req)


@pytest.mark.slow
def test_freenet_tiny_after_passes_is_fully_nnapi_covered_and_matches_eager(tmp_path):
    from export.passes import prepare

    torch.manual_seed(0)
    model = freenet.create_model("freenet_tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    graph, _ = prepare(model, x)  # a torch.export GraphModule, exactly what the orchestrator passes
    req = ExportRequest(model=graph, example_input=x, out_path=tmp_path / "freenet_tiny.onnx",
                        target="onnxruntime-nnapi", precision="fp32")
    res = onnx_backend.export(req)
    with torch.no_grad():
        ref = model(x).numpy()
    assert _rel(onnx_backend.FORMAT.open(res.path, "onnxruntime-nnapi").infer(x.numpy()), ref) < TOLERANCE["fp32"]
    nnapi = res.coverage[0]
    assert nnapi.delegate == "NNAPI" and nnapi.full, nnapi
