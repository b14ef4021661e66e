"""Dashboard HTML and the latency-vs-MACs plot, rendered on the server.

This module owns the human-facing pages: the index (one table per device x runtime x
accelerator from `device_bench.summary`, FreeNet vs StarNet vs MobileNet with ratio columns and
intervals, emulated runs flagged), one page per stored report, and the latency-vs-MACs SVG drawn
with matplotlib (no JavaScript, no CDN: the server may have no internet). Missing values show "—".
Its Jinja environment (`env`) and the family-coloured plot (`draw_latency_vs_macs`) are shared
with the `freenet compare` report, so both look and escape alike.
"""

from __future__ import annotations

import io
import json
import threading
from urllib.parse import urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from device_bench.anomaly import Anomaly, hardware, table_anomalies
from device_bench.schema import Report
from device_bench.stats import fmt, fmt_ci, fmt_ratio
from device_bench.store import Store
from device_bench.summary import PAIR, ModelRow

# Autoescape by extension: *.html templates escape every value exactly once; *.md templates
# (the compare report's Markdown) are plain text.
env = Environment(loader=PackageLoader("device_bench", "templates"), autoescape=select_autoescape(),
                  trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
env.filters["ms"] = fmt
env.filters["ratio"] = fmt_ratio
env.filters["ci"] = fmt_ci  # the confidence interval beside a ratio's next-run interval
env.filters["md_code"] = lambda text: "" if not text else "`" + " ".join(str(text).split()).replace("`", "'").replace("|", "\\|") + "`"
env.globals["PAIR"] = PAIR
# matplotlib's global state (font cache, rcParams) is not thread-safe; the server renders from
# worker threads.
_plot_lock = threading.Lock()
FAMILY_COLORS = {"FreeNet": "#d62728", "StarNet": "#1f77b4", "MobileNet": "#2ca02c", "other": "#7f7f7f"}


PAGE_SIZE = 50  # rows of the "latest reports" table per page


def render_index(store: Store, *, baseline: str | None = None, device: str | None = None,
                 runtime: str | None = None, accelerator: str | None = None, cursor: str | None = None) -> str:
    """The dashboard: the summary tables (memoised in the store, see summary.StatsMemo) and one
    page of the latest reports, older pages by cursor (cost independent of the page's depth)."""
    page = store.page(limit=PAGE_SIZE, cursor=cursor, device=device, runtime=runtime, accelerator=accelerator)
    filters = {"device": device, "runtime": runtime, "accelerator": accelerator}
    # The tables are a pure function of the groups' windows: keyed by every matching group's
    # (id, n_reports) (see Store.summary_version), unchanged reports are not summarised or rendered again.
    # Kept in the store's own memo: a version is only meaningful for the database it was read from.
    key = ("dashboard", store.summary_version(**filters), baseline, tuple(filters.items()))
    groups_html = store.memo.get(key)
    if groups_html is None:
        groups = store.summary(baseline=baseline, with_samples=False, **filters)
        for g in groups:
            g.plot_url = "/plots/latency_vs_macs.svg?" + urlencode(
                {"device": g.device, "runtime": g.runtime, "accelerator": g.accelerator})
        groups_html = Markup(env.get_template("groups.html").render(groups=groups, baseline=baseline,
                                                                    anomalies=row_anomalies(groups)))
        store.memo.put(key, groups_html)
    selected = {"device": device, "runtime": runtime, "accelerator": accelerator}
    keep = {k: v for k, v in {**selected, "baseline": baseline}.items() if v}
    return env.get_template("index.html").render(
        groups_html=groups_html,
        empty=groups_html.strip() == "",
        latest=page.rows,
        older_url="/?" + urlencode({**keep, "cursor": page.next_cursor}) + "#latest" if page.next_cursor else None,
        newest_url="/?" + urlencode(keep) + "#latest" if cursor else None,
        total=store.count(),
        baseline=baseline,
        choices={"model": store.distinct("model"), "device": store.distinct("device"),
                 "runtime": store.distinct("runtime"), "accelerator": store.distinct("accelerator")},
        selected=selected,
    )


def row_anomalies(groups: list) -> dict[tuple, Anomaly]:
    """(device, runtime, accelerator, model, precision) -> its runtime anomaly (anomaly.table_anomalies:
    the same efficiency test as the `freenet compare` report; the dashboard has no artifact to
    profile, so no op is named here)."""
    found = table_anomalies(groups)
    return {(g.device, g.runtime, g.accelerator, a.model, r.precision): a
            for g in groups for r in g.rows
            for a in found.get((g.device, hardware(g.accelerator), r.precision), [])
            if a.runtime == g.runtime and a.model == r.model}


def render_report(report: Report) -> str:
    return env.get_template("report.html").render(
        r=report, text=json.dumps(json.loads(report.model_dump_json()), indent=2))


def latency_vs_macs_svg(store: Store, *, device: str | None = None, runtime: str | None = None,
                        accelerator: str | None = None) -> bytes:
    """Median latency (p10–p90 bars) against GMACs, one colour per model family.

    Emulated rows and rows without MACs or raw samples are left out (the title says how many)."""
    groups = store.summary(device=device, runtime=runtime, accelerator=accelerator, with_ratios=False,
                           with_samples=False)
    rows = [r for g in groups for r in g.rows]
    with _plot_lock:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.0), layout="constrained")
        ax = fig.subplots()
        left_out = draw_latency_vs_macs(ax, rows)
        title = " · ".join(v for v in (device, runtime, accelerator) if v) or "all devices"
        ax.set_title(f"{title}" + (f" ({left_out} rows without MACs/samples or emulated not shown)" if left_out else ""),
                     fontsize=8)
        buf = io.BytesIO()
        fig.savefig(buf, format="svg")
    return buf.getvalue()


def draw_latency_vs_macs(ax, rows: list[ModelRow], *, label_precision: bool = True) -> int:
    """Median latency (p10–p90 bars) against GMACs on `ax`, one colour per model family, with a
    legend. Emulated rows and rows without MACs or raw samples are left out; returns how many."""
    points = [r for r in rows if r.comparable and r.macs]
    for family, color in FAMILY_COLORS.items():
        fam = [r for r in points if FAMILY_COLORS.get(r.family, FAMILY_COLORS["other"]) == color]
        if not fam:
            continue
        x = [r.macs / 1e9 for r in fam]
        y = [r.stats.median for r in fam]
        err = [[r.stats.median - r.stats.p10 for r in fam], [r.stats.p90 - r.stats.median for r in fam]]
        ax.errorbar(x, y, yerr=err, fmt="o", color=color, label=family, capsize=3)
        for r, xi, yi in zip(fam, x, y):
            ax.annotate(f"{r.model} {r.precision}" if label_precision else r.model, (xi, yi),
                        textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel("GMACs per inference")
    ax.set_ylabel("median latency (ms), p10–p90")
    if points:
        ax.legend(fontsize=8, title="family", title_fontsize=8)
    else:
        ax.text(0.5, 0.5, "no real-hardware runs with MACs yet", ha="center", va="center", transform=ax.transAxes)
    ax.grid(True, alpha=0.3)
    return len(rows) - len(points)
