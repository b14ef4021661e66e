"""ExecuTorch export: one `.pte` per target (XNNPACK CPU, Vulkan mobile GPU, Core ML), with its delegation.

This module owns the ExecuTorch flow of `examples/xnnpack/aot_compiler.py` as a short linear script,
(the exact rewrite passes the target's delegate needs, `_workarounds`) -> `torch.export.export` ->
(PT2E int8 quantization for XNNPACK) -> `to_edge_transform_and_lower` with
the target's partitioner -> `to_executorch` -> `.pte`, and the evidence of how much of the graph the
target's delegate took: delegated vs non-delegated compute nodes, the number of delegate subgraphs,
and the partitioner's own reason for every node it left out. Only XNNPACK programs run here (the pip
runtime registers no Vulkan or Core ML backend); the others raise `NotRunnableHere`
from `FORMAT.open()`.
A `.pte` has no metadata slot, so the bundle's sidecar manifest carries the metadata.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import operator
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..manifest import Coverage, TensorSpec
from ..steps import step
from .base import BackendResult, ExportRequest, Format, NotRunnableHere, Session, Target, exported_program, package_version

if TYPE_CHECKING:  # torch is imported where it is used, so the format registry stays light
    import torch
    from torch import nn

# Names of the single input and output in the manifest, as in the ONNX backend (a .pte is positional).
INPUT_NAME = "input"
OUTPUT_NAME = "output"


@dataclass(frozen=True)
class EtTarget(Target):
    backend_id: str = ""  # the `backend_id` of the lowered modules this target's partitioner produces


def _not_here(backend_id: str, device: str) -> str:
    return (f"the ExecuTorch pip runtime has no {backend_id} registered; this .pte runs only on a device "
            f"with that backend linked ({device})")


_TARGETS = (
    EtTarget("executorch-xnnpack", ("fp32", "fp16", "int8"), "CPU (XNNPACK)", delegate_label="XNNPACK", backend_id="XnnpackBackend"),
    # Vulkan int8 needs the Vulkan quantizer and a phone to check it; not offered until it can be verified.
    EtTarget("executorch-vulkan", ("fp32", "fp16"), "mobile GPU (Vulkan)", (),
             _not_here("VulkanBackend", "mobile GPU (Vulkan)"), delegate_label="Vulkan", backend_id="VulkanBackend"),
    EtTarget("executorch-coreml", ("fp32", "fp16", "int8"), "Core ML (ANE/GPU/CPU)", (),
             _not_here("CoreMLBackend", "Core ML (ANE/GPU/CPU)"), backend_id="CoreMLBackend"),
)

# Core ML inside ExecuTorch: iOS16 is the lowest OS the ExecuTorch Core ML delegate supports and the
# first Core ML opset with constexpr (compressed-weight) ops, so int8 weights need nothing newer.
COREML_DEPLOYMENT_TARGET = "iOS16"

# Top-level nodes that move values around rather than compute: a delegate call returns a tuple that
# `getitem` unpacks. Everything else left outside a delegate runs on ExecuTorch's portable kernels.
_PLUMBING = {"getitem"}
_CAST_OPS = {"aten::_to_copy", "dim_order_ops::_to_dim_order_copy"}

_LOG_NAMES = (
    "executorch.backends.xnnpack",  # WhyNoPartition messages at DEBUG
    "executorch.backends.apple.coreml",
    "",  # the Vulkan partitioner logs its skips on the root logger
)
_SKIP_PATTERNS = (
    re.compile(r"WhyNoPartition: Node (?P<node>\S+) was not partitioned because (?P<reason>.*?)\.?$"),
    # Vulkan names the operator, not the node: "... skipping <shape> = aten.mean.dim(...)"
    re.compile(r"\[Vulkan Partitioner\] Due to \[(?P<reason>[^\]]*)\], skipping .*? = (?P<op>[\w.:]+)\("),
)


def export(req: ExportRequest) -> BackendResult:
    """Lower `req.model` for `req.target` at `req.precision` and write the `.pte` at `req.out_path`."""
    FORMAT.check(req.target, req.precision)
    target = FORMAT.target(req.target)
    import torch
    from executorch.exir import to_edge_transform_and_lower

    model = req.model
    if not isinstance(model, torch.fx.GraphModule):  # an exported graph module refuses .eval()
        model.eval()
    x = req.example_input
    quantized = req.target == "executorch-xnnpack" and req.precision == "int8"
    if quantized and req.calibration is not None and tuple(req.calibration.shape[1:]) != tuple(x.shape[1:]):
        raise ValueError(
            f"calibration images have shape {tuple(req.calibration.shape[1:])} per image but the "
            f"model input is {tuple(x.shape[1:])}; resize them to the export resolution"
        )
    notes = [
        "ExecuTorch .pte files have no metadata slot: the bundle manifest (sidecar) carries the metadata.",
        f"Runs on: {target.device}.",
    ]
    with torch.no_grad():
        step = "PT2E quantization / torch.export" if quantized else "torch.export"
        program = _stage(step, lambda: _exported_program(_rewritten(model, x, req.target, req.precision, notes), x, req, notes))
        partitioner = _partitioner(req.target, req.precision, notes)
        with _capture_skip_reasons() as reasons:
            edge = _stage(
                "to_edge_transform_and_lower",
                lambda: to_edge_transform_and_lower(program, partitioner=[partitioner]),
            )
        coverage = delegation_coverage(edge.exported_program().graph_module, target.backend_id, reasons)
        executorch_program = _stage("to_executorch", edge.to_executorch)

    out = Path(req.out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(executorch_program.buffer)

    out_val = [n for n in program.graph.nodes if n.op == "output"][0].args[0][0].meta["val"]
    tool_versions = {"executorch": package_version("executorch"), "torch": torch.__version__}
    if req.target == "executorch-coreml":
        tool_versions["coremltools"] = package_version("coremltools")
    return BackendResult(
        path=out,
        inputs=[TensorSpec(name=INPUT_NAME, shape=list(x.shape), dtype="float32", layout="NCHW")],
        outputs=[
            TensorSpec(name=OUTPUT_NAME, shape=list(out_val.shape), dtype="float32", layout=_layout(out_val))
        ],
        tool_versions=tool_versions,
        coverage=[coverage],
        notes=notes,
        min_deployment_target=COREML_DEPLOYMENT_TARGET if req.target == "executorch-coreml" else None,
    )


class ExecuTorchSession(Session):
    """A `.pte`'s forward method on the ExecuTorch pip runtime, XNNPACK's threadpool at `threads`."""

    def __init__(self, path: Path, target: EtTarget, threads: int) -> None:
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        self._from_numpy = torch.from_numpy
        torch.set_num_threads(threads)
        # XNNPACK inside ExecuTorch has its own threadpool sized to every core; without this reset it
        # ran with 2 threads while the other runtimes had 1 (and looked twice as fast).
        if portable_lib._threadpool_get_thread_count() != threads:
            portable_lib._unsafe_reset_threadpool(threads)
        if portable_lib._threadpool_get_thread_count() != threads:
            raise RuntimeError(f"ExecuTorch threadpool has {portable_lib._threadpool_get_thread_count()} threads, asked for {threads}")
        runtime = Runtime.get()
        if not runtime.backend_registry.is_available(target.backend_id):
            raise NotRunnableHere(
                f"{target.name}: this ExecuTorch runtime does not register {target.backend_id} "
                f"(registered: {runtime.backend_registry.registered_backend_names})"
            )
        self._method = runtime.load_program(Path(path)).load_method("forward")
        if self._method is None:
            raise RuntimeError(f"{path} has no `forward` method")

    def run(self, x: np.ndarray) -> np.ndarray:
        return self._method.execute([self._from_numpy(x)])[0].numpy()


class ExecuTorchFormat(Format):
    name = "executorch"
    title = "ExecuTorch"
    extension = ".pte"
    targets = _TARGETS
    default_targets = ("executorch-xnnpack", "executorch-vulkan")
    requires = {"executorch": "executorch==1.5.1"}
    tool_packages = ("torch", "executorch")
    export_cost = {"fp32": 15.0, "fp16": 14.0, "int8": 20.0}

    def target(self, name: str) -> EtTarget:
        return super().target(name)  # type: ignore[return-value]

    def export(self, req: ExportRequest) -> BackendResult:
        return export(req)

    def open(self, path: str | Path, target: str, threads: int = 1, accelerator: str | None = None) -> Session:
        spec = self.runnable(target)
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such .pte file: {path}")
        return ExecuTorchSession(Path(path), spec, threads)


FORMAT = ExecuTorchFormat()


def delegation_coverage(
    graph_module: torch.fx.GraphModule, backend_id: str, reasons: dict[str, str] | None = None
) -> Coverage:
    """Count what the lowered top-level graph hands to `backend_id` and what it leaves outside.

    Node totals come from ExecuTorch's own `get_delegation_info`; the non-delegated ops are listed
    by operator (not by node name) with the partitioner's reason where it logged one. Dtype casts
    that only convert the program's input or output (the fp16 XNNPACK program computes in fp16
    behind fp32 I/O) are reported apart: they are I/O plumbing, not a graph break.
    """
    from executorch.devtools.backend_debug import get_delegation_info

    reasons = reasons or {}
    info = get_delegation_info(graph_module)
    subgraphs: Counter[str] = Counter()
    delegated_by_op: Counter[str] = Counter()
    outside: Counter[str] = Counter()
    io_casts: list[str] = []
    why: dict[str, str] = {}
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and node.name.startswith("lowered_module_"):
            lowered = getattr(graph_module, node.name)
            subgraphs[lowered.backend_id] += 1
            for inner in lowered.original_module.graph.nodes:
                if inner.op == "call_function" and _op_name(inner.target) not in _PLUMBING:
                    delegated_by_op[_op_name(inner.target)] += 1
        if node.op != "call_function":
            continue
        name = _op_name(node.target)
        if name == "executorch_call_delegate" or name in _PLUMBING:
            continue
        if name in _CAST_OPS and _is_io_cast(node):
            io_casts.append(name)
            continue
        outside[name] += 1
        reason = reasons.get(node.name) or reasons.get("op:" + name)
        if reason:
            why.setdefault(name, reason)

    delegated = sum(delegated_by_op.values())
    compute_outside = sum(outside.values())
    own = subgraphs.get(backend_id, 0)
    return Coverage(
        tool="executorch.devtools.backend_debug.get_delegation_info",
        delegate=backend_id,
        supported_nodes=delegated,
        total_nodes=delegated + compute_outside,
        partitions=own,
        # the requirement for a mobile delegate: the whole graph is one subgraph of it
        full=own == 1 and compute_outside == 0 and len(subgraphs) == 1,
        unsupported=[
            f"{op} x{n}" + (f": {why[op]}" if op in why else "") for op, n in sorted(outside.items())
        ],
        detail={
            "delegate_subgraphs": dict(subgraphs),
            "delegated_by_op": dict(sorted(delegated_by_op.items())),
            "non_delegated_compute_by_op": dict(sorted(outside.items())),
            "io_casts": len(io_casts),
            "get_delegation_info": {
                "num_delegated_subgraphs": info.num_delegated_subgraphs,
                "num_delegated_nodes": info.num_delegated_nodes,
                "num_non_delegated_nodes": info.num_non_delegated_nodes,
            },
        },
    )


_STEP = {"to_edge_transform_and_lower": "convert.lower", "to_executorch": "convert.to_executorch"}


def _stage(name: str, fn):
    """Run one step of the flow (timed as a `convert.*` step); re-raise with the step's name and the tool's own message."""
    try:
        with step(_STEP.get(name, "convert.trace")):
            return fn()
    except Exception as e:  # noqa: BLE001 - every converter error must reach the status table
        raise RuntimeError(f"ExecuTorch {name} failed: {type(e).__name__}: {e}") from e


def _workarounds(target: str, precision: str) -> list:
    """The rewrite passes (export/passes) this target's lowering needs, each exact.

    decompose_gelu_tanh: XNNPACK's GeluVisitor drops gelu's `approximate="tanh"` (runs the erf GELU)
    and Vulkan's SqueezeUnsqueezeInputs pass crashes on it. decompose_group_norm (XNNPACK fp32):
    XNNPACK takes no GroupNorm and the portable kernel it falls back to is inaccurate (its module
    docstring); fp16 is left alone (d * d may overflow fp16 where the portable kernel accumulates
    in fp32), int8 too (the quantizer would annotate the new ops)."""
    from ..passes import decompose_gelu_tanh, decompose_group_norm

    passes = []
    if target in ("executorch-xnnpack", "executorch-vulkan"):
        passes.append(decompose_gelu_tanh)
    if target == "executorch-xnnpack" and precision == "fp32":
        passes.append(decompose_group_norm)
    return passes


def _rewritten(model: nn.Module, x: torch.Tensor, target: str, precision: str, notes: list[str]) -> nn.Module:
    """`model` after this target's workaround passes, on a copy; `model` itself when none matches
    (every other model's program stays the shared, memoised one)."""
    import torch

    from ..steps import memo, tag

    passes = _workarounds(target, precision)
    if not passes:
        return model

    def rewrite() -> tuple[nn.Module, list[tuple[str, int]]]:
        gm = model if isinstance(model, torch.fx.GraphModule) else torch.export.export(model, (x,)).module()
        todo = [p for p in passes if p.check(gm) is None]
        if not todo:
            return model, []
        gm = copy.deepcopy(gm)
        done = [(p.NAME, p.run(gm)) for p in todo]
        tag(gm)  # targets with the same passes share its traced program (export.steps.memo)
        return gm, done

    out, done = memo(model, ("workarounds", tuple(p.NAME for p in passes), tuple(x.shape)), rewrite)
    for name, n in done:
        notes.append(f"{name}: {n} site(s) rewritten (exact) for ExecuTorch's {target} delegate "
                     "(export/passes/" + name + ".py says why).")
    return out


def _fp16_compute(model: nn.Module) -> nn.Module:
    """fp32 in -> fp16 compute -> fp32 out, so the .pte keeps the same float32 I/O as every artifact."""
    from torch import nn

    class _Fp16Compute(nn.Module):
        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = copy.deepcopy(model).half()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x.half()).float()

    return _Fp16Compute(model)


def _exported_program(model: nn.Module, x: torch.Tensor, req: ExportRequest, notes: list[str]):
    import torch

    if req.target != "executorch-xnnpack" or req.precision == "fp32":
        # Vulkan fp16 and Core ML fp16/int8 are compile options of their delegates (see _partitioner):
        # one traced program for all of them (and Core ML's), copied for each lowering
        return exported_program(model, x)
    if req.precision == "fp16":
        notes.append("fp16: weights and compute in fp16 inside XNNPACK; the input/output stay float32 (one cast each).")
        return torch.export.export(_fp16_compute(model), (x,))
    return torch.export.export(_quantize_xnnpack(model, x, req.calibration, notes), (x,))


def _quantize_xnnpack(model: nn.Module, x: torch.Tensor, calibration: torch.Tensor | None, notes: list[str]) -> nn.Module:
    """PT2E static int8 (per-channel symmetric weights, per-tensor activations) with XNNPACK's quantizer."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    import torch
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    if calibration is None:
        gen = torch.Generator().manual_seed(0)
        calibration = torch.randn((8, *x.shape[1:]), generator=gen)
        notes.append("int8 calibrated on 8 random normal inputs (no calibration images given): accuracy is not representative.")
    else:
        notes.append(f"int8 calibrated on {len(calibration)} images.")
    notes.append("int8: static PT2E quantization (XNNPACKQuantizer, symmetric, per-channel weights, per-tensor activations).")
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (x,)).module(), quantizer)
    # one image at a time: the exported graph has a static batch of x.shape[0]
    for i in range(0, len(calibration), x.shape[0]):
        batch = calibration[i : i + x.shape[0]]
        if len(batch) == x.shape[0]:
            prepared(batch.to(x.dtype))
    return convert_pt2e(prepared)


def _partitioner(target: str, precision: str, notes: list[str]):
    if target == "executorch-xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        return XnnpackPartitioner()
    if target == "executorch-vulkan":
        from executorch.exir.dialects._ops import ops as exir_ops

        with _keep_root_log_level():
            from executorch.backends.vulkan.partitioner.vulkan_partitioner import VulkanPartitioner
        if precision == "fp16":
            notes.append("fp16: Vulkan `force_fp16` (fp16 GPU tensors); the .pte input/output stay float32.")
        # torch.roll decomposes to arange + index; a delegated arange breaks FuseBatchNormPass
        # ("fake mode doesn't match", pytorch/executorch#22309). Keeping arange on the CPU avoids it.
        return VulkanPartitioner(
            {"force_fp16": precision == "fp16"},
            operator_blocklist=[exir_ops.edge.aten.arange.start_step],
        )
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner

    quant = None
    if precision == "int8":
        # the same weight-only scheme as the standalone Core ML exporter (linear_quantize_weights)
        quant = {"mode": "linear_symmetric", "dtype": "int8", "granularity": "per_channel"}
        notes.append("int8: weight-only (Core ML linear_quantize_weights, symmetric per-channel); activations fp16.")
    notes.append(
        f"Core ML delegate: compute units ALL, minimum deployment target {COREML_DEPLOYMENT_TARGET}."
    )
    specs = CoreMLBackend.generate_compile_specs(
        compute_unit=ct.ComputeUnit.ALL,
        minimum_deployment_target=getattr(ct.target, COREML_DEPLOYMENT_TARGET),
        compute_precision=ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16,
        op_linear_quantizer_config=quant,
    )
    return CoreMLPartitioner(compile_specs=specs)


@contextlib.contextmanager
def _keep_root_log_level() -> Iterator[None]:
    # vulkan_partitioner sets the ROOT logger to INFO at import, which would flood every later log.
    root = logging.getLogger()
    level = root.level
    try:
        yield
    finally:
        root.setLevel(level)


class _SkipCollector(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        for pattern in _SKIP_PATTERNS:
            m = pattern.search(msg)
            if m:
                groups = m.groupdict()
                key = groups.get("node") or "op:" + _canonical_op(groups["op"])
                self.reasons.setdefault(key, m["reason"].strip())


@contextlib.contextmanager
def _capture_skip_reasons() -> Iterator[dict[str, str]]:
    """Collect the partitioners' "why this node was not delegated" log lines, by node name.

    XNNPACK and Core ML log them at DEBUG on their own loggers: those are lowered to DEBUG for the
    lowering only, with propagation off so the chatter is not printed. Vulkan logs at INFO on the
    root logger: the root goes to INFO (not lower, to keep every other library's debug out) while
    the root's existing handlers are raised to WARNING, so only the collector sees that chatter.
    """
    collector = _SkipCollector()
    saved = []
    root_handlers = [(h, h.level) for h in logging.getLogger().handlers]
    for h, level in root_handlers:
        h.setLevel(max(level, logging.WARNING))
    for name in _LOG_NAMES:
        log = logging.getLogger(name)
        saved.append((log, log.level, log.propagate))
        log.addHandler(collector)
        if name:
            log.setLevel(logging.DEBUG)
            log.propagate = False
        else:
            log.setLevel(logging.INFO)
    try:
        yield collector.reasons
    finally:
        for log, level, propagate in saved:
            log.removeHandler(collector)
            log.setLevel(level)
            log.propagate = propagate
        for h, level in root_handlers:
            h.setLevel(level)


def _op_name(target) -> str:
    name = getattr(target, "name", None)
    if callable(name):
        try:
            return name()
        except TypeError:
            pass
    if target is operator.getitem:
        return "getitem"
    return getattr(target, "__name__", str(target))


def _canonical_op(name: str) -> str:
    """`aten.mean.dim` (EdgeOpOverload.__name__) -> `aten::mean.dim` (OpOverload.name())."""
    if "::" in name:
        return name
    ns, _, rest = name.partition(".")
    return f"{ns}::{rest.removesuffix('.default')}"


def _is_io_cast(node: torch.fx.Node) -> bool:
    import torch

    src = node.args[0] if node.args else None
    feeds_output = any(user.op == "output" for user in node.users)
    return (isinstance(src, torch.fx.Node) and src.op == "placeholder") or feeds_output


def _layout(val) -> str:
    return "NC" if getattr(val, "ndim", 0) == 2 else "NCHW"
