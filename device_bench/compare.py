"""The main job, `freenet compare`: export the comparison suite, measure it here, store, report.

Flow (one way, `run_compare`): registry models -> export bundle (every format, verified, reused
when up to date) -> host runner (each runtime in its own processes, interleaved rounds) -> local
store (SQLite by default) -> the typed tables of this run (`device_bench.summary`, read back from
the store: the one table builder, shared with the dashboard) -> a report directory with Markdown
and HTML (Jinja templates `compare.md` / `compare.html`, the dashboard's environment) and PNG
plots. The first table is the headline: FreeNet-S2 / StarNet-S4 per runtime with a hierarchical
bootstrap interval over the runs (one report per fresh worker process, `stats.compare_runs`), the
runs' stability (an unstable row gets no faster/slower verdict) and runtime anomalies with the op
to blame (`anomaly.py`), next to the MAC and parameter ratios and the paper's claims. Mobile-GPU
delegate coverage from the manifest is shown next to every speed number, so that a model that would fall
back to the CPU on a phone never passes silently. A run whose output missed the parity tolerance
is shown as "parity failed", never as a speed result.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from export.api import ExportPlan, export_bundle
from export.api import summarize as export_rows
from export.manifest import Artifact, Manifest

from .anomaly import ANOMALY_THRESHOLD, Anomaly, Locate, hardware, table_anomalies
from .roofline import ABOVE_CEILING, Ceiling, achieved_gflops, fraction_of_peak, measure_ceiling
from .runner import DEFAULT_RUNTIMES, BenchPlan, host_device, measure_jobs, plan_jobs, store_sink
from .schema import Report
from .stats import Comparison, Stability, compare_runs, row_verdict, stability
from .protocols import PROTOCOLS, Resolved, resolve
from .store import Store, device_label
from .summary import PAIR, Group, ModelRow, summarize_run

SUITE = [
    "freenet_s1", "freenet_s2", "freenet_s2_equimo", "freenet_s3", "freenet_s4",
    "starnet_s1", "starnet_s2", "starnet_s3", "starnet_s4",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenetv4_conv_small",
]
PAPER_CLAIMS = {"desktop GPU": 0.71, "mobile GPU": 0.87}  # FreeNet-S2 / StarNet-S4 latency (1 / speed-up)
# FreeNet-S2 in each published reading of the abstract (docs/freenet.md): each gets a headline row
READINGS = {"freenet_s2": "ours (dense mixer)", "freenet_s2_equimo": "Equimo (depthwise mixer)"}
BUDGET = 0.15  # FreeNet-S2 is meant to be within ±15% of StarNet-S4's parameters and MACs
LATENCY_PLOT, RATIO_PLOT = "latency_vs_macs.png", "freenet_s2_vs_starnet_s4.png"


@dataclass
class ComparePlan:
    models: list[str] = field(default_factory=lambda: list(SUITE))
    formats: list[str] = field(default_factory=lambda: ["onnx", "coreml", "tflite", "executorch"])
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16"])
    runtimes: list[str] = field(default_factory=lambda: list(DEFAULT_RUNTIMES))
    work_dir: Path = Path("freenet-data")
    db_url: str | None = None  # default: SQLite file in work_dir
    rounds: int = 2  # per process
    runs_per_round: int = 10
    warmup: int = 10  # per process
    threads: int = 1
    # fresh worker processes per artifact (one report each; the headline interval comes from their
    # disagreement). None: the protocol's (host 3, starnet 5); under a protocol other than "host"
    # the protocol's total of timed runs is split over them
    processes: int | None = None
    profile_anomalies: bool = True  # name the op of a runtime anomaly in the headline with a per-op profile
    input_size: int | None = None  # None: each model's own (224); smaller only for quick checks
    export_jobs: int | None = None  # export worker processes; None: what cores and memory allow (export.parallel)
    cluster: str | None = None  # a Dask scheduler address: the export runs there (export/cluster.py)
    # "host" measures with the fields above; another protocol (device_bench/protocols.py) sets the
    # runtimes, threads, warm-up and runs itself and says what this machine changed about it
    protocol: str = "host"
    # measure everything again, even the runtimes whose artifacts the store already measured identically
    remeasure: bool = False

    def measurement(self) -> Resolved:
        if self.protocol == "host":
            host = PROTOCOLS["host"]
            return Resolved(replace(host, warmup=self.warmup, rounds=self.rounds, runs_per_round=self.runs_per_round,
                                    processes=host.processes if self.processes is None else self.processes), list(self.runtimes), self.threads)
        return resolve(self.protocol, processes=self.processes)

    @property
    def bundle(self) -> Path:
        return self.work_dir / "bundle"

    @property
    def db(self) -> str:
        return self.db_url or f"sqlite:///{(self.work_dir / 'freenet.db').resolve()}"


Progress = Callable[[str, str, int, int], None]  # (phase, what, done, total)


def run_compare(plan: ComparePlan, progress: Progress | None = None) -> Path:
    """export -> bench -> store -> summary -> render; returns the report directory."""
    from export.parallel import default_jobs

    plan.work_dir.mkdir(parents=True, exist_ok=True)
    export_plan = ExportPlan(models=plan.models, formats=plan.formats, precisions=plan.precisions, out_dir=plan.bundle,
                             on_existing="reuse", input_size=plan.input_size)
    workers = default_jobs(len(export_plan.jobs())) if plan.export_jobs is None else plan.export_jobs
    manifest = export_bundle(export_plan, _phase(progress, "export"), workers=workers, cluster=plan.cluster)
    how = plan.measurement()
    p = how.protocol  # host: the plan's own warm-up, rounds and processes
    bench = BenchPlan(plan.bundle, runtimes=how.runtimes, models=plan.models, precisions=["fp32"], warmup=p.warmup, rounds=p.rounds,
                      runs_per_round=p.runs_per_round, threads=how.threads, protocol=plan.protocol, processes=p.processes)
    reports = measure_or_reuse(bench, plan.db, plan.remeasure, progress)
    devices = {device_label(r) for r in reports}
    groups = summarize_run(Store(plan.db), [r.run_id for r in reports], device=devices.pop() if len(devices) == 1 else None)
    out = plan.work_dir / "report"
    locate = None
    if plan.profile_anomalies:
        from .anomaly import bundle_locator

        locate = bundle_locator(plan.bundle)
    write_report(build_report(groups, reports, manifest, plan, measure_ceiling(how.threads), how, locate=locate), out, reports)
    return out


def measure_or_reuse(bench: BenchPlan, db: str, remeasure: bool, progress: Progress | None = None) -> list[Report]:
    """Measure the bench plan, except the runtimes whose every job the store already measured with
    the same artifact sha256, runtime version, device and protocol (device_bench/reuse.py): their
    stored reports are reused (`remeasure=True`: none are). Reused runtimes are announced as the
    progress phase "reuse"."""
    from .reuse import stored_measurements

    bench.validate()
    jobs = plan_jobs(Manifest.load(bench.bundle / "manifest.json"), bench, bench.bundle)
    if not jobs:
        raise ValueError(f"nothing to measure in {bench.bundle} for runtimes {bench.runtimes} and precisions {bench.precisions}")
    reused = [] if remeasure else stored_measurements(Store(db), jobs, bench, host_device())
    if progress:
        for i, r in enumerate(reused):
            progress("reuse", f"{r.runtime}: {len(r.reports)} stored reports of identical artifacts reused "
                     "(same sha256, runtime version, device, protocol); --remeasure to measure again", i + 1, len(reused))
    skip = {r.runtime for r in reused}
    todo = [j for j in jobs if j.runtime not in skip]
    reports = [rep for r in reused for rep in r.reports]
    if todo:
        reports += measure_jobs(todo, bench, store_sink(db), _phase(progress, "measure"))
    return reports


def _phase(progress: Progress | None, phase: str) -> Callable[[str, int, int], None] | None:
    return (lambda what, done, total: progress(phase, what, done, total)) if progress else None


# ---------------------------------------------------------------------------------------------
# the report's view of the summary: what the templates show, nothing recomputed


@dataclass
class Line:
    """One model on one runtime: the summary row plus the details only its reports carry."""

    row: ModelRow
    status: str  # "ok", "parity_failed" or "error" (of the latest run when none was ok)
    error: str | None
    parity: float | None  # max |Δ| against the bundle's reference output
    gflops: float | None
    of_peak: float | None
    delegates: str

    @property
    def speed(self) -> bool:
        """Whether the row is a speed result (measured, within parity, real hardware)."""
        return self.status == "ok" and self.row.comparable

    @property
    def above_ceiling(self) -> bool:
        return self.of_peak is not None and self.of_peak > 1


@dataclass
class RuntimeTable:
    label: str  # "onnxruntime 1.20.1 · cpu"
    group: Group
    lines: list[Line]


@dataclass
class Headline:
    runtime: str
    comparison: Comparison  # pooled runs, hierarchical interval (stats.compare_runs)
    mac_ratio: float | None
    param_ratio: float | None
    model: str = PAIR[0]
    reading: str = READINGS[PAIR[0]]
    runs: tuple[int, int] = (1, 1)  # runs (processes / reports) of this reading and of StarNet-S4
    paired: bool = False  # process i of both models ran in the same batch, drawn together
    stability: list[Stability] = field(default_factory=list)  # one (paired: of the ratio) or one per side
    anomalies: list[Anomaly] = field(default_factory=list)  # of either model on this runtime
    verdict: str = ""  # stats.row_verdict: "unstable: ..." never faster/slower; ", driven by a runtime anomaly in <op>"

    def __post_init__(self) -> None:
        if not self.verdict:
            self.verdict = row_verdict(self.comparison, *self.stability,
                                       anomaly_op=next((a.op for a in self.anomalies if a.op), None))

    @property
    def stable(self) -> bool | None:
        """False when any side's runs disagree beyond their intervals; None when not judged (one run)."""
        if any(s.stable is False for s in self.stability):
            return False
        return True if self.stability and all(s.stable for s in self.stability) else None

    @property
    def verdict_class(self) -> str:
        """The CSS class of the ratio cell: only a called, stable difference is coloured."""
        return self.comparison.verdict if self.stable is not False and self.comparison.verdict in ("faster", "slower") else ""

    @property
    def in_budget(self) -> bool | None:
        """Whether this reading's size is within ±15% of StarNet-S4 (so speed is about operators)."""
        if self.mac_ratio is None or self.param_ratio is None:
            return None
        return abs(self.mac_ratio - 1) <= BUDGET and abs(self.param_ratio - 1) <= BUDGET


@dataclass
class CompareReport:
    generated: datetime
    bundle_id: str
    device: str
    plan: ComparePlan
    ceiling: Ceiling | None
    headline: list[Headline]
    tables: list[RuntimeTable]
    exports: list[dict]
    measurement: Resolved | None = None  # the protocol every number of this report followed
    anomalies: list[Anomaly] = field(default_factory=list)  # of the headline's models, listed under its table
    anomaly_threshold: float = ANOMALY_THRESHOLD
    claims: dict[str, float] = field(default_factory=lambda: dict(PAPER_CLAIMS))
    pair: tuple[str, str] = PAIR
    above_ceiling_reason: str = ABOVE_CEILING
    latency_plot: str = LATENCY_PLOT
    ratio_plot: str = RATIO_PLOT

    @property
    def any_above_ceiling(self) -> bool:
        return any(x.above_ceiling for t in self.tables for x in t.lines)


def _coverage_cell(arts: list[Artifact]) -> str:
    """Mobile-delegate verdicts of a model's fp32 artifacts, one per format target that has a
    `delegate_label` (export/backends), in registry order: 'NNAPI ✓ · LiteRT GPU ✓ · XNNPACK ✓ 2p'."""
    from export.backends import FORMATS

    parts = []
    checks = [(t.delegate_label, f.name, t.name) for f in FORMATS.values() for t in f.targets if t.delegate_label]
    for label, fmt_, target in checks:
        cands = [a for a in arts if a.format == fmt_ and a.target == target and a.precision == "fp32"]
        if not cands:
            continue
        a = cands[0]
        if a.status != "ok":
            parts.append(f"{label} ✗ (export failed)")
            continue
        covs = [c for c in a.coverage if label.split()[0].lower() in (c.delegate + c.tool).lower()] or a.coverage
        if not covs:
            parts.append(f"{label} ?")
            continue
        full = all(c.full for c in covs if c.full is not None)
        parts_n = max((c.partitions or 0) for c in covs) if any(c.partitions is not None for c in covs) else None
        parts.append(f"{label} {'✓' if full else '✗'}" + (f" {parts_n}p" if parts_n and parts_n > 1 else ""))
    return " · ".join(parts) or "—"


def _why(report: Report | None, limit: int = 300) -> str | None:
    """The note of a row that is not a speed result: its error text (cut; whole in reports.json)
    or, for a parity failure, the difference against the tolerance."""
    if report is None:
        return "no report stored"
    if report.status == "parity_failed" and not report.error and report.parity is not None:
        p = report.parity
        return (f"output off the reference: relative difference {p.rel_diff:.1e} > tolerance {p.tolerance:.0e}"
                if p.rel_diff is not None and p.tolerance is not None else "output off the reference")
    if report.error and len(report.error) > limit:
        return report.error[:limit] + "… (whole text in reports.json)"
    return report.error


def _run_key(device: str, runtime: str, accelerator: str, model: str, precision: str, emulated: bool) -> tuple:
    return device, runtime, accelerator, model, precision, bool(emulated)


def runs_of(reports: list[Report]) -> dict[tuple, list[Report]]:
    """The ok, raw-sample reports of a run by summary row key (device, runtime, accelerator, model,
    precision, emulated), each list in run order: the host runner's processes by index, other
    reports (phones, browsers: one report = one run) by creation time."""
    out: dict[tuple, list[Report]] = defaultdict(list)
    for r in reports:
        if r.status == "ok" and r.timing.samples_ms:
            # keyed as the store groups them (a whole-model fallback under the accelerator it ran on)
            out[_run_key(device_label(r), r.runtime.name, r.runtime.accelerator_used or r.runtime.accelerator, r.model.name,
                         r.model.precision, r.runtime.emulated)].append(r)
    for rs in out.values():
        rs.sort(key=lambda r: (r.notes.get("session", ""), int(r.notes.get("process", 0)), r.created_at))
    return out


def headline_row(label: str, a: list[Report], b: list[Report], anomalies_here: list[Anomaly], **sizes) -> Headline:
    """FreeNet-S2 (one reading) / StarNet-S4 on one runtime from their runs: pooled ratio with the
    hierarchical interval, paired when both sides are the host runner's processes 0..k-1 (k > 1,
    measured batch by batch), the stability of the ratio (paired) or of each side, and the verdict."""
    ra, rb = [r.timing.samples_ms for r in a], [r.timing.samples_ms for r in b]
    procs = [[r.notes.get("process") for r in side] for side in (a, b)]
    paired = len(ra) == len(rb) > 1 and None not in procs[0] + procs[1] and procs[0] == procs[1]
    c = compare_runs(ra, rb, paired=paired)
    stab = [stability(ra, rb)] if paired else [stability(ra), stability(rb)]
    return Headline(label, c, runs=(len(ra), len(rb)), paired=paired, stability=stab, anomalies=anomalies_here, **sizes)


def build_report(groups: list[Group], reports: list[Report], manifest: Manifest, plan: ComparePlan,
                 ceiling: Ceiling | None, measurement: Resolved | None = None, *, locate: Locate | None = None) -> CompareReport:
    """Arrange the summary tables for the templates; statistics and ratios come from `groups` as is.
    The headline's interval, stability and verdict come from the runs of its two models (one
    report per process), its anomalies from every model's efficiency on the runtimes of one device;
    `locate` (anomaly.bundle_locator) names the op, profiling only the headline's models."""
    by_id = {str(r.run_id): r for r in reports}
    runs = runs_of(reports)
    found = _anomalies(groups, locate)
    arts: dict[str, list[Artifact]] = defaultdict(list)
    for a in manifest.artifacts:
        arts[a.model].append(a)
    sized = {a.model: a for a in manifest.artifacts if a.macs}

    def ratio(model: str, attr: str) -> float | None:
        a, b = (getattr(sized[m], attr) if m in sized else None for m in (model, PAIR[1]))
        return a / b if a and b else None

    tables, head = [], []
    for g in groups:
        lines = []
        for row in g.rows:
            latest = by_id.get(row.run_ids[0]) if row.run_ids else by_id.get(row.error_run_ids[0]) if row.error_run_ids else None
            median = row.stats.median if row.comparable else None
            lines.append(Line(
                row=row, status=latest.status if latest else "error", error=_why(latest),
                parity=latest.parity.max_abs_diff if latest and latest.parity else None,
                gflops=achieved_gflops(row.macs, median),
                of_peak=fraction_of_peak(row.macs, median, ceiling) if ceiling else None,
                delegates=_coverage_cell(arts[row.model]),
            ))
        versions = sorted({by_id[i].runtime.version for r in g.rows for i in r.run_ids + r.error_run_ids if i in by_id})
        label = f"{g.runtime} {'/'.join(versions)} · {g.accelerator}" + (" (emulated)" if g.emulated else "")
        tables.append(RuntimeTable(label, g, lines))
        for row in g.rows:  # one headline row per reading of FreeNet-S2, each against StarNet-S4
            base = g.row(PAIR[1], row.precision)
            if row.model not in READINGS or not row.comparable or base is None or not base.comparable:
                continue
            a, b = (runs.get(_run_key(g.device, g.runtime, g.accelerator, m, row.precision, False), []) for m in (row.model, PAIR[1]))
            if not a or not b:
                continue
            here = [x for x in found.get((g.device, g.accelerator, row.precision), [])
                    if x.runtime == g.runtime and x.model in (row.model, PAIR[1])]
            head.append(headline_row(label, a, b, here, mac_ratio=ratio(row.model, "macs"), param_ratio=ratio(row.model, "params"),
                                     model=row.model, reading=READINGS[row.model]))
    listed = list({(x.model, x.runtime, x.relative): x for h in head for x in h.anomalies}.values())
    return CompareReport(
        generated=datetime.now(timezone.utc), bundle_id=manifest.bundle_id,
        device=groups[0].device if groups else "—", plan=plan, ceiling=ceiling, headline=head, tables=tables,
        exports=export_rows(manifest.artifacts), measurement=measurement or plan.measurement(),
        anomalies=sorted(listed, key=lambda x: x.relative),
    )


def _anomalies(groups: list[Group], locate: Locate | None) -> dict[tuple, list[Anomaly]]:
    """Runtime anomalies per (device, hardware, precision): every comparable model's GFLOP/s on
    each runtime against its best runtime on the same hardware (the CPU runtimes — cpu, xnnpack,
    wasm, ... — compared with each other; a GPU accelerator only with itself). Only the headline's
    models get an op named (a per-op profile each: minutes for the whole suite, seconds for three).
    Keyed by (device, accelerator, precision) of every group, for the headline's lookup."""
    by_hw: dict[tuple, list[Anomaly]] = {}
    for key, found in table_anomalies(groups).items():
        if locate is not None and key[1] == "cpu":  # the per-op profilers run the CPU paths
            named = []
            for x in found:
                blame = locate(x.model, x.runtime, x.best_runtime) if x.model in (*READINGS, PAIR[1]) else None
                named.append(replace(x, op=blame.op, op_ms=blame.ms, op_ms_best=blame.ms_best, profiler=blame.profiler) if blame else x)
            found = named
        by_hw[key] = found
    return {(g.device, g.accelerator, r.precision): by_hw.get((g.device, hardware(g.accelerator), r.precision), [])
            for g in groups for r in g.rows}


# ---------------------------------------------------------------------------------------------
# rendering: templates and plots


def write_report(report: CompareReport, out: Path, reports: list[Report] | None = None) -> None:
    """report.md, report.html, the PNG plots and (when given) reports.json into `out`."""
    from .dashboard import env

    out.mkdir(parents=True, exist_ok=True)
    _latency_plot(report, out / LATENCY_PLOT)
    if report.headline:
        _ratio_plot(report.headline, out / RATIO_PLOT)
    (out / "report.md").write_text(env.get_template("compare.md").render(c=report))
    (out / "report.html").write_text(env.get_template("compare.html").render(c=report))
    if reports is not None:
        (out / "reports.json").write_text(json.dumps([json.loads(r.model_dump_json()) for r in reports], indent=1))


def _latency_plot(report: CompareReport, path: Path) -> None:
    from matplotlib.figure import Figure

    from .dashboard import draw_latency_vs_macs

    real = [t for t in report.tables if not t.group.emulated]
    cols = min(2, max(1, len(real)))  # two panels a row: readable at a page's width
    rows = max(1, -(-len(real) // cols))
    fig = Figure(figsize=(6.5 * cols, 4.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[len(real):][1 if not real else 0:]:
        ax.set_visible(False)
    for ax, t in zip(axes, real):
        draw_latency_vs_macs(ax, t.group.rows, label_precision=False)
        ax.set_title(t.label, fontsize=9)
    if not real:
        axes[0].text(0.5, 0.5, "no real-hardware runtime measured", ha="center", va="center", transform=axes[0].transAxes)
    fig.suptitle("Latency vs MACs on this host (lower-left is better)")
    fig.savefig(path, dpi=110)


def _ratio_plot(head: list[Headline], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 0.6 * max(2, len(head) + len(PAPER_CLAIMS)) + 1), layout="constrained")
    ax = fig.subplots()
    vals = [h.comparison.ratio for h in head]
    def edge(c: Comparison, side: str) -> float:  # the next-run interval, else the confidence interval, else none
        v = getattr(c, f"next_{side}") if c.next_low is not None else getattr(c, side)
        return c.ratio if v is None else v

    lows = [h.comparison.ratio - edge(h.comparison, "low") for h in head]
    highs = [edge(h.comparison, "high") - h.comparison.ratio for h in head]
    colours = {m: c for m, c in zip(READINGS, ("tab:red", "tab:orange"))}
    ax.barh([f"{h.runtime}\n{h.reading}" for h in head], vals, xerr=[lows, highs], color=[colours[h.model] for h in head],
            alpha=0.7, capsize=4, label="measured here (95% next-run interval)")
    for i, (name, v) in enumerate(PAPER_CLAIMS.items()):
        ax.axvline(v, linestyle="--", color=f"C{i + 2}", label=f"paper: {name} {v}")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("FreeNet-S2 (each reading) / StarNet-S4 latency (<1: FreeNet faster)")
    ax.legend(fontsize=8, loc="lower right")
    fig.savefig(path, dpi=110)
