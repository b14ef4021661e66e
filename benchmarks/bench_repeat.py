"""Run it again: do back-to-back measurements of the headline lie inside each other's intervals?

    freenet bench BUNDLE --models freenet_s2,starnet_s4 --processes 5 --rounds 2 --db sqlite:////tmp/run1.db   # x3
    python benchmarks/bench_repeat.py BUNDLE sqlite:////tmp/run1.db sqlite:////tmp/run2.db sqlite:////tmp/run3.db [--profile]

For every runtime it prints FreeNet-S2 / StarNet-S4 of each run with the headline's interval
(`compare.headline`: hierarchical over processes, paired), its verdict, the interval width, and
whether every run's ratio lies inside every other run's interval; next to it the old interval
(`stats.compare` over the pooled samples, which treats samples of one process as independent).
`--profile` names the op of runtime anomalies (per-op profiles of the bundle's artifacts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from device_bench.compare import PAIR, headline, runs_by_model
from device_bench.stats import compare, fmt_ratio
from device_bench.store import Store
from export.manifest import Manifest


def load(db: str) -> list:
    store = Store(db)
    return [store.get_report(r.run_id) for r in store.query(limit=10_000)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("dbs", nargs="+")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args()
    manifest = Manifest.load(args.bundle / "manifest.json")
    locate = None
    if args.profile:
        from device_bench.anomaly import bundle_locator

        locate = bundle_locator(args.bundle)
    runs = []
    for i, db in enumerate(args.dbs):
        reports = load(db)
        head = {h["runtime"]: h for h in headline(reports, manifest, locate if i == 0 else None)}
        by = runs_by_model(reports)
        naive = {rt: compare([v for r in ms[PAIR[0]] for v in r], [v for r in ms[PAIR[1]] for v in r]) for rt, ms in by.items()
                 if PAIR[0] in ms and PAIR[1] in ms}
        runs.append((head, naive, by))
    print(f"FreeNet-S2 / StarNet-S4, {len(runs)} back-to-back runs\n")
    print("| runtime | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | inside each other's intervals | interval width (max) | old interval (pooled samples), inside? |")
    print("|---|" + "---|" * len(runs) + "---|---|---|")
    for rt in runs[0][0]:
        cs = [r[0][rt]["comparison"] for r in runs if rt in r[0]]
        ns = [r[1][rt] for r in runs if rt in r[1]]
        inside = all(a.low <= b.ratio <= a.high for a in cs for b in cs)
        n_inside = all(a.low <= b.ratio <= a.high for a in ns for b in ns)
        width = max(c.high / c.low - 1 for c in cs)
        cells = [f"{fmt_ratio(r[0][rt]['comparison'])} {r[0][rt]['verdict']}" for r in runs if rt in r[0]]
        print(f"| {rt} | " + " | ".join(cells) + f" | {'yes' if inside else 'NO'} | ±{width / 2:.1%} | "
              + ", ".join(fmt_ratio(n) for n in ns) + f" — {'yes' if n_inside else 'NO'} |")
    print("\nper-process medians (ms) of run 1:")
    for rt, ms in runs[0][2].items():
        for m, rs in ms.items():
            import numpy as np

            print(f"  {rt:40s} {m:12s} " + " ".join(f"{np.median(r):7.2f}" for r in rs))
    for rt, h in runs[0][0].items():
        for s in h["stability"]:
            print(f"  stability {rt}: {s.reason}")
        for a in h["anomalies"]:
            print(f"  anomaly: {a.describe()}")


if __name__ == "__main__":
    main()
