"""Run it again: do back-to-back measurements of the headline lie inside each other's intervals?

    freenet bench BUNDLE --models freenet_s2,starnet_s4 --processes 5 --rounds 2 --db sqlite:////tmp/run1.db   # x3
    python benchmarks/bench_repeat.py BUNDLE sqlite:////tmp/run1.db sqlite:////tmp/run2.db sqlite:////tmp/run3.db [--profile]

For every runtime it prints FreeNet-S2 / StarNet-S4 of each run with the headline's interval
(`compare.build_report`'s headline rows: hierarchical over processes, paired), its verdict, the interval width, and
whether every run's ratio lies inside every other run's interval; next to it the old interval
(`stats.compare` over the pooled samples, which treats samples of one process as independent).
`--profile` names the op of runtime anomalies (per-op profiles of the bundle's artifacts).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from device_bench.compare import PAIR, ComparePlan, build_report, runs_of
from device_bench.stats import compare, fmt_ratio
from device_bench.store import Store
from device_bench.summary import summarize_run
from export.manifest import Manifest


def load(db: str) -> tuple[Store, list]:
    store = Store(db)
    return store, [store.get_report(r.run_id) for r in store.query(limit=10_000)]


def headline(db: str, manifest: Manifest, locate) -> tuple[dict, dict, dict]:
    """The headline rows of one stored run (the `freenet compare` builder), keyed by runtime label;
    the old pooled-sample interval and the per-process samples, keyed alike."""
    store, reports = load(db)
    report = build_report(summarize_run(store, [r.run_id for r in reports]), reports, manifest, ComparePlan(), None, locate=locate)
    head = {h.runtime: h for h in report.headline if h.model == PAIR[0]}
    runs = runs_of(reports)
    by: dict[str, dict[str, list[list[float]]]] = {}
    for t in report.tables:
        g = t.group
        by[t.label] = {m: [r.timing.samples_ms for r in runs.get((g.device, g.runtime, g.accelerator, m, "fp32", False), [])]
                       for m in PAIR}
    naive = {rt: compare([v for r in ms[PAIR[0]] for v in r], [v for r in ms[PAIR[1]] for v in r]) for rt, ms in by.items()
             if ms[PAIR[0]] and ms[PAIR[1]]}
    return head, naive, by


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
    runs = [headline(db, manifest, locate if i == 0 else None) for i, db in enumerate(args.dbs)]
    print(f"FreeNet-S2 / StarNet-S4, {len(runs)} back-to-back runs\n")
    print("| runtime | " + " | ".join(f"run {i + 1}" for i in range(len(runs))) + " | inside each other's intervals | interval width (max) | old interval (pooled samples), inside? |")
    print("|---|" + "---|" * len(runs) + "---|---|---|")
    for rt in runs[0][0]:
        cs = [r[0][rt].comparison for r in runs if rt in r[0]]
        ns = [r[1][rt] for r in runs if rt in r[1]]
        inside = all(a.low <= b.ratio <= a.high for a in cs for b in cs)
        n_inside = all(a.low <= b.ratio <= a.high for a in ns for b in ns)
        width = max(c.high / c.low - 1 for c in cs)
        cells = [f"{fmt_ratio(r[0][rt].comparison)} {r[0][rt].verdict}" for r in runs if rt in r[0]]
        print(f"| {rt} | " + " | ".join(cells) + f" | {'yes' if inside else 'NO'} | ±{width / 2:.1%} | "
              + ", ".join(fmt_ratio(n) for n in ns) + f" — {'yes' if n_inside else 'NO'} |")
    print("\nper-process medians (ms) of run 1:")
    for rt, ms in runs[0][2].items():
        for m, rs in ms.items():
            print(f"  {rt:40s} {m:12s} " + " ".join(f"{np.median(r):7.2f}" for r in rs))
    for rt, h in runs[0][0].items():
        for s in h.stability:
            print(f"  stability {rt}: {s.reason}")
        for a in h.anomalies:
            print(f"  anomaly: {a.describe()}")


if __name__ == "__main__":
    main()
