"""TFLite (LiteRT) backend: litert-torch conversion, ai-edge-quantizer precisions, GPU-delegate proof.

This module owns the .tflite export path: `litert_torch.convert` (optionally behind
`litert_torch.to_channel_last_io` so the model takes NHWC and the converter's input TRANSPOSE
disappears), then the precision step with ai-edge-quantizer (fp16: weight-only float casting, the
"float16 quantization" layout the GPU delegate reads natively; int8: static int8 weights and
activations calibrated on `req.calibration`, with float32 graph input/output), `req.metadata`
embedded in the flatbuffer's `metadata` table, and coverage: the static census against the GPU
delegate's rules (`export.checks.tflite_census`) and, for the `litert-gpu` target, a real
GPU-only run on LiteRT's GPU accelerator over SwiftShader (`export.checks.litert_gpu`).
`FORMAT.open()` gives an interpreter session (XNNPACK) or, with accelerator "gpu", a session on LiteRT's
GPU accelerator over SwiftShader (the emulated host runtime).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from ..manifest import Coverage, TensorSpec
from ..steps import memo, step
from .base import (
    BackendResult,
    ExportRequest,
    Format,
    NotRunnableHere,
    Session,
    Target,
    calibration_batches,
    package_version,
    validate_request,
)

_ALL = ("fp32", "fp16", "int8")
# Names of the entries this backend adds to the flatbuffer's `metadata` table (UTF-8 JSON each).
METADATA_NAME = "freenet_deploy"
IO_METADATA_NAME = "freenet_deploy.io"
GPU_RUN_TIMEOUT_S = 600.0


class TfliteExportError(RuntimeError):
    """litert-torch or ai-edge-quantizer refused the model (their reason is in the message)."""


def _to_nhwc(x):
    return x.permute(0, 2, 3, 1).contiguous()


def _convert(model, example, channels_last_io: bool) -> bytes:
    """litert-torch conversion to float32 .tflite bytes, or TfliteExportError with its reason."""
    import litert_torch
    import torch

    if channels_last_io:
        with torch.no_grad():
            out_rank = model(example).ndim
        # NHWC input; a 4-D output (feature maps) is returned NHWC too so no TRANSPOSE remains there.
        model = litert_torch.to_channel_last_io(model, args=[0], outputs=[0] if out_rank == 4 else [])
        # The wrapper is a new nn.Module (training=True by default) and .eval() would reach the
        # exported GraphModule, whose eval() raises: set the flag, or litert-torch warns that the
        # model is "converted in training mode".
        for m in model.modules():
            m.training = False
        example = _to_nhwc(example)
    try:
        edge_model = litert_torch.convert(model, (example,))
    except Exception as exc:  # torch.export, lowering and MLIR errors all surface here
        reason = " ".join(str(exc).split("While executing", 1)[0].split()) or type(exc).__name__
        raise TfliteExportError(
            f"litert_torch.convert failed for {type(model).__name__}: {type(exc).__name__}: {reason}"
        ) from exc
    return bytes(edge_model.model_content())


def _signature(model_bytes: bytes) -> tuple[str, dict, dict]:
    """(signature key, input details, output details) of the model's only signature."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=model_bytes)
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        raise TfliteExportError(f"expected one signature in the converted model, found {list(signatures)}")
    key = next(iter(signatures))
    runner = interpreter.get_signature_runner(key)
    return key, runner.get_input_details(), runner.get_output_details()


def _quantize(model_bytes: bytes, req: ExportRequest) -> tuple[bytes, list[str]]:
    """fp16 or int8 with ai-edge-quantizer; returns the new flatbuffer and notes on what was done."""
    from ai_edge_quantizer import qtyping, quantizer, recipe
    from ai_edge_quantizer.algorithm_manager import AlgorithmName

    ops = qtyping.TFLOperationName
    if req.precision == "fp16":
        qt = quantizer.Quantizer(bytearray(model_bytes))
        # Weight-only float casting: fp16 weights + DEQUANTIZE, fp32 compute on CPU; the GPU delegate
        # folds the DEQUANTIZE and runs fp16 (the layout TFLite's float16 quantization produces).
        qt.add_weight_only_config(
            regex=".*", operation_name=ops.ALL_SUPPORTED, num_bits=16, algorithm_key=AlgorithmName.FLOAT_CASTING
        )
        result = qt.quantize(enable_progress_report=False)
        return bytes(result.quantized_model), ["fp16: ai-edge-quantizer weight-only FLOAT_CASTING (fp16 weights)"]

    qt = quantizer.Quantizer(bytearray(model_bytes), recipe.static_wi8_ai8())
    # Keep float32 graph input/output (QUANTIZE/DEQUANTIZE at the boundary) so apps and parity feed
    # the same normalised float tensors for every precision.
    for io_op in (ops.INPUT, ops.OUTPUT):
        qt.update_quantization_recipe(regex=".*", operation_name=io_op, algorithm_key=AlgorithmName.NO_QUANTIZE)
    key, input_details, _ = _signature(model_bytes)
    (input_name,) = input_details
    batches, calibration_note = calibration_batches(req)
    if req.channels_last_io:
        batches = [np.ascontiguousarray(b.transpose(0, 2, 3, 1)) for b in batches]
    try:
        calibration = qt.calibrate({key: [{input_name: b} for b in batches]}, num_threads=1)
        result = qt.quantize(calibration, enable_progress_report=False)
    except Exception as exc:
        raise TfliteExportError(f"ai-edge-quantizer static int8 failed: {type(exc).__name__}: {exc}") from exc
    notes = [calibration_note, "int8: ai-edge-quantizer static_wi8_ai8 (int8 weights per-channel, int8 activations), "
             "float32 input/output"]
    return bytes(result.quantized_model), notes


def embed_metadata(model_bytes: bytes, entries: dict[str, dict]) -> bytes:
    """Add (or replace) named entries of the flatbuffer's `metadata` table, each as UTF-8 JSON."""
    from ai_edge_litert import schema_py_generated as fb
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))
    model.metadata = [m for m in (model.metadata or []) if _name(m.name) not in entries]
    for name, value in entries.items():
        buffer = fb.BufferT()
        buffer.data = np.frombuffer(json.dumps(value, sort_keys=True).encode(), dtype=np.uint8)
        model.buffers.append(buffer)
        model.metadata.append(fb.MetadataT(name=name, buffer=len(model.buffers) - 1))
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _name(value: str | bytes | None) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


def read_metadata(path: str | Path) -> dict[str, dict]:
    """This backend's metadata entries of a .tflite, by name (JSON-decoded); {} when there are none."""
    from ai_edge_litert import schema_py_generated as fb

    buf = Path(path).read_bytes()
    model = fb.Model.GetRootAs(buf, 0)
    found = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        name = _name(entry.Name())
        if name in (METADATA_NAME, IO_METADATA_NAME):
            data = model.Buffers(entry.Buffer())
            if data.Offset():  # large models keep buffers outside the flatbuffer (offset/size)
                raw = buf[data.Offset() : data.Offset() + data.Size()]
            else:
                raw = data.DataAsNumpy().tobytes()
            found[name] = json.loads(raw.decode())
    return found


def _specs(details: dict, layouts: dict[str, str]) -> list[TensorSpec]:
    specs = []
    for name, d in details.items():
        shape = [int(s) for s in d["shape"]]
        layout = layouts.get(name) or ("NCHW" if len(shape) == 4 else "NC")
        specs.append(TensorSpec(name=name, shape=shape, dtype=np.dtype(d["dtype"]).name, layout=layout))
    return specs


def _census_coverage(path: Path, quantized: bool) -> tuple[Coverage, object]:
    from ..checks.tflite_census import census

    result = census(path, allow_quant_ops=quantized)
    flagged = {v.op_index for v in result.delegate_violations}
    unique = sorted({f"{v.op} [{v.rule}]: {v.detail}" for v in result.delegate_violations})
    coverage = Coverage(
        tool="export.checks.tflite_census (static GPU-delegate rules)",
        # Named apart from the real run so the status table can tell prediction from proof.
        delegate="litert-gpu (static census)",
        supported_nodes=result.num_ops - len(flagged),
        total_nodes=result.num_ops,
        full=result.predicts_gpu_only,
        unsupported=unique,
        detail={
            "op_counts": result.op_counts,
            "max_rank": result.max_rank,
            "transposes": result.transposes,
            "project_violations": sorted({f"{v.op} [{v.rule}]" for v in result.project_violations}),
            "clean": result.clean,
        },
    )
    return coverage, result


def _gpu_coverage(path: Path, example: np.ndarray, the_census) -> tuple[Coverage, list[str]]:
    """Compile and run GPU-only on LiteRT's GPU accelerator (SwiftShader) and compare with the CPU."""
    from ..checks.litert_gpu import SwiftShaderMissingError, run_litert_gpu
    from ..checks.tflite_census import unexplained_refusals

    tool = f"ai-edge-litert {package_version('ai-edge-litert')} GPU accelerator, GPU-only mode, SwiftShader"
    try:
        result = run_litert_gpu(path, [example], mode="gpu", timeout_s=GPU_RUN_TIMEOUT_S)
    except SwiftShaderMissingError as exc:
        # Verification tool missing: the artifact is still valid; say so instead of guessing.
        return Coverage(tool=tool, delegate="litert-gpu", detail={"error": str(exc)}), [
            f"real GPU-delegate run not done: {exc}"
        ]
    notes = []
    if not result.ok:
        notes.append(f"GPU-only run refused or failed: {result.error}")
    unexplained = unexplained_refusals(result.unsupported, the_census)
    if unexplained:
        notes.append(f"the GPU delegate refused ops the census did not predict: {'; '.join(unexplained)}")
    coverage = Coverage(
        tool=tool,
        delegate="litert-gpu",
        supported_nodes=result.gpu_ops,
        total_nodes=result.total_ops,
        partitions=result.gpu_partitions,
        full=result.fully_on_gpu,
        unsupported=sorted({f"{u.op}: {u.reason}" for u in result.unsupported}),
        detail={
            "ok": result.ok,
            "error": result.error,
            "stage": result.stage,
            "max_abs_diff_vs_cpu": result.max_abs_diff,
            "cpu_output_max_abs": result.reference_max_abs,
            "emulated": result.emulated,
            "driver": result.driver,
            "driver_version": result.driver_version,
            "unexplained_by_census": unexplained,
        },
    )
    return coverage, notes


def export(req: ExportRequest) -> BackendResult:
    """Export `req.model` to one .tflite at `req.out_path` (see the module docstring for the steps)."""
    validate_request(req, FORMAT)
    out_path = Path(req.out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []

    # Already in eval mode (the contract); never call .eval() here: the orchestrator passes a
    # torch.export'ed GraphModule, which refuses train()/eval().
    model = req.model
    start = time.perf_counter()
    with step("convert.trace"):
        # every precision quantizes the same float32 flatbuffer: converted once per model and process
        model_bytes = memo(model, ("tflite-fp32", tuple(req.example_input.shape), req.channels_last_io),
                           lambda: _convert(model, req.example_input, req.channels_last_io))
    notes.append(f"litert_torch.convert took {time.perf_counter() - start:.1f} s")
    if req.precision != "fp32":
        with step("convert.quantize"):
            model_bytes, quant_notes = _quantize(model_bytes, req)
        notes += quant_notes

    _, input_details, output_details = _signature(model_bytes)
    layouts = {}
    if req.channels_last_io:
        layouts = {name: "NHWC" for name, d in {**input_details, **output_details}.items() if len(d["shape"]) == 4}
    inputs, outputs = _specs(input_details, layouts), _specs(output_details, layouts)
    io = {"inputs": [s.model_dump() for s in inputs], "outputs": [s.model_dump() for s in outputs]}
    model_bytes = embed_metadata(model_bytes, {METADATA_NAME: dict(req.metadata), IO_METADATA_NAME: io})
    out_path.write_bytes(model_bytes)

    with step("convert.coverage"):
        census_coverage, the_census = _census_coverage(out_path, quantized=req.precision == "int8")
    coverage = [census_coverage]
    if req.target == "litert-gpu":
        with step("convert.gpu_check"):
            gpu_coverage, gpu_notes = _gpu_coverage(out_path, req.example_input.detach().cpu().numpy(), the_census)
        coverage.insert(0, gpu_coverage)  # the real run is the evidence that matters; census explains it
        notes += gpu_notes
    return BackendResult(
        path=out_path,
        inputs=inputs,
        outputs=outputs,
        tool_versions={
            "torch": package_version("torch"),
            "litert-torch": package_version("litert-torch"),
            "ai-edge-litert": package_version("ai-edge-litert"),
            "ai-edge-quantizer": package_version("ai-edge-quantizer"),
        },
        coverage=coverage,
        notes=notes,
    )


def io_nhwc(path: str | Path) -> tuple[bool, bool]:
    """Whether the (single) input and output are NHWC, as export() recorded in the flatbuffer."""
    io = read_metadata(path).get(IO_METADATA_NAME, {})
    first = lambda specs: bool(specs) and specs[0].get("layout") == "NHWC"  # noqa: E731
    return first(io.get("inputs", [])), first(io.get("outputs", []))


class _LayoutSession(Session):
    """NCHW in and out for parity, whatever layout the .tflite declares (NHWC with channels_last_io)."""

    in_nhwc = out_nhwc = False
    declared: list[int] = []

    def prepare(self, x_nchw: np.ndarray) -> np.ndarray:
        x = np.asarray(x_nchw, dtype=np.float32)
        if self.in_nhwc:
            x = x.transpose(0, 2, 3, 1)
        if self.declared and list(x.shape) != self.declared:
            raise ValueError(f"input has shape {list(x.shape)} after layout handling; the model declares {self.declared}")
        return np.ascontiguousarray(x)

    def finish(self, y: np.ndarray) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)
        return np.ascontiguousarray(y.transpose(0, 3, 1, 2)) if self.out_nhwc and y.ndim == 4 else y


class InterpreterSession(_LayoutSession):
    """The LiteRT interpreter (XNNPACK on by default) with `threads` threads."""

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.in_nhwc, self.out_nhwc = io_nhwc(path)
        self._it = Interpreter(model_path=str(path), num_threads=threads)
        self._it.allocate_tensors()
        inputs, outputs = self._it.get_input_details(), self._it.get_output_details()
        if len(inputs) != 1:
            raise ValueError(f"{path} has {len(inputs)} inputs; a session feeds exactly one image tensor")
        self._in, self._out = inputs[0]["index"], outputs[0]["index"]
        self.declared = [int(d) for d in inputs[0]["shape"]]

    def run(self, x: np.ndarray) -> np.ndarray:
        self._it.set_tensor(self._in, x)
        self._it.invoke()
        return self._it.get_tensor(self._out)


class GpuSession(_LayoutSession):
    """LiteRT's GPU accelerator, GPU only (compilation is refused unless every op runs there), on
    SwiftShader's software Vulkan here: proves the GPU path and its numerics, never speed."""

    def __init__(self, path: Path) -> None:
        from ..checks.swiftshader import use_swiftshader

        use_swiftshader()  # before LiteRT creates its first GPU model
        from ai_edge_litert.compiled_model import CompiledModel
        from ai_edge_litert.hardware_accelerator import HardwareAccelerator
        from ai_edge_litert.interpreter import Interpreter

        self.in_nhwc, self.out_nhwc = io_nhwc(path)
        it = Interpreter(model_path=str(path))
        (inp,), (out,) = it.get_input_details(), it.get_output_details()
        self.declared = [int(d) for d in inp["shape"]]
        self._out_shape = [int(d) for d in out["shape"]]
        self._model = CompiledModel.from_file(str(path), hardware_accel=HardwareAccelerator.GPU)
        self._ib, self._ob = self._model.create_input_buffers(0), self._model.create_output_buffers(0)
        self.placement = {"gpu": len(it._get_ops_details()), "cpu": 0}  # GPU-only mode or a refusal
        self._n = int(np.prod(self._out_shape))

    def run(self, x: np.ndarray) -> np.ndarray:
        self._ib[0].write(x)
        self._model.run_by_index(0, self._ib, self._ob)
        return self._ob[0].read(self._n, np.float32).reshape(self._out_shape)  # read() waits for the GPU


class TfliteFormat(Format):
    name = "tflite"
    title = "TFLite (LiteRT)"
    extension = ".tflite"
    # Both targets hold one flatbuffer; here both run on the interpreter for parity, and the GPU
    # delegate's own numerics are checked against it by export.checks.litert_gpu (coverage).
    targets = (
        Target("litert-gpu", _ALL, "LiteRT GPU accelerator (ML Drift; SwiftShader here)", delegate_label="LiteRT GPU"),
        Target("litert-cpu", _ALL, "LiteRT CPU (XNNPACK)"),
    )
    default_targets = ("litert-gpu",)
    requires = {"litert_torch": "litert-torch==0.10.0", "ai_edge_litert": "ai-edge-litert==2.3.0",
                "ai_edge_quantizer": "ai-edge-quantizer==0.10.*"}
    tool_packages = ("torch", "litert-torch", "ai-edge-litert", "ai-edge-quantizer")
    export_cost = {"fp32": 15.0, "fp16": 12.0, "int8": 14.0}
    memoises = True
    accelerators = ("cpu", "gpu")

    def export(self, req: ExportRequest) -> BackendResult:
        return export(req)

    def open(self, path: str | Path, target: str, threads: int = 1, accelerator: str | None = None) -> Session:
        self.runnable(target)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such .tflite file: {path}")
        if accelerator in (None, "cpu"):
            return InterpreterSession(path, threads)
        if accelerator == "gpu":
            return GpuSession(path)
        raise NotRunnableHere(f"LiteRT has no {accelerator!r} accelerator here; it offers {', '.join(self.accelerators)}")


FORMAT = TfliteFormat()
