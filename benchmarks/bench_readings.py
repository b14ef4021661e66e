"""Does the speed verdict depend on how FreeNet is read? A sweep over the interpretation switches.

Only FreeNet's abstract is public, so every structural choice below it is a reading. This sweep
takes FreeNet-S2's widths and depths and varies the switches that matter for speed — dense vs
depthwise (Equimo) mixer, the share of channels the mixer samples, the number of channel groups,
the branch kernels/dilations, the FFN expansion — and measures every configuration against
StarNet-S4 on the host runtimes, side by side in ONE run (each artifact in its own worker process,
rounds interleaved across all configurations). It prints params, MACs and the latency ratio to
StarNet-S4 per runtime with bootstrap intervals, says which configurations lie inside StarNet-S4's
±15% MAC budget, and which (if any) reach the paper's 0.71x (desktop GPU) / 0.87x (mobile GPU),
and plots ratio vs MACs.

    python benchmarks/bench_readings.py [--rounds 5] [--runs 10] [--size 224] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import freenet  # noqa: F401
from device_bench.runner import BenchPlan, measure_jobs, plan_jobs
from device_bench.stats import compare, fmt, fmt_ratio
from export.api import ExportPlan, export_bundle
from export.manifest import Manifest

BASELINE = "starnet_s4"
PAPER = {"desktop GPU": 0.71, "mobile GPU": 0.87}
BUDGET = 0.15
# label -> constructor options on top of freenet_s2 (docs/freenet.md names each switch)
READINGS: dict[str, dict] = {
    "ours (dense, 4 groups, mix 1/8)": {},
    "Equimo reading": {"equimo": True},
    "depthwise mixer, rest ours": {"mixer_mode": "equimo"},
    "dense, 1 group": {"groups": 1},
    "dense, 8 groups": {"groups": 8},
    "dense, mix 1/16": {"mix_ratio": 0.0625},
    "dense, mix 1/4": {"mix_ratio": 0.25},
    "dense, branches k3d1+k3d2": {"branches": [[3, 1], [3, 2]]},
    "dense, branches k5d2+k7d2 fixed": {"branches": [[5, 2], [7, 2]], "dilation_schedule": "fixed"},
    "dense, FFN expansion 1": {"expansion": 1},
    "dense, FFN expansion 3": {"expansion": 3},
}
RUNTIMES = ["onnxruntime", "litert", "executorch", "pytorch"]
TARGETS = ["onnxruntime-cpu", "litert-cpu", "executorch-xnnpack"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--size", type=int, default=None, help="input size (default: 224, the protocol's)")
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--only", nargs="*", help="labels of READINGS to run (default: all)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.mkdtemp(prefix="bench_readings_")))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="where the plot goes")
    args = ap.parse_args()
    runtimes = [r for r in args.runtimes.split(",") if r]
    readings = {k: v for k, v in READINGS.items() if not args.only or k in args.only}
    plan = BenchPlan(args.work, runtimes=runtimes, precisions=["fp32"], warmup=args.warmup, rounds=args.rounds,
                     runs_per_round=args.runs)
    jobs, sizes = [], {}
    bundles = [(BASELINE, BASELINE, {})] + [(label, "freenet_s2", kw) for label, kw in readings.items()]
    for i, (label, model, kw) in enumerate(bundles):
        out = args.work / f"r{i}"
        print(f"[{i + 1}/{len(bundles)}] export {label}", flush=True)
        m = export_bundle(ExportPlan(models=[model], formats=["onnx", "tflite", "executorch"], precisions=["fp32"],
                                     targets=TARGETS, out_dir=out, on_existing="reuse", model_kwargs=kw, input_size=args.size))
        for a in m.artifacts:
            if a.status != "ok":
                print(f"  {a.id} failed: {a.error}")
        ok = [a for a in m.artifacts if a.status == "ok"]
        if ok:
            sizes[label] = (ok[0].params, ok[0].macs)
        for j in plan_jobs(Manifest.load(out / "manifest.json"), plan, out):
            j.label = label
            jobs.append(j)
    reports = measure_jobs(jobs, plan, lambda r: None, lambda w, d, t: print(f"\r{d}/{t} {w[:60]:60s}", end="", flush=True))
    print()
    samples = {(r.notes["label"], r.runtime.name): r.timing.samples_ms for r in reports if r.status == "ok"}
    for r in reports:
        if r.status != "ok":
            print(f"  {r.notes.get('label')} {r.runtime.name}: {r.status}: {r.error}")
    base_params, base_macs = sizes[BASELINE]
    rows, points = [], []
    for label in readings:
        if label not in sizes:
            continue
        params, macs = sizes[label]
        mac_ratio = macs / base_macs
        cells = []
        for rt in runtimes:
            a, b = samples.get((label, rt)), samples.get((BASELINE, rt))
            if a is None or b is None:
                cells.append("—")
                continue
            c = compare(a, b)
            cells.append(fmt_ratio(c))
            points.append((rt, mac_ratio, c.ratio, label))
        inside = abs(mac_ratio - 1) <= BUDGET and abs(params / base_params - 1) <= BUDGET
        rows.append([label, f"{params / 1e6:.2f}", f"{macs / 1e6:.0f}", f"{mac_ratio:.2f}" + ("" if inside else " (outside ±15%)"), *cells])
    head = ["reading of FreeNet-S2", "params (M)", "MACs (M)", "MACs / StarNet-S4", *[f"{rt} latency / StarNet-S4" for rt in runtimes]]
    size = args.size or 224
    print(f"\nFreeNet-S2 readings vs StarNet-S4 ({base_params / 1e6:.2f} M, {base_macs / 1e6:.0f} M MACs), fp32, batch 1, "
          f"{size}x{size}, 1 thread, {args.rounds} interleaved rounds x {args.runs} runs; ratio of medians [95% bootstrap]\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")
    for name, target in PAPER.items():
        print(f"\nreach the paper's {target}x ({name}) inside the ±15% MAC budget (ratio of medians at or below it):")
        for rt in runtimes:
            hit = [lab for q, mr, ratio, lab in points if q == rt and ratio is not None and ratio <= target and abs(mr - 1) <= BUDGET]
            print(f"  {rt}: {', '.join(hit) or 'none'}")
    _plot(points, args.out / f"readings_ratio_vs_macs_{size}.png")


def _plot(points: list[tuple[str, float, float | None, str]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for rt, marker in zip(RUNTIMES, "osD^"):
        pts = [(m, r) for q, m, r, _ in points if q == rt and r is not None]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, label=rt)
    ax.axhline(1.0, color="grey", lw=0.8)
    for name, target in PAPER.items():
        ax.axhline(target, ls="--", lw=0.8, color="red" if "desktop" in name else "purple", label=f"paper, {name} ({target}x)")
    ax.axvspan(1 - BUDGET, 1 + BUDGET, color="green", alpha=0.08, label="±15% MAC budget")
    ax.set_xlabel("MACs / StarNet-S4")
    ax.set_ylabel("latency / StarNet-S4 (host CPU)")
    ax.set_title("FreeNet-S2 readings: latency ratio vs MAC ratio")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    print(f"plot: {path}  ({fmt(len(points), 0)} points)")


if __name__ == "__main__":
    main()
