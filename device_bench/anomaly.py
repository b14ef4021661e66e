"""Runtime anomalies: a model that runs far below its own efficiency elsewhere, and the op to blame.

Efficiency is achieved GFLOP/s (2 x MACs / median latency). A model's efficiency on a runtime is
compared with the same model on its best runtime of the same device: a ratio below
`ANOMALY_THRESHOLD` means the runtime, not the model, sets the speed (StarNet-S4 at 61 GFLOP/s on
XNNPACK against 202 on ONNX Runtime on this x86 host), so a latency ratio against that model is a
statement about the runtime. The op responsible is found by a per-op profile of the artifact in the
affected runtime and in the best one — ONNX Runtime's profiler, ExecuTorch's ETDump (XNNPACK emits
one event per XNNPACK operator), and for LiteRT, which has no profiler in its Python package, each
op of the .tflite cut out into a one-op model (same tensors, same weights) and timed through the
interpreter's default XNNPACK delegate. Op labels are shared across runtimes ("depthwise Conv 7x7",
"Conv 1x1", "Add", ...) so that the blamed op is the one with the largest excess time over the
best runtime. `benchmarks/bench_ops.py` then times that op alone on every host runtime.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# A model on a runtime below half the GFLOP/s it reaches on its best runtime (more than 2x slower
# than it runs elsewhere on the same CPU) is an anomaly. Runtimes of one CPU normally sit within 2x
# of each other on the same graph (eager PyTorch vs ONNX Runtime 0.58-0.62 in the quiet repeat runs,
# benchmarks/results/issue14_repeat_quiet.txt). It was 0.4, set from runs under load 10 where the
# 7x7 depthwise gap of XNNPACK on x86 read ~0.3; quiet, StarNet-S4 on both XNNPACK runtimes reads
# 0.41 (53 ms against 21.7 on ONNX Runtime) and 0.4 missed it.
ANOMALY_THRESHOLD = 0.5

OpProfile = dict[str, float]  # op label -> ms per inference (summed over the op's nodes)


@dataclass(frozen=True)
class Row:
    """One measured model on one runtime (a headline or per-runtime table row)."""

    model: str
    runtime: str
    macs: int
    median_ms: float


@dataclass(frozen=True)
class Blame:
    op: str
    ms: float  # on the affected runtime
    ms_best: float | None  # the same op label on the best runtime (None when it has no such op)
    profiler: str


@dataclass(frozen=True)
class Anomaly:
    model: str
    runtime: str
    efficiency: float  # GFLOP/s here
    best_runtime: str
    best_efficiency: float
    relative: float  # efficiency / best_efficiency (< threshold)
    op: str | None = None
    op_ms: float | None = None
    op_ms_best: float | None = None
    profiler: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        text = (f"{self.model} on {self.runtime}: {self.efficiency:.0f} GFLOP/s, {self.relative:.2f}x of its "
                f"{self.best_efficiency:.0f} on {self.best_runtime}")
        if self.op:
            best = f" vs {self.op_ms_best:.2f} ms there" if self.op_ms_best is not None else ""
            ms = f" takes {self.op_ms:.2f} ms{best}" if self.op_ms is not None else ""
            text += f"; op: {self.op}{ms}" + (f" ({self.profiler})" if self.profiler else "")
        return text


def efficiency(macs: int, median_ms: float) -> float:
    """Achieved GFLOP/s: 2 FLOPs per MAC over the median latency."""
    return 2 * macs / (median_ms * 1e-3) / 1e9


Locate = Callable[[str, str, str], Blame | None]  # (model, affected runtime, best runtime) -> blame


def anomalies(rows: Iterable[Row], *, threshold: float = ANOMALY_THRESHOLD, locate: Locate | None = None) -> list[Anomaly]:
    """Every (model, runtime) whose efficiency is below `threshold` x the same model's best.

    Rows must come from one device and one precision. `locate` names the op (see
    `bundle_locator`); without it `op` is None. A model measured on one runtime has no reference.
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    by_model: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        if r.macs and r.median_ms and r.median_ms > 0:
            by_model[r.model].append(r)
    out = []
    for model, rs in by_model.items():
        eff = {r.runtime: efficiency(r.macs, r.median_ms) for r in rs}
        best = max(eff, key=eff.get)
        for rt, e in eff.items():
            rel = e / eff[best]
            if rel < threshold:
                blame = locate(model, rt, best) if locate else None
                out.append(Anomaly(model, rt, e, best, eff[best], rel, *(
                    (blame.op, blame.ms, blame.ms_best, blame.profiler) if blame else ())))
    return sorted(out, key=lambda a: a.relative)


def hardware(accelerator: str) -> str:
    """What a runtime's efficiency is compared against: the CPU runtimes (cpu, xnnpack, wasm,
    portable) with each other, a GPU accelerator only with itself."""
    from .schema import CPU_ACCELERATORS

    return "cpu" if accelerator in CPU_ACCELERATORS else accelerator


def table_anomalies(groups: Iterable[Any], *, threshold: float = ANOMALY_THRESHOLD) -> dict[tuple, list[Anomaly]]:
    """The runtime anomalies of summary tables (device_bench.summary.Group), no op named:
    every comparable row's GFLOP/s against the same model's best runtime on the same device,
    hardware and precision. Keyed by (device, hardware(accelerator), precision). The dashboard
    shows them as they are; the `freenet compare` report names the op (compare._anomalies)."""
    rows: dict[tuple, list[Row]] = defaultdict(list)
    for g in groups:
        for r in g.rows:
            if r.comparable and r.macs and r.stats.median:
                rows[(g.device, hardware(g.accelerator), r.precision)].append(Row(r.model, g.runtime, r.macs, float(r.stats.median)))
    return {key: anomalies(rs, threshold=threshold) for key, rs in rows.items()}


def blame(affected: OpProfile, best: OpProfile | None, profiler: str) -> Blame | None:
    """The op label with the largest excess time over the best runtime (or the largest time when
    the best runtime has no profile). A coarse label ("depthwise Conv", from XNNPACK's event names)
    is matched with the best runtime's refined one ("depthwise Conv 7x7") when that is unique among
    the labels the affected profile does not have itself."""
    if not affected:
        return None
    best = best or {}

    def match(label: str) -> tuple[str, float | None]:
        if label in best:
            return label, best[label]
        refined = [k for k in best if k.startswith(label + " ") and k not in affected]
        return (refined[0], best[refined[0]]) if len(refined) == 1 else (label, None)

    scored = []
    for label, ms in affected.items():
        name, ms_best = match(label)
        scored.append((ms - (ms_best or 0.0), name, ms, ms_best))
    _, name, ms, ms_best = max(scored)
    return Blame(name, ms, ms_best, profiler)


# ---------------------------------------------------------------------------------------------
# per-op profilers (one artifact, one thread, the bundle's reference input)


def _conv_label(depthwise: bool, kernel: Iterable[int]) -> str:
    return f"{'depthwise Conv' if depthwise else 'Conv'} {'x'.join(str(int(k)) for k in kernel)}"


def _ort_label(args: dict) -> str:
    """Label a profiled ORT kernel from its input shapes: layout transforms rename and fuse nodes
    (conv2d_2_nchwc, FusedConv), but a Conv's weight [O, I/group, kh, kw] says what it is."""
    op = args.get("op_name", "?")
    shapes = [next(iter(t.values())) for t in args.get("input_type_shape", [])]
    if op in ("Conv", "FusedConv") and len(shapes) >= 2 and len(shapes[1]) == 4:
        w, c_in = shapes[1], shapes[0][1] if len(shapes[0]) > 1 else None
        return _conv_label(w[1] == 1 and w[0] == c_in and c_in > 1, w[2:])
    return op


def profile_onnx(path: Path, x: np.ndarray, runs: int = 20) -> OpProfile:
    """ONNX Runtime's profiler (SessionOptions.enable_profiling): kernel time per node, labelled."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    so.enable_profiling = True
    with tempfile.TemporaryDirectory() as tmp:
        so.profile_file_prefix = str(Path(tmp) / "ort")
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        for _ in range(runs):
            sess.run(None, {name: x})
        events = json.loads(Path(sess.end_profiling()).read_text())
    out: OpProfile = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            out[_ort_label(e["args"])] += e["dur"] / runs / 1e3
    return dict(out)


def _xnnpack_label(event: str) -> str:
    """ExecuTorch XNNPACK event names ("Fully Connected (NC, F32) GEMM #3") -> shared labels."""
    name = re.sub(r"\s*#\d+$", "", event)
    if name.startswith("Convolution"):
        return "depthwise Conv" if "DWConv" in name else "Conv"
    if name.startswith("Fully Connected"):
        return "Conv 1x1"  # pointwise convolutions are lowered to GEMMs (NHWC)
    return name.split(" (")[0]


def onnx_conv_labels(path: Path) -> list[str]:
    """Labels of an ONNX graph's non-pointwise Conv nodes in graph (topological) order: XNNPACK
    runs these as "Convolution" operators in the same order (1x1 ones become GEMMs), and its event
    names do not say the kernel — nor that a 7x7 depthwise conv went to the generic IGEMM path."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: list(i.dims) for i in g.initializer}
    out = []
    for n in g.node:
        if n.op_type == "Conv" and len(n.input) > 1 and n.input[1] in inits:
            w = inits[n.input[1]]
            group = next((a.i for a in n.attribute if a.name == "group"), 1)
            if list(w[2:]) != [1, 1]:
                out.append(_conv_label(group > 1 and group == w[0] and w[1] == 1, w[2:]))
    return out


def profile_executorch(path: Path, x: np.ndarray, runs: int = 20, conv_labels: list[str] | None = None) -> OpProfile:
    """ExecuTorch's ETDump (Program enable_etdump) read with devtools' Inspector: the XNNPACK
    delegate reports one event per XNNPACK operator; medians per event, summed per label.
    `conv_labels` (from `onnx_conv_labels` of the same model) names the Convolution events in
    order when their count matches; otherwise they stay "Conv"/"depthwise Conv"."""
    import warnings

    import torch
    from executorch.devtools import Inspector
    from executorch.extension.pybindings import portable_lib
    from executorch.runtime import Runtime

    portable_lib._unsafe_reset_threadpool(1)
    prog = Runtime.get().load_program(str(path), enable_etdump=True)
    method = prog.load_method("forward")
    t = torch.from_numpy(x)
    for _ in range(runs):
        method.execute([t])
    with tempfile.TemporaryDirectory() as tmp:
        etdump = Path(tmp) / "run.etdp"
        prog.write_etdump_result_to_file(str(etdump), str(Path(tmp) / "debug.bin"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = Inspector(etdump_path=str(etdump)).to_dataframe()
    events = [(n, float(np.median(r))) for n, r, d in zip(df["event_name"], df["raw"], df["is_delegated_op"]) if d and len(r)
              and n != "DELEGATE_CALL"]  # DELEGATE_CALL wraps the whole XNNPACK subgraph
    convs = [i for i, (n, _) in enumerate(events) if n.startswith("Convolution")]
    names = {i: lab for i, lab in zip(convs, conv_labels)} if conv_labels and len(conv_labels) == len(convs) else {}
    out: OpProfile = defaultdict(float)
    for i, (n, ms) in enumerate(events):
        out[names.get(i) or _xnnpack_label(n)] += ms
    return dict(out)


def _tflite_label(model, op) -> str:
    from ai_edge_litert.tools import flatbuffer_utils as fb

    name = fb.opcode_to_name(model, op.opcodeIndex) or "?"
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = model.subgraphs[0].tensors[op.inputs[1]].shape  # OHWI / 1HWC
        return _conv_label(name == "DEPTHWISE_CONV_2D", list(w[1:3]))
    if name == "FULLY_CONNECTED":
        return "Conv 1x1"
    return name.replace("_", " ").title().replace(" ", "")


def profile_litert(path: Path, x: np.ndarray | None = None, runs: int = 20) -> OpProfile:
    """Per-op profile of a .tflite through LiteRT's interpreter and its default XNNPACK delegate:
    every op cut out into a one-op model (its own tensors and weights), timed alone (median of
    `runs`), summed per label. Isolation drops cross-op cache reuse, so the sum exceeds the
    whole-model latency somewhat; the ranking of op types is what is used."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model(str(path))
    sg = model.subgraphs[0]
    ops, inputs, outputs = sg.operators, sg.inputs, sg.outputs
    const = {i for i, t in enumerate(sg.tensors) if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)}
    out: OpProfile = defaultdict(float)
    rng = np.random.default_rng(0)
    try:
        for op in ops:
            sg.operators = [op]
            sg.inputs = [int(i) for i in op.inputs if i >= 0 and int(i) not in const]
            sg.outputs = [int(i) for i in op.outputs]
            it = Interpreter(model_content=bytes(fb.convert_object_to_bytearray(model)), num_threads=1)
            it.allocate_tensors()
            for d in it.get_input_details():
                it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
            it.invoke()
            times = []
            for _ in range(runs):
                t0 = time.perf_counter()
                it.invoke()
                times.append(time.perf_counter() - t0)
            out[_tflite_label(model, op)] += float(np.median(times)) * 1e3
    finally:
        sg.operators, sg.inputs, sg.outputs = ops, inputs, outputs
    return dict(out)


PROFILERS: dict[str, tuple[str, Callable[[Path, np.ndarray, int], OpProfile], str]] = {
    # runtime -> (manifest format, profiler, what it is)
    "onnxruntime": ("onnx", profile_onnx, "ONNX Runtime profiler"),
    "executorch": ("executorch", profile_executorch, "ExecuTorch ETDump"),
    "litert": ("tflite", profile_litert, "LiteRT one-op profile, XNNPACK delegate"),
}


def bundle_locator(bundle: Path, runs: int = 20) -> Locate:
    """A `locate` for `anomalies`: profiles the bundle's fp32 artifacts of the affected runtime and
    of the best runtime (each profile computed once) and blames the op with the largest excess."""
    from export.manifest import Manifest

    manifest = Manifest.load(Path(bundle) / "manifest.json")
    cache: dict[tuple[str, str], OpProfile | None] = {}

    def profile(model: str, runtime: str) -> OpProfile | None:
        if (model, runtime) not in cache:
            cache[(model, runtime)] = None
            if runtime in PROFILERS:
                fmt, fn, _ = PROFILERS[runtime]
                a = next((a for a in manifest.artifacts if a.model == model and a.format == fmt and a.precision == "fp32" and a.status == "ok"), None)
                if a is not None:
                    x = np.fromfile(Path(bundle) / a.reference.input_file, dtype="<f4").reshape(a.inputs[0].shape)
                    kw = {}
                    onnx_art = next((o for o in manifest.artifacts if o.model == model and o.format == "onnx" and o.status == "ok"), None)
                    if runtime == "executorch" and onnx_art is not None:
                        kw["conv_labels"] = onnx_conv_labels(Path(bundle) / onnx_art.file)
                    cache[(model, runtime)] = fn(Path(bundle) / a.file, x, runs, **kw)
        return cache[(model, runtime)]

    def locate(model: str, runtime: str, best: str) -> Blame | None:
        affected = profile(model, runtime)
        if affected is None:
            return None
        return blame(affected, profile(model, best), PROFILERS[runtime][2])

    return locate
