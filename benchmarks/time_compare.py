"""Time `freenet compare` per phase: run_compare(ComparePlan(work_dir=WORK)) with the CLI's defaults,
printing each phase's start and the progress (export, reuse, measure); `--remeasure` as in the CLI.

    rm -rf /tmp/cmp; PYTHONPATH=$PWD python benchmarks/time_compare.py /tmp/cmp    # from scratch
    PYTHONPATH=$PWD python benchmarks/time_compare.py /tmp/cmp                     # re-run, up to date
"""
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main():
    t0 = time.perf_counter()
    from pathlib import Path
    from device_bench.compare import ComparePlan, run_compare
    work = Path(sys.argv[1])
    extra = sys.argv[2:]
    print(f"{time.perf_counter()-t0:8.1f} imported; load {os.getloadavg()}", flush=True)
    seen = {}
    last = [0.0]

    def progress(phase, what, done, total):
        now = time.perf_counter() - t0
        if phase not in seen:
            seen[phase] = now
            print(f"{now:8.1f} PHASE {phase} starts; load {os.getloadavg()}", flush=True)
        if phase == "reuse" or now - last[0] > 20 or "done" in what or ": ok" in what or "failed" in what:
            print(f"{now:8.1f} {phase} {done}/{total} {what}", flush=True)
            last[0] = now

    plan = ComparePlan(work_dir=work, remeasure="--remeasure" in extra)
    out = run_compare(plan, progress)
    print(f"{time.perf_counter()-t0:8.1f} END report {out}; load {os.getloadavg()}", flush=True)
    print("phases", {k: round(v, 1) for k, v in seen.items()})


if __name__ == "__main__":
    main()
