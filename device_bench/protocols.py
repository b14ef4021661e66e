"""Measurement protocols: how `freenet compare` measures, as data, so every number says which one.

A protocol fixes the runtimes, the thread count, warm-up and the number of timed runs. "host" is
this project's own (every host runtime, one thread, rounds interleaved across models). "starnet"
is the protocol behind StarNet's published latencies, which FreeNet's claims are measured against
(StarNet paper §4.2, supplementary A.3, its repo's `imagenet/benchmark_onnx.py`): PyTorch -> ONNX,
ONNX Runtime, batch 1, fp32, 50 warm-ups then 500 runs; the CPU EP with 4 threads (a Xeon
E5-2680 v4) and the CUDA EP with exhaustive cuDNN search (a P100). Where this machine lacks what a
protocol asks for, `resolve` says exactly what was changed or left out, and the report prints it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    source: str
    runtimes: tuple[str, ...]
    threads: int
    warmup: int
    rounds: int
    runs_per_round: int
    deviations: tuple[str, ...] = ()  # what we knowingly do differently from the source, always printed


@dataclass
class Resolved:
    """A protocol as it runs on this machine."""

    protocol: Protocol
    runtimes: list[str]
    threads: int
    notes: list[str] = field(default_factory=list)  # capped threads, runtimes left out, deviations

    def describe(self) -> str:
        p = self.protocol
        runs = p.rounds * p.runs_per_round
        head = (f"{p.title}: {', '.join(self.runtimes) or 'no runtime'}, {self.threads} thread(s), batch 1, fp32, "
                f"{p.warmup} warm-ups, {runs} timed runs ({p.rounds} interleaved rounds x {p.runs_per_round})")
        return head + "".join(f"; {n}" for n in self.notes)


PROTOCOLS: dict[str, Protocol] = {
    "host": Protocol(
        name="host", title="host protocol (this project's)", source="docs/device_bench.md",
        runtimes=("onnxruntime", "litert", "executorch", "pytorch"), threads=1, warmup=10, rounds=5, runs_per_round=10,
    ),
    "starnet": Protocol(
        name="starnet", title="StarNet's protocol (§4.2, supp. A.3, imagenet/benchmark_onnx.py)",
        source="StarNet (CVPR 2024): ONNX Runtime CPU EP, 4 threads, Xeon E5-2680 v4; CUDA EP, exhaustive cuDNN search, P100",
        runtimes=("onnxruntime", "onnxruntime-cuda"), threads=4, warmup=50, rounds=10, runs_per_round=50,
        deviations=(
            "medians with intervals from 500 raw samples (StarNet reports their mean; the mean is in every stored report)",
            "pointwise convolutions are kept for the GPU run (StarNet swapped them for permute + Linear there, "
            "'marginally faster'): the same .onnx graph runs on every runtime",
        ),
    ),
}


def resolve(name: str, cores: int | None = None, cuda: bool | None = None) -> Resolved:
    """`name` on this machine: threads capped at the cores present, the CUDA runtime only where
    onnxruntime has the CUDA EP. Raises ValueError for an unknown protocol."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; valid: {list(PROTOCOLS)}")
    p = PROTOCOLS[name]
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    notes: list[str] = []
    threads = min(p.threads, cores)
    if threads < p.threads:
        notes.append(f"{p.threads} threads asked, {threads} used: this machine has {cores} core(s)")
    runtimes = list(p.runtimes)
    if "onnxruntime-cuda" in runtimes:
        if cuda is None:
            import onnxruntime as ort

            cuda = "CUDAExecutionProvider" in ort.get_available_providers()
        if not cuda:
            runtimes.remove("onnxruntime-cuda")
            notes.append("ONNX Runtime CUDA EP not measured: no CUDA GPU / onnxruntime-gpu on this machine")
    notes.extend(p.deviations)
    return Resolved(p, runtimes, threads, notes)
