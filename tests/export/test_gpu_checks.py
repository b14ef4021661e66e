"""Tests of export.checks: the LiteRT GPU run on SwiftShader, the static .tflite census, the ONNX mobile checker.

Tiny torch models are converted with litert-torch and torch.onnx (dynamo) at test time; every
GPU run goes through the real LiteRT GPU accelerator on SwiftShader (installed by
scripts/setup_swiftshader.sh, which the `swiftshader` fixture runs when the driver is missing).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from export.checks.litert_gpu import (
    SwiftShaderMissingError,
    parse_delegate_log,
    run_litert_gpu,
    swiftshader_dir,
)
from export.checks.onnx_mobile import check_mobile_usability, parse_usability_log
from export.checks.tflite_census import census, gpu_rules, unexplained_refusals

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup_swiftshader.sh"
PARITY_TOL = 1e-4


@pytest.fixture(scope="session")
def swiftshader() -> Path:
    """The SwiftShader folder; installs it with the project's script when it is missing."""
    try:
        return swiftshader_dir()
    except SwiftShaderMissingError:
        proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            pytest.fail(f"{SETUP.name} could not install SwiftShader:\n{proc.stdout}\n{proc.stderr}")
        return swiftshader_dir()


# --- tiny models -------------------------------------------------------------------------------


class CleanNet(nn.Module):
    """conv -> relu -> depthwise conv + residual add -> spatial mean: every op has a GPU kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.pw = nn.Conv2d(8, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.stem(x))
        y = y + self.dw(y)
        return self.pw(y).mean(dim=(2, 3))


class Reshape5d(nn.Module):
    """A 5-D view between convs (channel groups as their own axis): rank 5 is refused by the GPU."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(4, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x)
        n, c, h, w = y.shape
        y = y.reshape(n, 2, c // 2, h, w).sum(dim=1)
        return self.b(y)


class IndexSelect(nn.Module):
    """Channel sampling by index_select: lowers to GATHER_ND, which has no GPU kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(4, 8, 1)
        self.register_buffer("index", torch.tensor([0, 2, 5, 7]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.index_select(self.a(x), 1, self.index))


class SwapHW(nn.Module):
    """A real layout shuffle between two convs: the GPU runs it, the project rule forbids it."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(self.a(x).transpose(2, 3))


def _example(shape: tuple[int, ...] = (1, 3, 16, 16), seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def _to_tflite(model: nn.Module, path: Path, *, nhwc: bool = False) -> Path:
    import litert_torch

    torch.manual_seed(0)
    model = model.eval()
    x = _example()
    if nhwc:
        # The converted model then declares an NHWC input (no TRANSPOSE at the input).
        model = litert_torch.to_channel_last_io(model, args=[0])
        x = x.permute(0, 2, 3, 1).contiguous()
    litert_torch.convert(model, (x,)).export(str(path))
    return path


def _seeded(factory: type[nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    return factory().eval()


# --- LiteRT GPU on SwiftShader -----------------------------------------------------------------


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_clean_model_runs_gpu_only_and_matches_cpu(layout: str, tmp_path: Path, swiftshader: Path) -> None:
    model = _seeded(CleanNet)
    path = _to_tflite(model, tmp_path / "clean.tflite", nhwc=layout == "NHWC")
    x = _example()
    with torch.no_grad():
        expected = model(x).numpy()

    the_census = census(path)
    assert the_census.clean, the_census.summary()
    assert the_census.transposes["inside"] == 0

    # Always hand over an NCHW array: the runner must fit it to what the model declares.
    result = run_litert_gpu(path, x.numpy(), mode="gpu", save_outputs=tmp_path / "out.npz")
    assert result.ok, result.error
    assert result.fully_on_gpu and result.cpu_ops == 0 and result.gpu_ops == result.total_ops == the_census.num_ops
    assert result.emulated and result.driver and "SwiftShader" in result.driver
    assert result.max_abs_diff is not None and result.max_abs_diff <= PARITY_TOL
    expected_layout = "NCHW given, transposed" if layout == "NHWC" else "as given (NCHW)"
    assert result.input_layouts["args_0"].startswith(expected_layout)
    outputs = np.load(tmp_path / "out.npz")
    gpu = outputs[next(k for k in outputs.files if k.startswith("gpu."))]
    np.testing.assert_allclose(gpu.reshape(expected.shape), expected, atol=PARITY_TOL)


@pytest.mark.parametrize(
    ("factory", "refused_op", "project_rule"),
    [(Reshape5d, "RESHAPE", None), (IndexSelect, "GATHER_ND", "project_op")],
    ids=["reshape-5d", "index-select"],
)
def test_refused_model_was_predicted_by_census(
    factory: type[nn.Module], refused_op: str, project_rule: str | None, tmp_path: Path, swiftshader: Path
) -> None:
    path = _to_tflite(_seeded(factory), tmp_path / "refused.tflite")
    the_census = census(path)
    assert not the_census.predicts_gpu_only
    assert refused_op in the_census.flagged_ops()
    if project_rule:
        assert any(v.rule == project_rule and v.op == refused_op for v in the_census.violations)
    if factory is Reshape5d:
        assert the_census.max_rank == 5

    result = run_litert_gpu(path, mode="gpu")
    assert not result.ok
    assert refused_op in {u.op for u in result.unsupported}
    assert result.error and refused_op in result.error
    # Every op the delegate refused was named by the census before the run.
    assert unexplained_refusals(result.unsupported, the_census) == []

    # With CPU fallback the same model runs, split between GPU and CPU, and still matches.
    fallback = run_litert_gpu(path, mode="gpu+cpu")
    assert fallback.ok, fallback.error
    assert fallback.cpu_ops and fallback.cpu_ops > 0
    assert fallback.max_abs_diff is not None and fallback.max_abs_diff <= PARITY_TOL


def test_interior_transpose_runs_on_gpu_but_breaks_the_project_rule(tmp_path: Path, swiftshader: Path) -> None:
    path = _to_tflite(_seeded(SwapHW), tmp_path / "swap.tflite")
    the_census = census(path)
    assert the_census.predicts_gpu_only, the_census.summary()
    assert the_census.transposes["inside"] >= 1
    assert {v.rule for v in the_census.project_violations} == {"project_transpose"}
    result = run_litert_gpu(path, mode="gpu")
    assert result.ok and result.fully_on_gpu, result.error


def test_unreadable_model_is_an_error_not_a_crash(tmp_path: Path, swiftshader: Path) -> None:
    path = tmp_path / "garbage.tflite"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    result = run_litert_gpu(path, mode="gpu")
    assert not result.ok and result.error
    assert result.stage == "reference"


def test_timeout_is_reported(tmp_path: Path, swiftshader: Path) -> None:
    path = _to_tflite(_seeded(CleanNet), tmp_path / "clean.tflite")
    result = run_litert_gpu(path, timeout_s=0.05)
    assert not result.ok and result.error and "timed out" in result.error


def test_missing_driver_names_the_setup_script(tmp_path: Path) -> None:
    with pytest.raises(SwiftShaderMissingError, match="setup_swiftshader.sh"):
        run_litert_gpu(tmp_path / "any.tflite", tools_root=tmp_path)


def test_broken_driver_is_reported_with_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "swiftshader"
    folder.mkdir()
    for name in ("libvk_swiftshader.so", "vk_swiftshader_icd.json", "libvulkan.so.1"):
        (folder / name).write_bytes(b"not a library")
    model = tmp_path / "model.tflite"
    model.write_bytes(b"unused: the worker stops before reading it")
    result = run_litert_gpu(model, tools_root=tmp_path)
    assert not result.ok and result.stage == "start"
    assert result.error and "setup_swiftshader.sh" in result.error


def test_setup_script_is_idempotent(swiftshader: Path) -> None:
    proc = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "already installed" in proc.stdout


# Lines as ai-edge-litert 2.3.0 prints them (captured on this machine).
_ADAPTER_LINE = (
    "I0000 00:00:1795648929.139154 7177 environment.cc:532] Selected adapter: SwiftShader Device (Subzero), "
    "arch=swiftshader, vendor=google, backend=Vulkan, adapterType=CPU / Software"
)
_PARTITION_LINE = "I0000 00:00:1795648933.373029 8338 delegate_kernel.cc:984] Initializing WebGPU-based API from graph."


@pytest.mark.parametrize(
    ("stderr", "gpu", "cpu", "unsupported"),
    [
        (f"{_ADAPTER_LINE}\n{_PARTITION_LINE}\n", None, None, []),
        (
            f"{_ADAPTER_LINE}\nERROR: Following operations are not supported by GPU delegate:\n"
            "GATHER_ND: Operation is not supported.\n"
            "1 operations will run on the GPU, and the remaining 2 operations will run on the CPU.\n"
            f"{_PARTITION_LINE}\n",
            1,
            2,
            [("GATHER_ND", "Operation is not supported.")],
        ),
        (
            "ERROR: Following operations are not supported by GPU delegate:\nMEAN: Unknown layout.\n"
            "RESHAPE: Tensor dimensions must be less than 5. __main__.G;2\n"
            "No operations will run on the GPU, and all 2 operations will run on the CPU.\n",
            0,
            2,
            [("MEAN", "Unknown layout."), ("RESHAPE", "Tensor dimensions must be less than 5. __main__.G;2")],
        ),
    ],
    ids=["all-gpu", "split", "none"],
)
def test_parse_delegate_log(stderr: str, gpu: int | None, cpu: int | None, unsupported: list) -> None:
    log = parse_delegate_log(stderr)
    assert (log.gpu_ops, log.cpu_ops) == (gpu, cpu)
    assert [(u.op, u.reason) for u in log.unsupported] == unsupported
    assert log.gpu_partitions == stderr.count("Initializing WebGPU-based API")
    if _ADAPTER_LINE in stderr:
        assert log.adapter == "SwiftShader Device (Subzero)" and log.adapter_type == "CPU / Software"


def test_rules_table_names_its_upstream_source() -> None:
    rules = gpu_rules()
    files = rules["source"]["files"]
    assert rules["source"]["repository"] == "google-ai-edge/LiteRT"
    assert all(len(f["commit"]) == 40 for f in files.values())
    assert {"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN", "TRANSPOSE"} <= rules["ops"].keys()
    assert not {"GATHER_ND", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND", "BROADCAST_TO"} & rules["ops"].keys()
    assert set(rules["project_rules"]["forbidden_ops"]) == {
        "GATHER", "GATHER_ND", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"
    }


@pytest.mark.slow
def test_starnet_s1_runs_gpu_only(tmp_path: Path, swiftshader: Path) -> None:
    """A real backbone (timm StarNet-S1, random weights, 224x224) end to end on the GPU path."""
    from freenet._torchvision_compat import ensure_torchvision_importable

    ensure_torchvision_importable()
    import timm

    torch.manual_seed(0)
    model = timm.create_model("starnet_s1", pretrained=False).eval()
    import litert_torch

    path = tmp_path / "starnet_s1.tflite"
    litert_torch.convert(model, (_example((1, 3, 224, 224)),)).export(str(path))
    the_census = census(path)
    assert the_census.clean, the_census.summary()
    result = run_litert_gpu(path, _example((1, 3, 224, 224), seed=1).numpy(), mode="gpu")
    assert result.ok and result.fully_on_gpu, result.error
    assert result.max_abs_diff is not None and result.max_abs_diff <= PARITY_TOL


# --- ONNX Runtime mobile usability --------------------------------------------------------------


class ConvRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x))


class ConvGelu(ConvRelu):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.conv(x))  # exact (erf) GELU


def _to_onnx(model: nn.Module, path: Path, opset: int) -> Path:
    torch.onnx.export(model.eval(), (_example(),), str(path), dynamo=True, opset_version=opset)
    return path


def test_onnx_conv_relu_fully_on_nnapi_and_coreml(tmp_path: Path) -> None:
    report = check_mobile_usability(_to_onnx(_seeded(ConvRelu), tmp_path / "conv_relu.onnx", 18))
    for ep in ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"):
        usability = report.eps[ep]
        assert usability.fully_supported, usability
        assert usability.partitions == 1 and usability.partition_sizes == [usability.total_nodes]
        assert usability.unsupported_ops == [] and usability.suitability == "YES"


@pytest.mark.parametrize(("opset", "op"), [(18, "Erf"), (20, "Gelu")])
def test_onnx_gelu_is_not_on_nnapi(opset: int, op: str, tmp_path: Path) -> None:
    report = check_mobile_usability(_to_onnx(_seeded(ConvGelu), tmp_path / "conv_gelu.onnx", opset))
    assert not report.nnapi.fully_supported
    assert report.nnapi.supported_nodes < report.nnapi.total_nodes
    assert op in report.nnapi.unsupported_op_types


# Real output of the checker (onnxruntime 1.32.0) for conv+GELU(erf), opset 18, dynamic batch.
_DYNAMIC_LOG = """\
INFO:  Checking gdyn.onnx for usability with ORT Mobile.
INFO:  Checking NNAPI
INFO:  0 partitions with a total of 0/6 nodes can be handled by the NNAPI EP.
INFO:  Unsupported nodes due to operator=1
INFO:  \tUnsupported ops: ai.onnx:Erf
INFO:  \tCaveats that have not been checked and may result in a node not actually being supported:  
     ai.onnx:Conv:Only 2D Conv is supported. Weights and bias should be constant.
INFO:  Unsupported nodes due to input having a dynamic shape=6
INFO:  NNAPI cannot run any nodes in this model.
INFO:  Model should perform well with NNAPI as is: NO
INFO:  --------
INFO:  Checking if model will perform better if the dynamic shapes are fixed...
INFO:  Partition information if the model was updated to make the shapes fixed:
INFO:  2 partitions with a total of 5/6 nodes can be handled by the NNAPI EP.
INFO:  \tPartition sizes: [2, 3]
INFO:  Unsupported nodes due to operator=1
INFO:  \tUnsupported ops: ai.onnx:Erf
INFO:  \tCaveats that have not been checked and may result in a node not actually being supported:  
     ai.onnx:Conv:Only 2D Conv is supported. Weights and bias should be constant.
INFO:  NNAPI can be considered for this model as there are two partitions covering 83.3% of the nodes. \
Performance testing is required to validate.
INFO:  Model should perform well with NNAPI if modified to have fixed input shapes: MAYBE
INFO:  Shapes can be altered using python -m onnxruntime.tools.make_dynamic_shape_fixed
INFO:  ================
INFO:  
INFO:  Checking CoreML NeuralNetwork
INFO:  0 partitions with a total of 0/6 nodes can be handled by the CoreML NeuralNetwork EP.
INFO:  Unsupported nodes due to operator=1
INFO:  \tUnsupported ops: ai.onnx:Erf
INFO:  Unsupported nodes due to input having a dynamic shape=6
INFO:  CoreML NeuralNetwork cannot run any nodes in this model.
INFO:  Model should perform well with CoreML NeuralNetwork as is: NO
INFO:  ================
INFO:  
INFO:  Checking CoreML MLProgram
INFO:  0 partitions with a total of 0/6 nodes can be handled by the CoreML MLProgram EP.
INFO:  Unsupported nodes due to operator=0
INFO:  Unsupported nodes due to input having a dynamic shape=6
INFO:  CoreML MLProgram cannot run any nodes in this model.
INFO:  Model should perform well with CoreML MLProgram as is: NO
INFO:  --------
INFO:  Checking if model will perform better if the dynamic shapes are fixed...
INFO:  Partition information if the model was updated to make the shapes fixed:
INFO:  1 partitions with a total of 6/6 nodes can be handled by the CoreML MLProgram EP.
INFO:  \tPartition sizes: [6]
INFO:  Unsupported nodes due to operator=0
INFO:  Model should perform well with CoreML MLProgram if modified to have fixed input shapes: YES
INFO:  ================
INFO:  
INFO:  As NNAPI or CoreML may provide benefits with this model it is recommended to compare the performance \
of the model using the NNAPI EP on Android, and the CoreML EP on iOS, against the performance using the CPU EP.
"""


def test_parse_usability_log_keeps_as_is_numbers_for_dynamic_shapes() -> None:
    report = parse_usability_log(_DYNAMIC_LOG)
    nnapi = report.nnapi
    assert (nnapi.supported_nodes, nnapi.total_nodes, nnapi.partitions) == (0, 6, 0)
    assert nnapi.partition_sizes == [] and nnapi.unsupported_ops == ["ai.onnx:Erf"]
    assert nnapi.nodes_unsupported_due_to_dynamic_shape == 6
    assert nnapi.caveats == ["ai.onnx:Conv:Only 2D Conv is supported. Weights and bias should be constant."]
    assert (nnapi.suitability, nnapi.fixed_shape_suitability) == ("NO", "MAYBE")
    assert report.coreml_mlprogram.fixed_shape_suitability == "YES"
    assert report.coreml_neuralnetwork.fixed_shape_suitability is None
    assert report.recommends_trying_eps


def test_parse_usability_log_rejects_foreign_text() -> None:
    with pytest.raises(ValueError, match="NNAPI"):
        parse_usability_log("INFO:  something else entirely\n")
