"""FreeNet vs StarNet vs MobileNet tables: stored runs grouped and compared.

This module owns how stored runs become comparison tables: one table per device x runtime x
accelerator, one row per model x precision (emulated runs in rows of their own), the raw samples
of a row's latest runs pooled and summarised by `device_bench.stats`, and ratio columns against
FreeNet-S2, StarNet-S4 and an optional chosen baseline (same table, same precision). Emulated,
error-only and aggregate-only rows are shown but never enter a ratio. The server's compare
endpoint, the dashboard and the `freenet compare` report (`summarize_run`: one run's reports,
read back from the store) all render these objects: there is no second table builder.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from device_bench.stats import Comparison, Summary, compare, summarize

if TYPE_CHECKING:
    from device_bench.store import Store

PAIR = ("freenet_s2", "starnet_s4")  # the headline pair: FreeNet-S2 against StarNet-S4
FAMILY_ORDER = {"FreeNet": 0, "StarNet": 1, "MobileNet": 2, "other": 3}
LINKED_RUNS = 5


@dataclass
class ModelRow:
    model: str
    family: str
    precision: str
    emulated: bool
    runs: int
    errors: int
    samples_kind: str  # "raw", "aggregate" or "none" (only error runs)
    stats: Summary
    aggregate_mean_ms: float | None
    macs: int | None
    run_ids: list[str]
    error_run_ids: list[str]
    samples: list[float] = field(repr=False, default_factory=list)
    ratios: dict[str, Comparison | None] = field(default_factory=dict)

    @property
    def comparable(self) -> bool:
        """Whether this row may enter a ratio: real hardware and raw samples."""
        return not self.emulated and self.stats.n > 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "family": self.family, "precision": self.precision,
            "emulated": self.emulated, "runs": self.runs, "errors": self.errors,
            "samples_kind": self.samples_kind,
            "stats": {f"{k}_ms" if k not in ("n", "cv") else k: v for k, v in self.stats.as_dict().items()},
            "aggregate_mean_ms": self.aggregate_mean_ms, "macs": self.macs,
            "reports": [f"/reports/{r}" for r in self.run_ids],
            "error_reports": [f"/reports/{r}" for r in self.error_run_ids],
            "ratios": {k: (None if c is None else c.as_dict()) for k, c in self.ratios.items()},
        }


@dataclass
class Group:
    device: str
    runtime: str
    accelerator: str
    rows: list[ModelRow]
    pair: Comparison | None

    @property
    def emulated(self) -> bool:
        """Every row ran on an emulated accelerator (never a speed result)."""
        return bool(self.rows) and all(r.emulated for r in self.rows)

    def row(self, model: str, precision: str = "fp32", *, emulated: bool = False) -> ModelRow | None:
        return next((r for r in self.rows if (r.model, r.precision, r.emulated) == (model, precision, emulated)), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device, "runtime": self.runtime, "accelerator": self.accelerator,
            "pair": {"a": PAIR[0], "b": PAIR[1], "comparison": None if self.pair is None else self.pair.as_dict()},
            "models": [r.as_dict() for r in self.rows],
        }


def _ratio(row: ModelRow, ref: ModelRow | None) -> Comparison | None:
    if ref is None or not (row.comparable and ref.comparable):
        return None
    return compare(row.samples, ref.samples)


def summarize_groups(
    runs: list[dict[str, Any]], *, baseline: str | None = None, with_ratios: bool = True
) -> list[Group]:
    """Build the tables from `Store.group_samples()` rows (one dict per stored report).

    with_ratios=False skips the bootstrap (for the plot, which needs only medians)."""
    by_row: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in runs:
        by_row[(r["device"], r["runtime"], r["accelerator"], r["model"], r["precision"], bool(r["emulated"]))].append(r)

    tables: dict[tuple, list[ModelRow]] = defaultdict(list)
    for (dev, rt, acc, model, precision, emulated), items in by_row.items():
        items.sort(key=lambda r: r["created_at"], reverse=True)
        ok = [r for r in items if r["status"] == "ok"]
        raw = [r for r in ok if r["samples_kind"] == "raw"]
        agg = [r for r in ok if r["samples_kind"] == "aggregate"]
        samples = [s for r in raw for s in r["samples"]]
        # Aggregate-only runs have no samples: show the tool's mean, never mix it into samples.
        agg_mean = (sum(r["mean_ms"] for r in agg) / len(agg)) if agg and not raw else None
        macs = next((r["macs"] for r in items if r["macs"] is not None), None)
        tables[(dev, rt, acc)].append(ModelRow(
            model=model, family=items[0]["family"], precision=precision, emulated=emulated,
            runs=len(ok), errors=len(items) - len(ok),
            samples_kind="raw" if raw else "aggregate" if agg else "none",
            stats=summarize(samples), aggregate_mean_ms=agg_mean, macs=macs,
            run_ids=[r["run_id"] for r in ok[:LINKED_RUNS]],
            error_run_ids=[r["run_id"] for r in items if r["status"] != "ok"][:LINKED_RUNS],
            samples=samples,
        ))

    groups = []
    for (dev, rt, acc), rows in sorted(tables.items()):
        rows.sort(key=lambda r: (FAMILY_ORDER.get(r.family, 9), r.model, r.precision, r.emulated))
        real = {(r.model, r.precision): r for r in rows if not r.emulated}
        refs = {"freenet_s2": PAIR[0], "starnet_s4": PAIR[1]}
        if baseline:
            refs["baseline"] = baseline
        for row in rows if with_ratios else ():
            row.ratios = {k: _ratio(row, real.get((name, row.precision))) for k, name in refs.items()}
        pair = None
        for precision in ("fp32", "fp16", "int8"):
            a, b = real.get((PAIR[0], precision)), real.get((PAIR[1], precision))
            if with_ratios and a is not None and b is not None:
                pair = a.ratios["starnet_s4"]
                break
        groups.append(Group(dev, rt, acc, rows, pair))
    return groups


def summarize_run(store: Store, run_ids: Iterable[str], *, device: str | None = None, **kw: Any) -> list[Group]:
    """The tables of one run's reports (e.g. one `freenet compare` over one bundle), read back from
    the store so the report shows exactly what was stored. Older runs of the same groups are left
    out: the report describes this run, the dashboard pools the latest runs. `device` (the store's
    device label) narrows the read to the device the run measured."""
    wanted = {str(r) for r in run_ids}
    rows = [r for r in store.group_samples(device=device) if r["run_id"] in wanted]
    missing = len(wanted) - len(rows)
    if missing:
        raise RuntimeError(f"{missing} of this run's {len(wanted)} reports are not in the store (or not among "
                           "the latest of their groups): the report would not match what was stored")
    return summarize_groups(rows, **kw)
