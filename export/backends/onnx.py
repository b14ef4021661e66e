"""ONNX backend: one self-contained .onnx per (target, precision), checked and covered for mobile EPs.

This module owns the ONNX export path: `torch.onnx.export(dynamo=True)` (with the onnxscript
optimizer), then the precision step (fp16: onnxruntime's float16 converter with fp32 I/O kept;
int8: onnxruntime's static QDQ quantization calibrated on `req.calibration`), `req.metadata` in
`metadata_props`, `onnx.checker` with `full_check`, and the NNAPI / Core ML partition report of
onnxruntime's mobile usability checker (`export.checks.onnx_mobile`) as coverage. The three
targets share one graph: the target only names the execution provider the phone should use and
so which coverage entry matters (it is listed first). The opset recorded is the one actually
written, which is not always the one asked for (TOOLCHAIN.md: asking 17 writes 18).
"""

from __future__ import annotations

import contextlib
import re
import tempfile
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
# The exporter's native opset: asking for an older one makes it try a version conversion that
# fails on Slice/ReduceMean axes (a logged traceback) and still writes 18.
OPSET = 18
INPUT_NAME, OUTPUT_NAME = "input", "output"

# Which usability-checker sections matter for each target, most relevant first.
_EP_ORDER = {
    "onnxruntime-cpu": ("NNAPI", "CoreML MLProgram", "CoreML NeuralNetwork"),
    "onnxruntime-nnapi": ("NNAPI", "CoreML MLProgram", "CoreML NeuralNetwork"),
    "onnxruntime-coreml": ("CoreML MLProgram", "CoreML NeuralNetwork", "NNAPI"),
}


class OnnxExportError(RuntimeError):
    """The ONNX exporter, the precision converter or the checker refused the model (reason inside)."""


def _exporter_reason(exc: BaseException) -> str:
    """The useful part of torch.onnx's error: its "Exception summary" section without colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "## Exception summary" in text:
        text = text.split("## Exception summary", 1)[1].split("(Refer to the full stack trace", 1)[0]
    return " ".join(text.split()) or type(exc).__name__


def _export_fp32(model, example):
    """torch.export -> ONNX ModelProto (opset OPSET, onnxscript-optimised), or OnnxExportError."""
    import torch

    try:
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            optimize=True,  # onnxscript's optimizer: constant folding, dead code, redundant casts
            external_data=False,
            verbose=False,
            report=False,
        )
    except Exception as exc:  # the exporter raises many types; keep its reason, name the stage
        raise OnnxExportError(
            f"torch.onnx.export failed for {type(model).__name__}: {_exporter_reason(exc)}"
        ) from exc
    return program.model_proto


def _to_fp16(model_proto):
    """fp16 weights and activations with fp32 graph inputs/outputs (Cast nodes at the boundary)."""
    import onnx_ir as ir
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted = convert_float_to_float16(model_proto, keep_io_types=True)
    # The converter appends its boundary Casts at the end of the node list; ONNX requires a
    # topologically sorted graph (onnx.checker refuses it, some runtimes too), so sort it.
    ir_model = ir.from_proto(converted)
    ir_model.graph.sort()
    return ir.to_proto(ir_model)


def _to_int8(fp32_path: Path, out_path: Path, req: ExportRequest) -> list[str]:
    """Static QDQ int8 quantization (onnxruntime.quantization), calibrated on `req.calibration`."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batches, calibration_note = calibration_batches(req)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self._it, None)
            return None if item is None else {INPUT_NAME: item}

    # onnxruntime's NNAPI EP takes quantized activations only as uint8, and per-channel int8
    # weights only in u8s8 Conv (Android API 29+); its CPU and XNNPACK kernels prefer S8S8 (no
    # U8S8 saturation on x86 without VNNI). The mobile usability checker does not check types.
    activation = QuantType.QUInt8 if req.target == "onnxruntime-nnapi" else QuantType.QInt8
    pre_path = fp32_path.with_name("preprocessed.onnx")
    # Shape inference plus onnxruntime's basic graph optimisations, as onnxruntime recommends
    # before static quantization (it lets Conv+BatchNorm and friends quantize as one unit).
    quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=True)
    quantize_static(
        str(pre_path),
        str(out_path),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        activation_type=activation,
        weight_type=QuantType.QInt8,
        per_channel=True,
        extra_options={"WeightSymmetric": True},
    )
    return [
        calibration_note,
        f"int8: static QDQ, activations {activation.name}, weights QInt8 per-channel symmetric (MinMax)",
    ]


def _embed_metadata(model_proto, metadata: dict[str, str]) -> None:
    """Add `metadata` to metadata_props, replacing same-named keys and keeping the others."""
    props = {p.key: p.value for p in model_proto.metadata_props}
    props.update({str(k): str(v) for k, v in metadata.items()})
    del model_proto.metadata_props[:]
    for key in sorted(props):
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, props[key]


def written_opset(model_proto) -> int:
    """The default-domain opset the file declares (what runtimes check), not the one asked for."""
    for entry in model_proto.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise ValueError("the model declares no ai.onnx opset")


def _tensor_specs(values) -> list[TensorSpec]:
    from onnx import helper

    specs = []
    for value in values:
        tensor_type = value.type.tensor_type
        shape = [int(d.dim_value) if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim]
        dtype = str(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        layout = "NCHW" if len(shape) == 4 else "NC"
        specs.append(TensorSpec(name=value.name, shape=shape, dtype=dtype, layout=layout))
    return specs


def _coverage(path: Path, target: str) -> list[Coverage]:
    from ..checks.onnx_mobile import check_mobile_usability

    report = check_mobile_usability(path)
    entries = []
    for ep_name in _EP_ORDER[target]:
        ep = report.eps[ep_name]
        entries.append(
            Coverage(
                tool=f"onnxruntime {package_version('onnxruntime')} check_onnx_model_mobile_usability",
                delegate=ep_name,
                supported_nodes=ep.supported_nodes,
                total_nodes=ep.total_nodes,
                partitions=ep.partitions,
                full=ep.fully_supported,
                unsupported=sorted(ep.unsupported_ops + ep.ops_with_unsupported_rank),
                detail={
                    "partition_sizes": ep.partition_sizes,
                    "suitability": ep.suitability,
                    "fixed_shape_suitability": ep.fixed_shape_suitability,
                    "nodes_unsupported_due_to_dynamic_shape": ep.nodes_unsupported_due_to_dynamic_shape,
                    "relevant_to_target": ep_name == _EP_ORDER[target][0] and target != "onnxruntime-cpu",
                },
            )
        )
    return entries


def export(req: ExportRequest) -> BackendResult:
    """Export `req.model` to one .onnx at `req.out_path` (see the module docstring for the steps)."""
    import onnx
    import torch

    validate_request(req, FORMAT)
    out_path = Path(req.out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    if req.channels_last_io:
        notes.append("channels_last_io ignored: ONNX inputs stay NCHW (every ONNX EP takes NCHW)")

    # Already in eval mode (the contract); never call .eval() here: the orchestrator passes a
    # torch.export'ed GraphModule, which refuses train()/eval().
    model = req.model
    start = time.perf_counter()
    with torch.no_grad(), step("convert.trace"):
        # fp32, fp16 and int8 all start from the same fp32 graph: traced once per model and process
        proto = onnx.load_model_from_string(
            memo(model, ("onnx-fp32", tuple(req.example_input.shape)),
                 lambda: _export_fp32(model, req.example_input).SerializeToString()))
    notes.append(f"torch.onnx.export took {time.perf_counter() - start:.1f} s")

    with tempfile.TemporaryDirectory(prefix="onnx-export-") as tmp, contextlib.ExitStack() as stack:
        if req.precision != "fp32":
            stack.enter_context(step("convert.quantize"))
        if req.precision == "fp16":
            proto = _to_fp16(proto)
        elif req.precision == "int8":
            fp32_path = Path(tmp) / "fp32.onnx"
            onnx.save_model(proto, fp32_path)
            int8_path = Path(tmp) / "int8.onnx"
            try:  # calibration data was validated up front: anything raised here is the quantizer's
                notes += _to_int8(fp32_path, int8_path, req)
            except Exception as exc:
                raise OnnxExportError(
                    f"onnxruntime static int8 quantization failed: {type(exc).__name__}: {exc}"
                ) from exc
            proto = onnx.load_model(int8_path)

    _embed_metadata(proto, req.metadata)
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise OnnxExportError(f"onnx.checker refused the {req.precision} model: {exc}") from exc
    # One self-contained file: these models are far below protobuf's 2 GB limit.
    onnx.save_model(proto, out_path, save_as_external_data=False)

    opset = written_opset(proto)
    if opset != OPSET:
        notes.append(f"the exporter wrote opset {opset} although {OPSET} was asked for")
    tool_versions = {
        "torch": package_version("torch"),
        "onnx": package_version("onnx"),
        "onnxruntime": package_version("onnxruntime"),
        "onnxscript": package_version("onnxscript"),
        "onnx_opset": str(opset),
        "onnx_ir_version": str(proto.ir_version),
    }
    start = time.perf_counter()
    with step("convert.coverage"):
        coverage = _coverage(out_path, req.target)
    notes.append(f"mobile usability check took {time.perf_counter() - start:.1f} s")
    return BackendResult(
        path=out_path,
        inputs=_tensor_specs(proto.graph.input),
        outputs=_tensor_specs(proto.graph.output),
        tool_versions=tool_versions,
        coverage=coverage,
        notes=notes,
    )


# StarNet's GPU protocol (imagenet/benchmark_onnx.py): the CUDA EP with exhaustive cuDNN algorithm
# search; the CPU EP stays behind it for any node the CUDA EP does not take.
CUDA_PROVIDER = ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "EXHAUSTIVE"})


class OnnxSession(Session):
    """onnxruntime, graph optimisations on, `threads` intra-op threads and one inter-op; the CPU EP,
    or the CUDA EP (`accelerator="cuda"`) where this onnxruntime build and machine have one.
    `run` returns host memory, so a CUDA sample includes the device's completion and copy-back."""

    def __init__(self, path: Path, threads: int, accelerator: str = "cpu") -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if accelerator == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise NotRunnableHere("this onnxruntime build has no CUDAExecutionProvider: install onnxruntime-gpu "
                                      f"on a machine with a CUDA GPU (available here: {', '.join(available)})")
            providers: list = [CUDA_PROVIDER, "CPUExecutionProvider"]
        elif accelerator == "cpu":
            if "CPUExecutionProvider" not in available:
                raise NotRunnableHere("this onnxruntime build has no CPUExecutionProvider")
            providers = ["CPUExecutionProvider"]
        else:
            raise ValueError(f"onnxruntime sessions run on 'cpu' or 'cuda', not {accelerator!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        if accelerator == "cuda" and self._session.get_providers()[0] != "CUDAExecutionProvider":
            raise NotRunnableHere(f"onnxruntime fell back to {self._session.get_providers()} (the CUDA EP did not initialise)")
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ValueError(f"{path} has {len(inputs)} inputs; a session feeds exactly one image tensor")
        self._input, self._output = inputs[0].name, self._session.get_outputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: x})[0]


class OnnxFormat(Format):
    name = "onnx"
    title = "ONNX"
    extension = ".onnx"
    # The three targets hold one graph; every one runs here on the CPU EP (the NNAPI and Core ML EPs
    # exist only on phones), so CPU numerics are what parity checks on this machine.
    targets = (
        Target("onnxruntime-cpu", _ALL, "CPU (ONNX Runtime CPU EP)"),
        Target("onnxruntime-nnapi", _ALL, "Android NNAPI EP (mobile GPU/NPU)", delegate_label="NNAPI"),
        Target("onnxruntime-coreml", _ALL, "iOS Core ML EP"),
    )
    default_targets = ("onnxruntime-nnapi",)
    requires = {"onnx": "onnx==1.23.2", "onnxruntime": "onnxruntime==1.32.0", "onnxscript": "onnxscript==0.7.2"}
    tool_packages = ("torch", "onnx", "onnxruntime", "onnxscript")
    export_cost = {"fp32": 12.0, "fp16": 3.0, "int8": 6.0}
    memoises = True
    accelerators = ("cpu", "cuda")

    def export(self, req: ExportRequest) -> BackendResult:
        return export(req)

    def open(self, path: str | Path, target: str, threads: int = 1, accelerator: str | None = None) -> Session:
        self.runnable(target)
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no such .onnx file: {path}")
        return OnnxSession(path, threads, accelerator or "cpu")


FORMAT = OnnxFormat()
