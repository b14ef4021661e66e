"""Run it again: do back-to-back measurements of the headline lie inside each other's intervals?

    freenet bench BUNDLE --models freenet_s2,starnet_s4 --processes 5 --rounds 2 --db sqlite:////tmp/run1.db   # x3
    python benchmarks/bench_repeat.py BUNDLE sqlite:////tmp/run1.db sqlite:////tmp/run2.db sqlite:////tmp/run3.db [--profile]

For every runtime it prints FreeNet-S2 / StarNet-S4 of each run with the headline's next-run interval
(`compare.build_report`'s headline rows: hierarchical over processes, paired; `stats.next_run_interval`),
its verdict, the widest next-run and confidence intervals, and whether every run's ratio lies inside every
other run's next-run interval (each miss with how far outside); below, the old interval (`stats.compare`
over the pooled samples, which treats samples of one process as independent).
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


def _width(lo: float | None, hi: float | None) -> float | None:
    """Half the interval's width relative to its centre (log scale): "±2.0 %"."""
    return None if lo is None or hi is None else (hi / lo) ** 0.5 - 1


def judge(cs: list, unstable: list[bool]) -> tuple[int, int, list[str], int]:
    """Every run's ratio against every other run's next-run interval: (checks, misses, how far
    each miss lies outside, relative to the interval's edge, misses by runs whose own verdict is
    not "unstable")."""
    checks, out, quiet = 0, [], 0
    for i, a in enumerate(cs):
        for j, b in enumerate(cs):
            if i == j or a.next_low is None:
                continue
            checks += 1
            if not a.next_low <= b.ratio <= a.next_high:
                edge = a.next_low if b.ratio < a.next_low else a.next_high
                out.append(f"run {j + 1} ({b.ratio:.4f}{', itself marked unstable' if unstable[j] else ''}) outside "
                           f"run {i + 1}'s [{a.next_low:.4f}–{a.next_high:.4f}] by {b.ratio / edge - 1:+.2%}")
                quiet += not unstable[j]
    return checks, len(out), out, quiet


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
    print(f"FreeNet-S2 / StarNet-S4, {len(runs)} back-to-back runs: ratio [95 % next-run interval] verdict\n")
    print("| runtime | " + " | ".join(f"run {i + 1}" for i in range(len(runs)))
          + " | each inside the others' next-run intervals | next-run interval: median (widest) | confidence interval: median (widest) | worst miss |")
    print("|---|" + "---|" * len(runs) + "---|---|---|---|")
    total = [0, 0, 0]
    details = []
    for rt in runs[0][0]:
        cs = [r[0][rt].comparison for r in runs if rt in r[0]]
        flags = [r[0][rt].stable is False for r in runs if rt in r[0]]
        checks, misses, why, quiet = judge(cs, flags)
        total[0] += checks
        total[1] += misses
        total[2] += quiet
        worst = max((abs(float(w.rsplit("by ", 1)[1].rstrip("%"))) for w in why), default=None)
        cells = [f"{fmt_ratio(r[0][rt].comparison)} {r[0][rt].verdict}" for r in runs if rt in r[0]]
        wn = [_width(c.next_low, c.next_high) for c in cs]
        wc = [_width(c.low, c.high) for c in cs]
        print(f"| {rt} | " + " | ".join(cells) + f" | {'yes' if not misses else f'NO ({misses} of {checks})'} | "
              f"±{np.median(wn):.1%} (±{max(wn):.1%}) | ±{np.median(wc):.1%} (±{max(wc):.1%}) | "
              + ("inside" if worst is None else f"{worst:.2f} %") + " |")
        details.append((rt, cs, why))
    print(f"\n{total[1]} of {total[0]} pairwise checks missed (at 95 % about {0.05 * total[0]:.1f} misses are expected by chance "
          f"if the runs are independent and the intervals exact); {total[2]} of the misses by a run not itself marked unstable")
    print("\nper run: ratio, confidence interval, next-run interval (±half-widths):")
    for rt, cs, why in details:
        for i, c in enumerate(cs):
            print(f"  {rt:32s} run {i + 1}: {c.ratio:.4f}  CI [{c.low:.4f}–{c.high:.4f}] ±{_width(c.low, c.high):.1%}"
                  f"  next run [{c.next_low:.4f}–{c.next_high:.4f}] ±{_width(c.next_low, c.next_high):.1%}")
        for w in why:
            print(f"    miss: {w}")
    print("\nold interval (stats.compare over pooled samples, CI):")
    for rt in runs[0][1]:
        print(f"  {rt:32s} " + ", ".join(fmt_ratio(r[1][rt], "ci") for r in runs if rt in r[1]))
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
