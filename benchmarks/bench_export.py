"""Export throughput: artifacts/min in this process (the old sequential path), with 1 and 2 worker
processes, and on a local Dask cluster (a scheduler and worker processes on 127.0.0.1), side by
side in ONE run, plus where each artifact's time went (step_seconds of the manifest).

    PYTHONPATH=$PWD python benchmarks/bench_export.py --model freenet_s2 \
        --formats onnx,coreml,tflite,executorch --configs before,jobs1,jobs2,cluster --out /tmp/bench-export

Targets from issue 13 are printed next to the measured values. Results are also written as JSON
(OUT/results.json) after every configuration, so an interrupted run still reports what it measured.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TARGET_ONE_MODEL_S = 60.0  # one model to all four formats, 10 artifacts, every verification
TARGET_COMPARE_FRESH_MIN = 12.0
TARGET_COMPARE_RERUN_MIN = 1.0


def _start_cluster(workers: int, env: dict) -> tuple[str, list[subprocess.Popen]]:
    """A real Dask cluster on 127.0.0.1: one scheduler process and `workers` worker processes."""
    py = sys.executable
    port = 8786 + os.getpid() % 1000
    addr = f"tcp://127.0.0.1:{port}"
    procs = [subprocess.Popen([py, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--dashboard-address", ":0"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    for _ in range(workers):
        procs.append(subprocess.Popen([py, "-m", "distributed.cli.dask_worker", addr, "--nthreads", "1", "--nworkers", "1",
                                       "--memory-limit", "0", "--no-dashboard"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    deadline = time.time() + 120
    while True:
        try:
            with Client(addr, timeout="5s") as c:
                c.wait_for_workers(workers, timeout=60)
            return addr, procs
        except Exception:  # noqa: BLE001
            if time.time() > deadline:
                raise
            time.sleep(1)


def _stop(procs: list[subprocess.Popen]) -> None:
    for p in reversed(procs):
        p.terminate()
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def run_config(name: str, args, out: Path) -> dict:
    from export.api import ExportPlan, export_bundle

    bundle = out / name
    shutil.rmtree(bundle, ignore_errors=True)
    plan = ExportPlan(models=args.model.split(","), formats=args.formats.split(","), out_dir=bundle,
                      on_existing="overwrite", input_size=args.input_size)
    workers, cluster, procs = 0, None, []
    if name == "before":
        os.environ["FREENET_EXPORT_NO_MEMO"] = "1"  # the same work as before this change: every format traces
    else:
        os.environ.pop("FREENET_EXPORT_NO_MEMO", None)
    if name.startswith("jobs"):
        workers = int(name[4:])
    if name == "cluster":
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        cluster, procs = _start_cluster(args.cluster_workers, env)
    t0 = time.perf_counter()
    try:
        m = export_bundle(plan, workers=workers, cluster=cluster)
    finally:
        _stop(procs)
    wall = time.perf_counter() - t0
    ok = sum(a.status == "ok" for a in m.artifacts)
    return dict(config=name, wall_s=round(wall, 1), artifacts=len(m.artifacts), ok=ok,
                per_min=round(len(m.artifacts) / wall * 60, 2),
                steps={a.id: {"total": round(a.export_seconds or 0, 1), "worker": a.worker, **(a.step_seconds or {})}
                       for a in m.artifacts},
                failed={a.id: a.error for a in m.artifacts if a.status != "ok"})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="freenet_s2")
    ap.add_argument("--formats", default="onnx,coreml,tflite,executorch")
    ap.add_argument("--configs", default="before,jobs1,jobs2,cluster")
    ap.add_argument("--cluster-workers", type=int, default=2)
    ap.add_argument("--input-size", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench-export"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    results = []
    for name in args.configs.split(","):
        print(f"--- {name} (load average {os.getloadavg()[0]:.1f})", flush=True)
        r = run_config(name, args, args.out)
        r["load_before"] = load[0]
        results.append(r)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"{name}: {r['artifacts']} artifacts ({r['ok']} ok) in {r['wall_s']} s = {r['per_min']} artifacts/min", flush=True)
    print()
    print(f"{'config':<10} {'wall s':>8} {'artifacts':>9} {'ok':>4} {'art/min':>8}   target")
    for r in results:
        target = f"<= {TARGET_ONE_MODEL_S:.0f} s" if r["artifacts"] == 10 else ""
        verdict = "" if not target else ("met" if r["wall_s"] <= TARGET_ONE_MODEL_S else "MISSED")
        print(f"{r['config']:<10} {r['wall_s']:>8} {r['artifacts']:>9} {r['ok']:>4} {r['per_min']:>8}   {target} {verdict}")
    print(f"(make compare targets: fresh <= {TARGET_COMPARE_FRESH_MIN:.0f} min, re-run <= {TARGET_COMPARE_RERUN_MIN:.0f} min;"
          f" measured separately, see docs/export-scaling.md)")
    print(f"load average at start {load[0]:.1f} on {os.cpu_count()} cores")
    for r in results:
        print(f"\nper-step seconds, {r['config']}:")
        names = sorted({k for s in r["steps"].values() for k in s if k not in ("total", "worker")})
        print(f"{'artifact':<46} {'total':>6} " + " ".join(f"{n[-12:]:>12}" for n in names))
        for art, s in r["steps"].items():
            print(f"{art[-46:]:<46} {s['total']:>6} " + " ".join(f"{s.get(n, ''):>12}" for n in names))
        sums = {n: round(sum(s.get(n, 0) for s in r["steps"].values()), 1) for n in names}
        print(f"{'sum':<46} {round(sum(s['total'] for s in r['steps'].values()), 1):>6} "
              + " ".join(f"{sums[n]:>12}" for n in names))
        for art, err in r["failed"].items():
            print(f"  FAILED {art}: {err}")


if __name__ == "__main__":
    main()
