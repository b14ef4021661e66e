"""Runtime anomalies: a model that runs far below its own efficiency elsewhere, and the op to blame.

Efficiency is achieved GFLOP/s (2 x MACs / median latency). A model's efficiency on a runtime is
compared with the same model on its best runtime of the same device: a ratio below
`ANOMALY_THRESHOLD` means the runtime, not the model, sets the speed (StarNet-S4 at 61 GFLOP/s on
XNNPACK against 202 on ONNX Runtime on this x86 host), so a latency ratio against that model is a
statement about the runtime. The op responsible is found by a per-op profile of the artifact in the
affected runtime and in the best one (each host runtime's `profile_ops`, device_bench/runtimes) — ONNX Runtime's profiler, ExecuTorch's ETDump (XNNPACK emits
one event per XNNPACK operator), and for LiteRT, which has no profiler in its Python package, each
op of the .tflite cut out into a one-op model (same tensors, same weights) and timed through the
interpreter's default XNNPACK delegate. Op labels are shared across runtimes ("depthwise Conv 7x7",
"Conv 1x1", "Add", ...) so that the blamed op is the one with the largest excess time over the
best runtime. `benchmarks/bench_ops.py` then times that op alone on every host runtime.
"""

from __future__ import annotations

import re
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
# op labels shared by the per-op profilers (each host runtime's `profile_ops`, device_bench/runtimes)


def conv_label(depthwise: bool, kernel: Iterable[int]) -> str:
    return f"{'depthwise Conv' if depthwise else 'Conv'} {'x'.join(str(int(k)) for k in kernel)}"


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
                out.append(conv_label(group > 1 and group == w[0] and w[1] == 1, w[2:]))
    return out


def profiling_runtime(report_name: str):
    """The host runtime (device_bench.runtimes) that profiles ops for reports named `report_name`,
    or None when no host runtime of that name has a per-op profiler."""
    from .runtimes import RUNTIMES

    return next((rt for rt in RUNTIMES.values() if rt.report_name == report_name and rt.op_profiler), None)


def bundle_locator(bundle: Path, runs: int = 20) -> Locate:
    """A `locate` for `anomalies`: profiles the bundle's fp32 artifacts of the affected runtime and
    of the best runtime (each profile computed once) and blames the op with the largest excess."""
    from export.manifest import Manifest

    manifest = Manifest.load(Path(bundle) / "manifest.json")
    cache: dict[tuple[str, str], OpProfile | None] = {}

    def profile(model: str, runtime: str) -> OpProfile | None:
        if (model, runtime) not in cache:
            cache[(model, runtime)] = None
            rt = profiling_runtime(runtime)
            if rt is not None:
                a = next((a for a in manifest.artifacts if a.model == model and a.format == rt.format and a.precision == "fp32" and a.status == "ok"), None)
                if a is not None:
                    x = np.fromfile(Path(bundle) / a.reference.input_file, dtype="<f4").reshape(a.inputs[0].shape)
                    onnx_art = next((o for o in manifest.artifacts if o.model == model and o.format == "onnx" and o.status == "ok"), None)
                    cache[(model, runtime)] = rt.profile_ops(Path(bundle) / a.file, x, runs,
                                                             onnx_file=Path(bundle) / onnx_art.file if onnx_art else None)
        return cache[(model, runtime)]

    def locate(model: str, runtime: str, best: str) -> Blame | None:
        affected = profile(model, runtime)
        if affected is None:
            return None
        return blame(affected, profile(model, best), profiling_runtime(runtime).op_profiler)

    return locate
