"""cProfile of ExecuTorch lowering: one model's .pte artifacts converted in this process.

    PYTHONPATH=$PWD python benchmarks/profile_executorch.py --model freenet_s2 --out /tmp/prof-et

Prints each artifact's step_seconds and the top of the cumulative profile; the .prof files (one per
artifact) are written to OUT for `python -m pstats`. docs/export-scaling.md has the reading.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="freenet_s2")
    ap.add_argument("--targets", default="executorch-xnnpack:fp32,executorch-vulkan:fp32")
    ap.add_argument("--out", type=Path, default=Path("/tmp/prof-et"))
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    from export.api import ExportPlan, build_artifact, model_ref, prepare_model

    args.out.mkdir(parents=True, exist_ok=True)
    plan = ExportPlan(models=[args.model], formats=["executorch"])
    t0 = time.perf_counter()
    pm = prepare_model(args.model, plan, expect=model_ref(args.model, plan))
    print(f"prepare {time.perf_counter() - t0:.1f} s")
    for spec in args.targets.split(","):
        target, precision = spec.split(":")
        prof = cProfile.Profile()
        t = time.perf_counter()
        prof.enable()
        art, _ = build_artifact(pm, "executorch", target, precision, plan, args.out / f"staging-{target}-{precision}",
                                args.out / "convert.log", "profile")
        prof.disable()
        print(f"{target} {precision}: {art.status} {time.perf_counter() - t:.1f} s (under the profiler) {art.step_seconds}")
        path = args.out / f"{target}-{precision}.prof"
        prof.dump_stats(path)
        pstats.Stats(str(path)).sort_stats("cumulative").print_stats(args.top)


if __name__ == "__main__":
    main()
