"""TFLite backend: parity with eager PyTorch per precision, NHWC I/O, embedded metadata, float32
I/O for int8, the GPU census and the real GPU-only run (SwiftShader), and the converter's reason on
a model it cannot convert."""

from __future__ import annotations

from collections import Counter

import freenet
import numpy as np
import pytest
import torch
from torch import nn

from export.backends import tflite as tflite_backend
from export.backends.base import ExportRequest
from export.checks.tflite_census import census

from export.manifest import TOLERANCE


class FiveDNet(nn.Module):
    """Sampling through a 5-D view (FreeNet's "grouped" layout in miniature): the GPU refuses rank 5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        n, c, h, w = x.shape
        g = x.view(n, 2, c // 2, h, w)
        x = torch.cat([g[:, :, 2:], g[:, :, :2]], dim=2).reshape(n, c, h, w)
        return x.mean((2, 3), keepdim=True).flatten(1)


class SvdNet(nn.Module):
    """aten._linalg_svd has no litert-torch lowering: the converter must refuse it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x.flatten(2))[1]


def _rel(a: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(a - ref).max() / np.abs(ref).max())


CASES = {  # name -> (precision, target, channels_last_io)
    "fp32": ("fp32", "litert-cpu", False),
    "fp32-nhwc": ("fp32", "litert-cpu", True),
    "fp16": ("fp16", "litert-cpu", False),
    "int8-nhwc": ("int8", "litert-cpu", True),
}


@pytest.fixture(scope="module")
def exported(tiny_net, tmp_path_factory):
    model, x, _ = tiny_net
    calibration = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out_dir = tmp_path_factory.mktemp("tflite")
    results = {}
    for name, (precision, target, nhwc) in CASES.items():
        req = ExportRequest(model=model, example_input=x, out_path=out_dir / f"{name}.tflite", target=target,
                            precision=precision, metadata={"freenet.model": "tiny_net", "freenet.precision": precision},
                            calibration=calibration, channels_last_io=nhwc)
        results[name] = tflite_backend.export(req)
    return results


def _ops(path) -> Counter:
    return Counter(census(path, allow_quant_ops=True).op_counts)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["fp32", "fp32-nhwc", "fp16"])
def test_float_parity_with_eager(tiny_net, exported, case):
    _, x, ref = tiny_net
    precision = CASES[case][0]
    for target in tflite_backend.FORMAT.target_names:  # both run on the interpreter here (GPU: see below)
        got = tflite_backend.FORMAT.open(exported[case].path, target).infer(x.numpy())
        assert got.shape == ref.shape and got.dtype == np.float32
        assert _rel(got, ref) < TOLERANCE[precision]


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_metadata_and_io_specs_are_embedded(exported, case):
    res = exported[case]
    precision, _, nhwc = CASES[case]
    meta = tflite_backend.read_metadata(res.path)
    assert meta[tflite_backend.METADATA_NAME] == {"freenet.model": "tiny_net", "freenet.precision": precision}
    (spec,) = res.inputs
    assert spec.dtype == "float32"  # int8 too: QUANTIZE/DEQUANTIZE sit inside the graph
    assert (spec.layout, spec.shape) == (("NHWC", [1, 32, 32, 3]) if nhwc else ("NCHW", [1, 3, 32, 32]))
    assert [(s.dtype, s.shape, s.layout) for s in res.outputs] == [("float32", [1, 10], "NC")]
    assert meta[tflite_backend.IO_METADATA_NAME]["inputs"][0]["layout"] == spec.layout
    # The interpreter still loads the rewritten flatbuffer with its signature intact.
    assert tflite_backend.FORMAT.open(res.path, "litert-cpu").infer(np.zeros((1, 3, 32, 32), np.float32)).shape == (1, 10)


@pytest.mark.slow
def test_channels_last_io_removes_the_input_transpose(exported):
    nchw, nhwc = _ops(exported["fp32"].path), _ops(exported["fp32-nhwc"].path)
    assert nchw["TRANSPOSE"] >= 1
    assert nhwc["TRANSPOSE"] == nchw["TRANSPOSE"] - 1


@pytest.mark.slow
def test_fp16_stores_half_weights_behind_dequantize(exported):
    from ai_edge_litert.interpreter import Interpreter

    path = exported["fp16"].path
    assert _ops(path)["DEQUANTIZE"] >= 3  # two convs and the linear layer
    dtypes = Counter(np.dtype(t["dtype"]).name for t in Interpreter(model_path=str(path)).get_tensor_details())
    assert dtypes["float16"] >= 3, dtypes  # the weights of both convs and of the linear layer


@pytest.mark.slow
def test_int8_is_static_with_float_io_and_close_to_eager(tiny_net, exported):
    _, x, ref = tiny_net
    res = exported["int8-nhwc"]
    ops = _ops(res.path)
    assert ops["QUANTIZE"] >= 1 and ops["DEQUANTIZE"] >= 1
    assert any("real images" in n for n in res.notes) and any("static_wi8_ai8" in n for n in res.notes)
    got = tflite_backend.FORMAT.open(res.path, "litert-cpu").infer(x.numpy())
    assert np.isfinite(got).all() and _rel(got, ref) < 0.2  # int8 is judged by top-1 in the orchestrator


@pytest.mark.slow
def test_cpu_target_records_the_census_but_no_gpu_run(exported):
    (entry,) = exported["fp32"].coverage
    assert entry.tool.startswith("export.checks.tflite_census") and entry.full is True
    assert entry.supported_nodes == entry.total_nodes == sum(entry.detail["op_counts"].values())


def _gpu_entry(res):
    entry = res.coverage[0]
    if "error" in entry.detail and entry.total_nodes is None:
        pytest.fail(entry.detail["error"])  # names scripts/setup_swiftshader.sh
    return entry


@pytest.mark.slow
def test_gpu_target_runs_freenet_tiny_fully_on_the_gpu(tmp_path):
    from export.passes import prepare

    torch.manual_seed(0)
    model = freenet.create_model("freenet_tiny").eval()
    x = torch.randn(1, 3, 64, 64)
    graph, _ = prepare(model, x)  # a torch.export GraphModule, as the orchestrator passes it
    req = ExportRequest(model=graph, example_input=x, out_path=tmp_path / "freenet_tiny.tflite",
                        target="litert-gpu", precision="fp32", channels_last_io=True)
    res = tflite_backend.export(req)
    with torch.no_grad():
        ref = model(x).numpy()
    assert _rel(tflite_backend.FORMAT.open(res.path, "litert-gpu").infer(x.numpy()), ref) < TOLERANCE["fp32"]
    gpu, static = _gpu_entry(res), res.coverage[1]
    assert gpu.full is True and gpu.supported_nodes == gpu.total_nodes and gpu.partitions == 1, gpu
    assert gpu.detail["emulated"] is True  # SwiftShader: proof of delegation, never a speed
    assert gpu.detail["max_abs_diff_vs_cpu"] < 1e-4 * gpu.detail["cpu_output_max_abs"]
    assert static.full is True and static.detail["transposes"] == {"boundary": 0, "inside": 0}


@pytest.mark.slow
def test_gpu_target_reports_a_rank5_refusal_predicted_by_the_census(tmp_path):
    torch.manual_seed(0)
    req = ExportRequest(model=FiveDNet().eval(), example_input=torch.randn(1, 3, 16, 16),
                        out_path=tmp_path / "fived.tflite", target="litert-gpu", precision="fp32")
    res = tflite_backend.export(req)  # a valid artifact: refusal is a coverage fact, not an error
    gpu, static = _gpu_entry(res), res.coverage[1]
    assert gpu.full is False and gpu.detail["ok"] is False
    assert any("Tensor dimensions must be less than 5" in u for u in gpu.unsupported), gpu.unsupported
    assert static.full is False and static.detail["max_rank"] == 5
    assert gpu.detail["unexplained_by_census"] == []
    assert any(n.startswith("GPU-only run refused") for n in res.notes)


def test_unconvertible_model_raises_with_the_converters_reason(tmp_path):
    req = ExportRequest(model=SvdNet().eval(), example_input=torch.randn(1, 3, 8, 8),
                        out_path=tmp_path / "m.tflite", target="litert-cpu", precision="fp32")
    with pytest.raises(tflite_backend.TfliteExportError, match=r"Lowering not found: aten\._linalg_svd"):
        tflite_backend.export(req)
    assert not (tmp_path / "m.tflite").exists()


@pytest.mark.parametrize("field,value", [("target", "litert-npu"), ("precision", "int4")])
def test_bad_request_is_refused_before_converting(tiny_net, tmp_path, field, value):
    model, x, _ = tiny_net
    kwargs = {"target": "litert-cpu", "precision": "fp32", field: value}
    with pytest.raises(ValueError, match=value):
        tflite_backend.export(ExportRequest(model=model, example_input=x, out_path=tmp_path / "m.tflite", **kwargs))


def test_run_refuses_an_input_of_the_wrong_shape(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten()).eval()
    req = ExportRequest(model=model, example_input=torch.randn(1, 3, 8, 8), out_path=tmp_path / "m.tflite",
                        target="litert-cpu", precision="fp32")
    res = tflite_backend.export(req)
    with pytest.raises(ValueError, match="declares"):
        tflite_backend.FORMAT.open(res.path, "litert-cpu").infer(np.zeros((1, 3, 9, 9), np.float32))
