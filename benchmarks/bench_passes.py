"""Do the rewrite passes matter for speed? FreeNet artifacts with passes off / default / + merge.

For each FreeNet variant it exports three bundles (no passes; the default passes; the default passes
plus merge_branch_convs) to ONNX, TFLite (XNNPACK target) and ExecuTorch XNNPACK in fp32, prints the
export time per format, then measures every artifact on onnxruntime, ai-edge-litert (XNNPACK) and
the ExecuTorch runtime — each in its own worker process, all three pass sets interleaved round by
round in ONE run — and prints medians and the on/off ratios with bootstrap intervals.

    python benchmarks/bench_passes.py [--models freenet_s2] [--rounds 8] [--runs 10]
"""

from __future__ import annotations

import argparse
import tempfile
from collections import defaultdict
from pathlib import Path

import freenet  # noqa: F401
from device_bench.runner import BenchPlan, measure_jobs, plan_jobs
from device_bench.stats import compare, fmt, fmt_ratio, summarize
from export.api import ExportPlan, export_bundle
from export.manifest import Manifest
from export.passes import DEFAULT_PASSES

PASS_SETS = {"off": [], "default": list(DEFAULT_PASSES), "default+merge": [*DEFAULT_PASSES, "merge_branch_convs"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="*", default=["freenet_s2"])
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="bench_passes_")))
    args = ap.parse_args()
    jobs, times = [], defaultdict(dict)
    plan = BenchPlan(args.work, runtimes=["onnxruntime", "litert", "executorch"], precisions=["fp32"],
                     warmup=args.warmup, rounds=args.rounds, runs_per_round=args.runs)
    for label, passes in PASS_SETS.items():
        out = args.work / label
        m = export_bundle(ExportPlan(models=args.models, formats=["onnx", "tflite", "executorch"], precisions=["fp32"],
                                     targets=["onnxruntime-cpu", "litert-cpu", "executorch-xnnpack"], passes=passes,
                                     out_dir=out, on_existing="reuse"))
        for a in m.artifacts:
            times[(a.model, a.format)][label] = a.export_seconds if a.status == "ok" else None
            if a.status != "ok":
                print(f"[{label}] {a.id} failed: {a.error}")
        for j in plan_jobs(Manifest.load(out / "manifest.json"), plan, out):
            j.label = label
            jobs.append(j)
    print("\nexport seconds per format (passes off / default / default+merge)")
    for (model, fmt_), t in sorted(times.items()):
        print(f"  {model:12s} {fmt_:11s} " + " / ".join(fmt(t.get(k), 1) for k in PASS_SETS))
    reports = measure_jobs(jobs, plan, lambda r: None, lambda w, d, t: print(f"\r{d}/{t} {w[:60]:60s}", end="", flush=True))
    print()
    samples = {(r.model.name, r.runtime.name, r.notes["label"]): r.timing.samples_ms for r in reports if r.status == "ok"}
    for r in reports:
        if r.status != "ok":
            print(f"  {r.model.name} {r.runtime.name} [{r.notes.get('label')}] error: {r.error}")
    print(f"\nhost latency, fp32, batch 1, 1 thread, {args.rounds} interleaved rounds x {args.runs} runs (median ms; ratio vs passes off)")
    for model in args.models:
        for rt in ("onnxruntime", "litert", "executorch"):
            base = samples.get((model, rt, "off"))
            cells = []
            for label in PASS_SETS:
                s = samples.get((model, rt, label))
                if s is None:
                    cells.append(f"{label}: —")
                    continue
                ratio = "" if label == "off" or base is None else f" ({fmt_ratio(compare(s, base))})"
                cells.append(f"{label}: {fmt(summarize(s).median)}{ratio}")
            print(f"  {model:12s} {rt:12s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
