"""Measurement protocols: how `freenet compare` measures, as data, so every number says which one.

A protocol fixes the runtimes, the thread count, warm-up and the number of timed runs, and over how
many fresh worker processes they are split (issue 14: intervals come from between-process
variation; warm-up and rounds are per process). "host" is this project's own (every host runtime,
one thread, 3 processes of 2 rounds interleaved across models). "starnet"
is the protocol behind StarNet's published latencies, which FreeNet's claims are measured against
(StarNet paper §4.2, supplementary A.3, its repo's `imagenet/benchmark_onnx.py`): PyTorch -> ONNX,
ONNX Runtime, batch 1, fp32, 50 warm-ups then 500 runs; the CPU EP with 4 threads (a Xeon
E5-2680 v4) and the CUDA EP with exhaustive cuDNN search (a P100). Where this machine lacks what a
protocol asks for, `resolve` says exactly what was changed or left out, and the report prints it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Protocol:
    name: str
    title: str
    source: str
    runtimes: tuple[str, ...]
    threads: int
    warmup: int  # per process
    rounds: int  # per process
    runs_per_round: int
    deviations: tuple[str, ...] = ()  # what we knowingly do differently from the source, always printed
    processes: int = 1  # fresh worker processes per artifact, one report each

    @property
    def total_runs(self) -> int:
        return self.processes * self.rounds * self.runs_per_round

    def split(self, processes: int) -> Protocol:
        """The same number of timed runs in total, over `processes` fresh processes (rounds of
        `runs_per_round` each where that divides, else one round per process). ValueError when
        the total does not split evenly."""
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        total = self.total_runs
        if total % processes:
            raise ValueError(f"{self.name}: {total} timed runs do not split evenly over {processes} processes "
                             f"(choose a divisor of {total})")
        per = total // processes
        rounds, runs = (per // self.runs_per_round, self.runs_per_round) if per % self.runs_per_round == 0 else (1, per)
        return replace(self, processes=processes, rounds=rounds, runs_per_round=runs)


@dataclass
class Resolved:
    """A protocol as it runs on this machine."""

    protocol: Protocol
    runtimes: list[str]
    threads: int
    notes: list[str] = field(default_factory=list)  # capped threads, runtimes left out, deviations

    def describe(self) -> str:
        p = self.protocol
        how = (f"{p.processes} fresh processes of {p.rounds} interleaved rounds x {p.runs_per_round}, warm-ups in each"
               if p.processes > 1 else f"{p.rounds} interleaved rounds x {p.runs_per_round}")
        head = (f"{p.title}: {', '.join(self.runtimes) or 'no runtime'}, {self.threads} thread(s), batch 1, fp32, "
                f"{p.warmup} warm-ups, {p.total_runs} timed runs ({how})")
        return head + "".join(f"; {n}" for n in self.notes)


PROTOCOLS: dict[str, Protocol] = {
    "host": Protocol(
        name="host", title="host protocol (this project's)", source="docs/device_bench.md",
        runtimes=("onnxruntime", "litert", "executorch", "pytorch"), threads=1, warmup=10, rounds=2, runs_per_round=10,
        # 5 processes: with 3, the 95 % next-run interval covered a repeat's ratio 91.7 % of the time in
        # the seeded simulation of test_stats_runs.py and a quiet three-run set missed 4 of 24 checks
        # (eager by up to 1.5 %); with 5, 96.7 % and 0 of 24 (docs/device_bench.md). Each extra
        # process reloads every artifact: the measuring part costs 5/3 of what it did at 3.
        processes=5,
    ),
    "starnet": Protocol(
        name="starnet", title="StarNet's protocol (§4.2, supp. A.3, imagenet/benchmark_onnx.py)",
        source="StarNet (CVPR 2024): ONNX Runtime CPU EP, 4 threads, Xeon E5-2680 v4; CUDA EP, exhaustive cuDNN search, P100",
        # StarNet's 500 runs, split over 5 fresh processes of 2 rounds x 50 (50 warm-ups in each)
        runtimes=("onnxruntime", "onnxruntime-cuda"), threads=4, warmup=50, rounds=2, runs_per_round=50, processes=5,
        deviations=(
            "the 500 runs are split over fresh worker processes (StarNet timed them in one): the interval "
            "comes from between-process variation, each process warmed up alike",
            "medians with intervals from 500 raw samples (StarNet reports their mean; the mean is in every stored report)",
            "pointwise convolutions are kept for the GPU run (StarNet swapped them for permute + Linear there, "
            "'marginally faster'): the same .onnx graph runs on every runtime",
        ),
    ),
}


def resolve(name: str, cores: int | None = None, cuda: bool | None = None, processes: int | None = None) -> Resolved:
    """`name` on this machine: threads capped at the cores present, the CUDA runtime only where
    onnxruntime has the CUDA EP; `processes` re-splits the protocol's total timed runs
    (`Protocol.split`). Raises ValueError for an unknown protocol or an uneven split."""
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}; valid: {list(PROTOCOLS)}")
    p = PROTOCOLS[name]
    if processes is not None and processes != p.processes:
        p = p.split(processes)
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
