"""Compute roofline for the host runner: achieved GFLOP/s and the fraction of this CPU's peak.

Peak fp32 FLOP/s = cores x clock x FMA pipes x 2 (multiply + add) x fp32 lanes per FMA, where
- lanes = datapath bits / 32; the datapath is 512 bits on Intel cores with AVX-512, 256 bits on
  AMD Zen 2-4 (Zen 4 executes AVX-512 on 256-bit pipes) and on AVX2-only cores, 128 bits otherwise;
- FMA pipes = 2 on every current x86 server core (1 where there is no FMA at all);
- clock = the "cpu MHz" /proc/cpuinfo reports (under a hypervisor, the nominal clock: a boosting
  core can exceed the computed peak, so a fraction above 1 means "clock unknown", not magic);
- cores = the threads the measurement used (the host runner uses 1 by default).
Achieved FLOP/s = 2 x MACs / median latency (MACs from torch.utils.flop_counter, as in the
manifest). Element-wise work is not counted, so the fraction is a lower bound of utilisation.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CpuPeak:
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
            f"FLOP/cycle/core at {self.clock_ghz or '?'} GHz -> peak "
            + (f"{peak:.0f} GFLOP/s on {min(threads, self.cores)} core(s)" if peak else "unknown (no clock)")
        )


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


def achieved_gflops(macs: int | None, median_ms: float | None) -> float | None:
    if not macs or not median_ms:
        return None
    return 2 * macs / (median_ms / 1e3) / 1e9


def fraction_of_peak(macs: int | None, median_ms: float | None, peak: CpuPeak, threads: int = 1) -> float | None:
    got, top = achieved_gflops(macs, median_ms), peak.peak_gflops(threads)
    return None if got is None or not top else got / top
