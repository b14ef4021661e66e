"""Desktop-GPU latency: FreeNet vs StarNet vs MobileNets at batch 1, side by side in one run.

Run on a machine with a CUDA GPU (`python3 benchmarks/bench_gpu.py --out gpu.json`); it needs only
torch, timm and this repository (no pydantic), so it runs in a bare CUDA image. Every model runs in
fp32 and fp16, eager and replayed as a CUDA graph (launch overhead removed), interleaved round by
round in a shuffled order; each sample is wall time of one synchronised batch-1 inference.

The StarNet paper's desktop-GPU numbers used ONNX Runtime on CUDA; where the onnxruntime-gpu wheel
cannot be installed, PyTorch eager / CUDA graphs are the closest available measurement, and the
output says which runtime produced every number.

Ingest the result into the local store (schema reports, runtime "pytorch", accelerator "cuda"):
`python benchmarks/bench_gpu.py --ingest gpu.json [--db URL]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SUITE = [
    "freenet_s1", "freenet_s2", "freenet_s3", "freenet_s4",
    "starnet_s1", "starnet_s2", "starnet_s3", "starnet_s4",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenetv4_conv_small",
]


def measure(args) -> dict:
    import torch

    import freenet
    from freenet.profile import count_macs, count_params

    assert torch.cuda.is_available(), "no CUDA device"
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    x32 = torch.randn(1, 3, 224, 224, device=dev)
    runners, meta, profiles = {}, {}, {}
    from export.passes import prepare

    for name in args.models:
        m = freenet.create_model(name).eval()
        digest = __import__("hashlib").sha256()
        for k, v in m.state_dict().items():  # the weights' identity, as the host runner records it
            digest.update(k.encode())
            digest.update(v.detach().contiguous().numpy().tobytes())
        meta[name] = {"params": count_params(m), "macs": count_macs(m), "weights_sha256": digest.hexdigest()}
        # "deploy": the graph the exporters receive (rewrite passes applied: contiguous channel
        # slices, folded BatchNorm, ...), so the GPU sees the same model a phone would
        deployed, _ = prepare(m, torch.randn(1, 3, 224, 224))
        variants = {"eager": m, "deploy": deployed} if args.deploy else {"eager": m}
        for (variant, base), (dtype, label) in __import__("itertools").product(variants.items(), ((torch.float32, "fp32"), (torch.float16, "fp16"))):
            mm = __import__("copy").deepcopy(base).to(dev, dtype=dtype)
            x = x32.to(dtype)
            with torch.inference_mode():
                for _ in range(args.warmup):
                    mm(x)
                torch.cuda.synchronize()
            runners[(name, label, variant)] = (lambda mm=mm, x=x: mm(x))
            # CUDA graph: capture after warm-up on a side stream, replay with a static input
            static_x = x.clone()
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s), torch.inference_mode():
                for _ in range(3):
                    mm(static_x)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g), torch.inference_mode():
                mm(static_x)
            runners[(name, label, f"{variant}+cudagraph")] = g.replay
            if args.profile and name in ("freenet_s2", "starnet_s4") and label == "fp16" and variant == variants_last(variants):
                profiles[name] = profile_kernels(mm, x)
        print(f"prepared {name}", flush=True)
    samples = {k: [] for k in runners}
    rng = random.Random(0)
    keys = list(runners)
    with torch.inference_mode():
        for k in keys:  # warm every runner once more right before timing
            for _ in range(args.warmup):
                runners[k]()
        torch.cuda.synchronize()
        for r in range(args.rounds):
            rng.shuffle(keys)
            for k in keys:
                fn = runners[k]
                for _ in range(args.runs):
                    t0 = time.perf_counter()
                    fn()
                    torch.cuda.synchronize()
                    samples[k].append((time.perf_counter() - t0) * 1e3)
            print(f"round {r + 1}/{args.rounds}", flush=True)
    props = torch.cuda.get_device_properties(0)
    return {
        "device": {"name": props.name, "memory_bytes": props.total_memory, "sm_count": props.multi_processor_count,
                   "driver_cuda": torch.version.cuda, "host": platform.node()},
        "torch": torch.__version__, "cudnn": torch.backends.cudnn.version(),
        "timm": __import__("timm").__version__,
        "protocol": {"batch": 1, "size": 224, "warmup": args.warmup, "rounds": args.rounds, "runs_per_round": args.runs},
        "meta": meta,
        "samples": [{"model": k[0], "precision": k[1], "mode": k[2], "samples_ms": v} for k, v in samples.items()],
        "profiles": profiles,
    }


def variants_last(variants: dict) -> str:
    return list(variants)[-1]


def profile_kernels(model, x, iters: int = 20) -> list[dict]:
    """Per-op CUDA time of `iters` eager runs: where the time goes."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            model(x)
        torch.cuda.synchronize()
    rows = []
    for e in prof.key_averages():
        dev_us = getattr(e, "device_time_total", None) or getattr(e, "cuda_time_total", 0)
        self_dev = getattr(e, "self_device_time_total", None) or getattr(e, "self_cuda_time_total", 0)
        if self_dev > 0:
            rows.append({"op": e.key, "calls": e.count // iters, "self_device_us_per_run": self_dev / iters, "device_us_per_run": dev_us / iters})
    rows.sort(key=lambda r: -r["self_device_us_per_run"])
    return rows[:25]


def table(result: dict) -> str:
    from device_bench.stats import compare, fmt, fmt_ratio, summarize

    lines = [f"{result['device']['name']} · torch {result['torch']} · cuDNN {result['cudnn']} · batch 1, 224x224, "
             f"{result['protocol']['rounds']} interleaved rounds x {result['protocol']['runs_per_round']} runs"]
    by = {(s["model"], s["precision"], s["mode"]): s["samples_ms"] for s in result["samples"]}
    modes = sorted({s["mode"] for s in result["samples"]})
    for prec in ("fp32", "fp16"):
        for mode in modes:
            lines.append(f"\n{prec} {mode}: model, median ms [p10-p90]")
            for m in result["meta"]:
                s = summarize(by[(m, prec, mode)])
                lines.append(f"  {m:24s} {fmt(s.median):>8s} [{fmt(s.p10)}-{fmt(s.p90)}]")
            c = compare(by[("freenet_s2", prec, mode)], by[("starnet_s4", prec, mode)])
            lines.append(f"  FreeNet-S2 / StarNet-S4 = {fmt_ratio(c)} ({c.verdict}); paper: 0.71 (desktop GPU, ONNX Runtime)")
    for name, rows in result.get("profiles", {}).items():
        lines.append(f"\nwhere the GPU time goes: {name} (fp16, {modes[-1].split('+')[0]} graph), per inference")
        total = sum(r["self_device_us_per_run"] for r in rows)
        for r in rows[:12]:
            lines.append(f"  {r['self_device_us_per_run']:8.1f} us {100 * r['self_device_us_per_run'] / total:5.1f}%  x{r['calls']:<4d} {r['op'][:90]}")
    return "\n".join(lines)


def ingest(result: dict, db: str | None) -> int:
    """Turn the raw samples into schema reports in the local store (one per model/precision/mode)."""
    import uuid
    from datetime import datetime, timezone

    from device_bench.runner import store_sink
    from device_bench.schema import SCHEMA_VERSION, Report

    sink, now, n = store_sink(db), datetime.now(timezone.utc).isoformat(), 0
    for s in result["samples"]:
        meta = result["meta"][s["model"]]
        sink(Report.model_validate({
            "schema_version": SCHEMA_VERSION, "run_id": str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps([result["device"], s["model"], s["precision"], s["mode"], s["samples_ms"][:3]]))),
            "created_at": now, "started_at": now, "finished_at": now,
            "client": {"app": "freenet-bench-gpu", "platform": "host", "app_version": "benchmarks/bench_gpu.py"},
            "device": {"manufacturer": "NVIDIA", "model": result["device"]["name"], "soc": "cuda", "os": "linux",
                       "os_version": f"CUDA {result['device']['driver_cuda']}", "memory_bytes": result["device"]["memory_bytes"]},
            "runtime": {"name": "pytorch", "version": result["torch"], "accelerator": "cuda",
                        "delegate": "cudagraph" if s["mode"] == "cudagraph" else "eager", "threads": None, "emulated": False},
            "model": {"name": s["model"], "artifact_id": f"{s['model']}.pytorch.{s['mode']}.{s['precision']}", "format": "pytorch",
                      "precision": s["precision"], "sha256": meta["weights_sha256"], "input_shape": [1, 3, 224, 224],
                      "macs": meta["macs"], "params": meta["params"]},
            "timing": {"load_ms": None, "first_inference_ms": None, "warmup_runs": result["protocol"]["warmup"], "samples_ms": s["samples_ms"]},
            "thermal": {"before": "unknown", "after": "unknown"},
            "status": "ok",
            "notes": {"mode": s["mode"], "weights": "random(seed=0), sha256 of the state dict", "timm": result["timm"]},
        }))
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=SUITE)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--deploy", action=argparse.BooleanOptionalAction, default=True, help="also time the pass-rewritten graph")
    ap.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--ingest", type=Path, help="store a previous --out file as reports")
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    if args.ingest:
        result = json.loads(args.ingest.read_text())
        print(table(result))
        print(f"stored {ingest(result, args.db)} reports")
        return
    result = measure(args)
    if args.out:
        args.out.write_text(json.dumps(result))
    try:
        print(table(result))
    except ImportError as e:  # scipy/pydantic may be missing on a bare GPU image
        print(f"(summary table needs device_bench's dependencies: {e}); raw samples in {args.out}")


if __name__ == "__main__":
    main()
