"""Eager PyTorch CPU latency of FreeNet S1-S4 vs StarNet S1-S4 vs the MobileNets, side by side.

Batch 1, 224x224, random weights, one process: every model is warmed up, then the models are
interleaved round by round (shuffled order each round, fixed seed) so that machine drift hits all of
them alike. Statistics come from device_bench.stats (medians, p10/p90, bootstrap ratio interval).
If FreeNet-S2 is not faster than StarNet-S4, `--profile` (on by default) prints where the time goes,
per op, for both.

    python benchmarks/bench_models.py [--rounds 20] [--runs 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

import freenet  # noqa: F401  (registers models; torchvision workaround)
from device_bench.stats import compare, fmt, fmt_ratio, summarize
from freenet import create_model
from freenet.profile import count_macs, count_params

SUITE = [
    "freenet_s1", "freenet_s2", "freenet_s3", "freenet_s4",
    "starnet_s1", "starnet_s2", "starnet_s3", "starnet_s4",
    "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "mobilenetv4_conv_small",
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=SUITE)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5, help="timed runs per model per round")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    models = {n: create_model(n) for n in args.models}
    info = {n: (count_params(m), count_macs(m, (3, args.size, args.size))) for n, m in models.items()}
    samples: dict[str, list[float]] = {n: [] for n in models}
    rng = random.Random(0)
    with torch.inference_mode():
        for n, m in models.items():
            for _ in range(args.warmup):
                m(x)
        for r in range(args.rounds):
            order = list(models)
            rng.shuffle(order)
            for n in order:
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    models[n](x)
                    samples[n].append((time.perf_counter() - t0) * 1e3)
            print(f"\rround {r + 1}/{args.rounds}", end="", flush=True)
    print()
    print(f"eager PyTorch {torch.__version__}, CPU, {args.threads} thread(s), batch 1, {args.size}x{args.size}, "
          f"{args.rounds} rounds x {args.runs} runs, interleaved")
    print(f"{'model':24s} {'params M':>9s} {'GMACs':>7s} {'median ms':>10s} {'p10':>8s} {'p90':>8s} {'cv':>6s} {'GMAC/s':>7s}")
    for n in models:
        s = summarize(samples[n])
        p, mac = info[n]
        print(f"{n:24s} {p / 1e6:9.2f} {mac / 1e9:7.3f} {fmt(s.median):>10s} {fmt(s.p10):>8s} {fmt(s.p90):>8s} "
              f"{fmt(s.cv):>6s} {fmt(mac / 1e9 / (s.median / 1e3) if s.median else None):>7s}")
    if "freenet_s2" in models and "starnet_s4" in models:
        c = compare(samples["freenet_s2"], samples["starnet_s4"])
        (pf, mf), (ps, ms) = info["freenet_s2"], info["starnet_s4"]
        print(f"\nFreeNet-S2 / StarNet-S4 latency ratio: {fmt_ratio(c)} ({c.verdict}); "
              f"MAC ratio {mf / ms:.3f}; param ratio {pf / ps:.3f}; paper claims ~0.71 (desktop GPU), ~0.87 (mobile GPU)")
        if args.profile and (c.ratio or 0) >= 1:
            from torch.profiler import ProfilerActivity, profile

            for n in ("freenet_s2", "starnet_s4"):
                with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
                    for _ in range(10):
                        models[n](x)
                print(f"\n--- {n}: where the time goes (10 runs) ---")
                print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=10))


if __name__ == "__main__":
    main()
