"""Compute roofline for the host runner: achieved GFLOP/s and the fraction of a measured ceiling.

The ceiling is measured, not derived: the best fp32 matrix-multiply throughput of the installed
BLAS (torch.mm, MKL/OpenBLAS, 512x512, best of ~0.5 s) on the same number of threads the
benchmark used. That is what a convolution network could reach at best on this CPU, turbo clock
and all. The derived figure is kept as a note for comparison:

Derived peak fp32 FLOP/s = cores x clock x FMA pipes x 2 (multiply + add) x fp32 lanes per FMA, where
- lanes = datapath bits / 32; the datapath is 512 bits on Intel cores with AVX-512, 256 bits on
  AMD Zen 2-4 (Zen 4 executes AVX-512 on 256-bit pipes) and on AVX2-only cores, 128 bits otherwise;
- FMA pipes = 2 on every current x86 server core (1 where there is no FMA at all);
- clock = the "cpu MHz" /proc/cpuinfo reports (under a hypervisor, the nominal clock: a boosting
  core exceeds it, which is why the derived figure is only a note);
- cores = the threads the measurement used (the host runner uses 1 by default).
Achieved FLOP/s = 2 x MACs / median latency (MACs from torch.utils.flop_counter, as in the
manifest). Element-wise work is not counted, so the fraction is a lower bound of utilisation.
A fraction above 1 is possible only when the ceiling run was slowed (a shared or throttled CPU);
the report marks it with `ABOVE_CEILING` instead of showing the bare number.
"""

from __future__ import annotations

import functools
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuPeak:
    """The nominal-clock peak derived from CPU flags (a note next to the measured ceiling)."""

    model: str
    clock_ghz: float | None
    datapath_bits: int
    fma_pipes: int
    flops_per_cycle: int  # per core, fp32
    cores: int

    def peak_gflops(self, threads: int = 1) -> float | None:
        if self.clock_ghz is None:
            return None
        return self.clock_ghz * self.flops_per_cycle * min(threads, self.cores)

    def describe(self, threads: int = 1) -> str:
        peak = self.peak_gflops(threads)
        return (
            f"{self.model}: {self.datapath_bits}-bit FMA datapath x {self.fma_pipes} pipes = {self.flops_per_cycle} fp32 "
            f"FLOP/cycle/core at {self.clock_ghz or '?'} GHz -> "
            + (f"{peak:.0f} GFLOP/s on {min(threads, self.cores)} core(s)" if peak else "unknown (no clock)")
        )


@dataclass(frozen=True)
class Ceiling:
    """The measured fp32 GEMM ceiling of this host on `threads` threads."""

    gflops: float
    threads: int
    method: str  # e.g. "torch.mm 512x512 fp32 (mkl), best of 130 runs"
    derived: CpuPeak

    def describe(self) -> str:
        derived = self.derived.peak_gflops(self.threads)
        note = (f"; the nominal-clock figure would be {derived:.0f} GFLOP/s ({self.derived.describe(self.threads)})"
                if derived else "; no nominal clock known to compare with")
        return f"measured ceiling {self.gflops:.0f} GFLOP/s on {self.threads} thread(s): {self.method}{note}"


# Shown next to any fraction above 1 (the value is never shown bare).
ABOVE_CEILING = "above the measured GEMM ceiling: the ceiling run was slowed (shared or throttled CPU)"


def _cpuinfo() -> dict[str, str]:
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if ":" in line:
                k, v = (s.strip() for s in line.split(":", 1))
                info.setdefault(k, v)
    except OSError:
        pass
    return info


def detect(cpuinfo: dict[str, str] | None = None) -> CpuPeak:
    info = _cpuinfo() if cpuinfo is None else cpuinfo
    flags = set(info.get("flags", "").split())
    vendor, family = info.get("vendor_id", ""), int(info.get("cpu family", "0") or 0)
    if "avx512f" in flags and not (vendor == "AuthenticAMD" and family <= 0x19):
        bits = 512
    elif "avx2" in flags or "avx" in flags:
        bits = 256
    else:
        bits = 128
    pipes = 2 if "fma" in flags else 1
    fma = 2 if "fma" in flags else 1  # an FMA counts as two FLOPs; without FMA, mul and add pipes
    try:
        clock = float(info["cpu MHz"]) / 1000
    except (KeyError, ValueError):
        clock = None
    clock = round(clock, 3) if clock else None
    return CpuPeak(info.get("model name", platform.processor() or "unknown CPU"), clock, bits, pipes,
                   pipes * fma * bits // 32, os.cpu_count() or 1)


@functools.cache
def measure_ceiling(threads: int = 1, *, n: int = 512, seconds: float = 0.5) -> Ceiling:
    """Best fp32 GEMM throughput of the installed BLAS on `threads` threads (cached per process:
    one compare run measures once, ~`seconds` s)."""
    import torch

    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a, b = torch.randn(n, n, generator=gen), torch.randn(n, n, generator=gen)
        c = torch.empty(n, n)
        for _ in range(3):  # page in, let the BLAS pick its kernels
            torch.mm(a, b, out=c)
        best, runs, end = float("inf"), 0, time.perf_counter() + seconds
        while time.perf_counter() < end or runs < 5:
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
            runs += 1
    finally:
        torch.set_num_threads(before)
    blas = "mkl" if torch.backends.mkl.is_available() else "the bundled BLAS"
    return Ceiling(2 * n**3 / best / 1e9, threads, f"torch.mm {n}x{n} fp32 ({blas}), best of {runs} runs", detect())


def achieved_gflops(macs: int | None, median_ms: float | None) -> float | None:
    if not macs or not median_ms:
        return None
    return 2 * macs / (median_ms / 1e3) / 1e9


def fraction_of_peak(macs: int | None, median_ms: float | None, peak: CpuPeak | Ceiling, threads: int = 1) -> float | None:
    """Achieved / ceiling (a measured `Ceiling`, or the derived `CpuPeak` on `threads` cores)."""
    got = achieved_gflops(macs, median_ms)
    top = peak.gflops if isinstance(peak, Ceiling) else peak.peak_gflops(threads)
    return None if got is None or not top else got / top
