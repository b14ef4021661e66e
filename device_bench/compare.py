"""The main job, `freenet compare`: export the comparison suite, measure it here, store, report.

Flow (one way): registry models -> export bundle (every format, verified, reused when up to date)
-> host runner (each runtime in its own processes, interleaved rounds) -> local store (SQLite by
default) -> a report directory with Markdown, HTML and PNG plots. The first table is the headline:
FreeNet-S2 / StarNet-S4 per runtime with a bootstrap interval, next to the MAC and parameter ratios
and the paper's claims. Mobile-GPU delegate coverage from the manifest is shown next to every
speed number, so that a model that would fall back to the CPU on a phone never passes silently.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from export.api import ExportPlan, export_bundle
from export.manifest import Artifact, Manifest

from .roofline import CpuPeak, achieved_gflops, detect, fraction_of_peak
from .runner import DEFAULT_RUNTIMES, BenchPlan, run_bench, store_sink
from .schema import Report
from .stats import compare, compare_runs, fmt, fmt_ratio, row_verdict, stability, summarize

SUITE = [
    "freenet_s1", "freenet_s2", "freenet_s3", "freenet_s4",
    "starnet_s1", "starnet_s2", "starnet_s3", "starnet_s4",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenetv4_conv_small",
]
PAPER_CLAIMS = {"desktop GPU": 0.71, "mobile GPU": 0.87}  # FreeNet-S2 / StarNet-S4 latency (1 / speed-up)
PAIR = ("freenet_s2", "starnet_s4")


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
    warmup: int = 10
    threads: int = 1
    processes: int = 5  # fresh worker processes per artifact: the headline interval is between-process
    profile_anomalies: bool = True  # name the op of a runtime anomaly with a per-op profile of the artifact
    input_size: int | None = None  # None: each model's own (224); smaller only for quick checks

    @property
    def bundle(self) -> Path:
        return self.work_dir / "bundle"

    @property
    def db(self) -> str:
        return self.db_url or f"sqlite:///{(self.work_dir / 'freenet.db').resolve()}"


Progress = Callable[[str, str, int, int], None]  # (phase, what, done, total)


def run_compare(plan: ComparePlan, progress: Progress | None = None) -> Path:
    plan.work_dir.mkdir(parents=True, exist_ok=True)
    eplan = ExportPlan(models=plan.models, formats=plan.formats, precisions=plan.precisions, out_dir=plan.bundle, on_existing="reuse",
                        input_size=plan.input_size)
    manifest = export_bundle(eplan, (lambda w, d, t: progress("export", w, d, t)) if progress else None)
    bplan = BenchPlan(plan.bundle, runtimes=plan.runtimes, models=plan.models, precisions=["fp32"], warmup=plan.warmup,
                      rounds=plan.rounds, runs_per_round=plan.runs_per_round, threads=plan.threads,
                      processes=plan.processes)
    reports = run_bench(bplan, store_sink(plan.db), (lambda w, d, t: progress("measure", w, d, t)) if progress else None)
    out = plan.work_dir / "report"
    from .anomaly import bundle_locator

    write_report(reports, manifest, out, plan, locate=bundle_locator(plan.bundle) if plan.profile_anomalies else None)
    return out


# ---------------------------------------------------------------------------------------------
# report


def _coverage_cell(arts: list[Artifact]) -> str:
    """Mobile-delegate verdicts of a model's artifacts: 'LiteRT-GPU ✓ · NNAPI ✓ 1p · XNNPACK ✓'."""
    parts = []
    for label, fmt_, target in (("LiteRT GPU", "tflite", "litert-gpu"), ("NNAPI", "onnx", None), ("XNNPACK", "executorch", "executorch-xnnpack"), ("Vulkan", "executorch", "executorch-vulkan")):
        cands = [a for a in arts if a.format == fmt_ and (target is None or a.target == target) and a.precision == "fp32"]
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


def _rows(reports: list[Report]) -> dict[str, list[dict]]:
    by_rt: dict[str, list[dict]] = defaultdict(list)
    for r in reports:
        key = f"{r.runtime.name} {r.runtime.version} ({r.runtime.accelerator}{', emulated' if r.runtime.emulated else ''})"
        by_rt[key].append({"report": r, "stats": summarize(r.timing.samples_ms) if r.status == "ok" else None})
    return by_rt


def runs_by_model(reports: list[Report]) -> dict[str, dict[str, list[list[float]]]]:
    """runtime key -> model -> the samples of each run (process), in process order. One report per
    process (notes["process"]) from the host runner; several reports of one device/model from
    the apps pool the same way (each report one run)."""
    out: dict[str, dict[str, list[tuple[int, list[float]]]]] = defaultdict(lambda: defaultdict(list))
    for rt, rows in _rows(reports).items():
        for x in rows:
            r = x["report"]
            if r.status == "ok" and not r.runtime.emulated:
                out[rt][r.model.name].append((int(r.notes.get("process", len(out[rt][r.model.name]))), r.timing.samples_ms))
    return {rt: {m: [s for _, s in sorted(v, key=lambda t: t[0])] for m, v in ms.items()} for rt, ms in out.items()}


def headline(reports: list[Report], manifest: Manifest, locate=None) -> list[dict]:
    """FreeNet-S2 / StarNet-S4 per runtime (real hardware only): the ratio with a hierarchical
    interval over processes, the runs' stability, runtime anomalies of either model on that
    runtime (anomaly.py), and the verdict text ("unstable: ...", "faster, driven by a runtime
    anomaly in <op>", ...)."""
    from .anomaly import Row, anomalies

    arts = {a.model: a for a in manifest.artifacts if a.macs}
    mac_ratio = arts[PAIR[0]].macs / arts[PAIR[1]].macs if PAIR[0] in arts and PAIR[1] in arts else None
    par_ratio = arts[PAIR[0]].params / arts[PAIR[1]].params if PAIR[0] in arts and PAIR[1] in arts else None
    runs = runs_by_model(reports)
    names = {rt: next(x["report"].runtime.name for x in rows) for rt, rows in _rows(reports).items()}
    rows = [Row(m, names[rt], arts[m].macs, float(summarize([v for run in rs for v in run]).median))
            for rt, ms in runs.items() for m, rs in ms.items() if m in arts]
    found = anomalies(rows, locate=locate)
    out = []
    for rt, ms in runs.items():
        if PAIR[0] in ms and PAIR[1] in ms:
            a, b = ms[PAIR[0]], ms[PAIR[1]]
            paired = len(a) == len(b) > 1
            c = compare_runs(a, b, paired=paired)
            stab = [stability(a, b)] if paired else [stability(a), stability(b)]
            mine = [x for x in found if x.runtime == names[rt] and x.model in PAIR]
            op = next((x.op for x in mine if x.op), None)
            out.append({"runtime": rt, "comparison": c, "mac_ratio": mac_ratio, "param_ratio": par_ratio,
                        "stability": stab, "anomalies": mine, "verdict": row_verdict(c, *stab, anomaly_op=op)})
    return out


def _plot(reports: list[Report], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _rows(reports)
    real = {k: v for k, v in groups.items() if "emulated" not in k}
    n = max(1, len(real))
    fig, axes = plt.subplots(1, n, figsize=(5 * n, 4.2), squeeze=False)
    colors = {"freenet": "tab:red", "starnet": "tab:blue", "mobilenet": "tab:green"}
    for ax, (rt, rows) in zip(axes[0], real.items()):
        for x in rows:
            r, s = x["report"], x["stats"]
            if s is None or s.median is None or not r.model.macs:
                continue
            fam = next((f for f in colors if r.model.name.startswith(f)), "other")
            ax.errorbar(r.model.macs / 1e9, s.median, yerr=[[s.median - s.p10], [s.p90 - s.median]], fmt="o",
                        color=colors.get(fam, "gray"), capsize=3)
            ax.annotate(r.model.name.replace("_conv_small", "").replace("mobilenet", "mbn"), (r.model.macs / 1e9, s.median),
                        fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_title(rt, fontsize=9)
        ax.set_xlabel("GMACs (224x224)")
        ax.set_ylabel("median latency, ms (bars: p10-p90)")
        ax.grid(alpha=0.3)
    fig.suptitle("Latency vs MACs on this host (lower-left is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _ratio_plot(head: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 * max(2, len(head) + len(PAPER_CLAIMS)) + 1))
    labels, vals, lows, highs = [], [], [], []
    for h in head:
        c = h["comparison"]
        labels.append(h["runtime"])
        vals.append(c.ratio)
        lows.append(c.ratio - (c.low if c.low is not None else c.ratio))
        highs.append((c.high if c.high is not None else c.ratio) - c.ratio)
    ax.barh(labels, vals, xerr=[lows, highs], color="tab:red", alpha=0.7, capsize=4, label="measured here")
    for i, (name, v) in enumerate(PAPER_CLAIMS.items()):
        ax.axvline(v, linestyle="--", color=f"C{i + 2}", label=f"paper: {name} {v}")
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_xlabel("FreeNet-S2 / StarNet-S4 latency (<1: FreeNet faster)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(reports: list[Report], manifest: Manifest, out: Path, plan: ComparePlan, locate=None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    peak = detect()
    head = headline(reports, manifest, locate)
    arts_by_model: dict[str, list[Artifact]] = defaultdict(list)
    for a in manifest.artifacts:
        arts_by_model[a.model].append(a)
    _plot(reports, out / "latency_vs_macs.png")
    if head:
        _ratio_plot(head, out / "freenet_s2_vs_starnet_s4.png")
    md = _markdown(reports, manifest, head, arts_by_model, peak, plan)
    (out / "report.md").write_text(md)
    (out / "report.html").write_text(_html(md))
    (out / "reports.json").write_text(json.dumps([json.loads(r.model_dump_json()) for r in reports], indent=1))


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _markdown(reports, manifest, head, arts_by_model, peak: CpuPeak, plan: ComparePlan) -> str:
    dev = reports[0].device if reports else None
    lines = [
        "# FreeNet vs StarNet vs MobileNet on this host",
        "",
        f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by `freenet compare`; bundle `{manifest.bundle_id}`; "
        f"device: {dev.manufacturer + ' ' + dev.model if dev else '—'}; batch 1, fp32, {plan.threads} thread(s), "
        f"{plan.warmup} warm-ups, {plan.rounds} interleaved rounds x {plan.runs_per_round} runs per model.",
        "",
        "## FreeNet-S2 / StarNet-S4",
        "",
        f"Latency ratio of medians with a 95% hierarchical bootstrap interval over {plan.processes} fresh processes per model "
        "(a difference is called only when the interval excludes 1; a row whose processes disagree is 'unstable' and gets no verdict). "
        "The paper's claims are for a desktop GPU and a mobile GPU, not for this CPU: they are shown for reference.",
        "",
    ]
    rows = [[h["runtime"], fmt_ratio(h["comparison"]), h["verdict"], fmt(h["mac_ratio"], 3), fmt(h["param_ratio"], 3),
             " / ".join(f"{v} ({k})" for k, v in PAPER_CLAIMS.items())] for h in head]
    lines += _table(["runtime", "FreeNet-S2 / StarNet-S4", "verdict", "MAC ratio", "param ratio", "paper claim"], rows) if rows else ["(no runtime measured both models)"]
    notes = [x.describe() for h in head for x in h["anomalies"]]
    if notes:
        lines += ["", "Runtime anomalies (a model below 40 % of the GFLOP/s it reaches on its best runtime; the op from a per-op profile):", ""]
        lines += [f"- {n}" for n in notes]
    lines += ["", "![ratio](freenet_s2_vs_starnet_s4.png)" if head else "", "", "## Every model, per runtime", "",
              f"Roofline: {peak.describe(plan.threads)}. GFLOP/s = 2 x MACs / median. Mobile delegates: the static and real "
              "delegate checks of the exported artifacts (✓ = every op on the delegate, in one partition).", ""]
    for rt, items in _rows(reports).items():
        lines += [f"### {rt}", ""]
        ref = next((x for x in items if x["report"].model.name == PAIR[1] and x["stats"] is not None), None)
        trs = []
        for x in sorted(items, key=lambda x: x["report"].model.name):
            r, s = x["report"], x["stats"]
            if s is None:
                trs.append([r.model.name, "error", "—", "—", "—", "—", "—", html.escape((r.error or "")[:120])])
                continue
            ratio = compare(r.timing.samples_ms, ref["report"].timing.samples_ms) if ref and not r.runtime.emulated else None
            trs.append([
                f"[{r.model.name}](reports.json)", fmt(s.median), f"{fmt(s.p10)}–{fmt(s.p90)}", fmt_ratio(ratio),
                fmt(achieved_gflops(r.model.macs, s.median), 1), fmt(fraction_of_peak(r.model.macs, s.median, peak, plan.threads), 2),
                fmt(r.parity.max_abs_diff if r.parity else None, 2), _coverage_cell(arts_by_model[r.model.name]),
            ])
        lines += _table(["model", "median ms", "p10–p90", "vs StarNet-S4", "GFLOP/s", "of peak", "parity max|Δ|", "mobile delegates"], trs)
        lines.append("")
    lines += ["![latency vs MACs](latency_vs_macs.png)", "", "## Export status", ""]
    from export.api import summarize as export_rows

    erows = [[r["model"], r["format"], r["target"], r["precision"], r["status"], r["parity"] or "—", r["coverage"] or "—", r["reason"] or ""]
             for r in export_rows(manifest.artifacts)]
    lines += _table(["model", "format", "target", "precision", "status", "parity", "delegate coverage", "reason"], erows)
    lines.append("")
    return "\n".join(lines)


def _html(md: str) -> str:
    """Render the report's small Markdown subset (headings, tables, images, links) as HTML."""
    import re

    out, in_table = [], False

    def inline(t: str) -> str:
        t = html.escape(t, quote=False)
        t = re.sub(r"!\[([^\]]*)\]\(([^)]+)\)", r'<img alt="\1" src="\2">', t)
        t = re.sub(r"\[([^\]]+)\]\(([^)]+)\)", r'<a href="\2">\1</a>', t)
        return re.sub(r"`([^`]+)`", r"<code>\1</code>", t)

    for line in md.splitlines():
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            if all(set(c) <= {"-"} for c in cells):
                continue
            if not in_table:
                out.append("<table><tr>" + "".join(f"<th>{inline(c)}</th>" for c in cells) + "</tr>")
                in_table = True
            else:
                out.append("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in cells) + "</tr>")
            continue
        if in_table:
            out.append("</table>")
            in_table = False
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{inline(line)}</p>")
    if in_table:
        out.append("</table>")
    style = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}th{background:#f3f3f3}img{max-width:100%}")
    return f"<!doctype html><html><head><meta charset='utf-8'><title>freenet compare</title><style>{style}</style></head><body>{''.join(out)}</body></html>"
