"""The `freenet compare` report from stored reports, without exporting anything: the tables come
from the typed summary (read back from the store), Markdown and HTML from the Jinja templates,
error texts escaped exactly once, parity failures never shown as speed, the roofline against a
measured ceiling, and plots with a family legend."""

from __future__ import annotations

import json
import os
import re

import pytest

from device_bench.compare import ComparePlan, build_report, write_report
from device_bench.roofline import ABOVE_CEILING, Ceiling, detect
from device_bench.schema import Report
from device_bench.stats import compare
from device_bench.store import Store, device_label
from device_bench.summary import summarize_run
from export.manifest import Artifact, Manifest

NASTY = '<tag> & "quotes"'
FAST = [10.0, 10.2, 9.9, 10.1, 10.0, 10.3, 9.8, 10.1]
SLOW = [20.0, 20.4, 19.8, 20.2, 20.0, 20.6, 19.6, 20.2]


def _artifact(model: str, family: str, macs: int, params: int) -> Artifact:
    return Artifact(id=f"{model}.onnx.onnxruntime-cpu.fp32", model=model, model_family=family, config_hash="0",
                    format="onnx", target="onnxruntime-cpu", precision="fp32", status="ok", macs=macs, params=params)


@pytest.fixture
def stored(tmp_path, make_report):
    """One run on one device: S2 twice as fast as S4 on onnxruntime, an error row with a nasty
    text, a parity failure, an emulated GPU row, and an older run of S2 that must not be pooled."""
    def rep(i, name, family, samples, macs=None, params=None, **top):
        doc = make_report(i, model=name, samples=samples, **top)
        doc["model"].update(family=family, **({"macs": macs} if macs else {}), **({"params": params} if params else {}))
        return Report.model_validate(doc)

    reports = [
        rep(1, "freenet_s2", "freenet", FAST, macs=500_000_000),
        rep(2, "starnet_s4", "starnet", SLOW, macs=1_000_000_000, params=5_000_000),
        rep(3, "mobilenet_v2", "mobilenet", [], status="error", error=NASTY),
        rep(4, "starnet_s1", "starnet", FAST, status="parity_failed",
            parity={"reference_checked": True, "max_abs_diff": 4.5, "rel_diff": 0.9, "tolerance": 1e-3, "passed": False}),
        rep(5, "freenet_s2", "freenet", FAST, runtime={"accelerator": "gpu", "emulated": True}),
        rep(6, "freenet_s1", None, FAST),  # a report from before model.family: the store's one fallback
    ]
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    older = rep(0, "freenet_s2", "freenet", [100.0] * 8, created_at="2026-11-24T10:00:07Z")
    for r in [older, *reports]:
        store.add_report(r)
    this_run = reports
    manifest = Manifest(bundle_id="b1", artifacts=[_artifact("freenet_s2", "freenet", 500_000_000, 4_000_000),
                                                  _artifact("starnet_s4", "starnet", 1_000_000_000, 5_000_000)])
    ceiling = Ceiling(gflops=100.0, threads=1, method="test", derived=detect({"flags": "fma avx2", "cpu MHz": "2600"}))
    return store, this_run, manifest, ceiling, tmp_path


def _render(stored):
    store, reports, manifest, ceiling, tmp = stored
    groups = summarize_run(store, [r.run_id for r in reports])
    report = build_report(groups, reports, manifest, ComparePlan(work_dir=tmp), ceiling)
    write_report(report, tmp / "report", reports)
    return report, (tmp / "report" / "report.md").read_text(), (tmp / "report" / "report.html").read_text()


def test_tables_come_from_the_summary_of_this_run_only(stored, monkeypatch):
    import device_bench.compare as cmp

    # the claims column shows the data, not a copy in the template: render claims that are not the paper's
    monkeypatch.setattr(cmp, "PAPER_CLAIMS", {"desktop GPU": 0.64, "phone NPU": 0.93})
    report, md, html = _render(stored)
    cpu = next(t for t in report.tables if t.group.accelerator == "cpu")
    s2 = cpu.group.row("freenet_s2")
    assert list(s2.samples) == FAST and s2.runs == 1  # the older 100 ms run is not pooled in
    assert [h.runtime for h in report.headline] == [cpu.label] and cpu.label == "onnxruntime 1.32.0 · cpu"
    exact = compare(FAST, SLOW)
    assert report.headline[0].comparison.ratio == pytest.approx(exact.ratio) == pytest.approx(0.5, abs=0.02)
    assert report.headline[0].mac_ratio == pytest.approx(0.5) and report.headline[0].param_ratio == pytest.approx(0.8)
    head = md.split("## Every model")[0]
    row = next(line for line in head.splitlines() if line.startswith("| onnxruntime"))
    # one run per side: its next-run interval comes from the samples alone (the same as the CI to 2 digits)
    assert "| ours (dense mixer) | 0.50× [0.49–0.51] | [0.49–0.51] | faster | 0.5 (outside ±15%: not a like-for-like size) | 0.8 |" in row
    assert "| 0.64 (desktop GPU) / 0.93 (phone NPU) |" in row
    assert "0.64 (desktop GPU) / 0.93 (phone NPU)</td>" in html
    # 500 MMACs in 10.05 ms = 99.5 GFLOP/s, of a 100 GFLOP/s ceiling
    s2_line = next(line for line in md.splitlines() if line.startswith("| [freenet_s2]"))
    assert "| 99.5 |" in s2_line and "| 0.995 |" in s2_line


def test_family_comes_from_the_report(stored):
    report, md, html = _render(stored)
    fams = {x.row.model: x.row.family for t in report.tables for x in t.lines}
    assert fams == {"freenet_s1": "FreeNet", "freenet_s2": "FreeNet", "starnet_s4": "StarNet", "mobilenet_v2": "MobileNet",
                    "starnet_s1": "StarNet"}
    assert "| [freenet_s2](reports.json) | FreeNet |" in md and '<td class="l">MobileNet</td>' in html


def test_error_text_is_escaped_exactly_once_in_html(stored):
    _, md, html = _render(stored)
    assert "&lt;tag&gt; &amp; &#34;quotes&#34;" in html
    assert "&amp;lt;" not in html and "&amp;amp;" not in html and "<tag>" not in html
    assert '`<tag> & "quotes"`' in md  # Markdown: verbatim, in a code span


def test_parity_failed_is_never_a_speed_result(stored):
    report, md, html = _render(stored)
    line = next(x for t in report.tables for x in t.lines if x.row.model == "starnet_s1")
    assert line.status == "parity_failed" and not line.speed and line.gflops is None and line.of_peak is None
    md_row = next(r for r in md.splitlines() if r.startswith("| starnet_s1"))
    assert "parity failed" in md_row and "relative difference 9.0e-01 > tolerance 1e-03" in md_row
    cells = [c.strip() for c in md_row.strip("|").split("|")]
    assert cells[3:8] == ["—"] * 5  # no median, interval, ratio or roofline
    assert cells[8] == "4.50"
    assert "parity failed" in html


def test_emulated_rows_are_shown_but_never_speed(stored):
    report, md, _ = _render(stored)
    gpu = next(t for t in report.tables if t.group.accelerator == "gpu")
    assert gpu.group.emulated and "(emulated)" in gpu.label and not any(x.speed for x in gpu.lines)
    assert all(h.runtime != gpu.label for h in report.headline)
    assert "emulated: not a speed result" in md


def test_fraction_above_the_ceiling_says_why(stored):
    store, reports, manifest, _, tmp = stored
    low = Ceiling(gflops=50.0, threads=1, method="test", derived=detect({}))
    report = build_report(summarize_run(store, [r.run_id for r in reports]), reports, manifest, ComparePlan(work_dir=tmp), low)
    write_report(report, tmp / "low")
    md = (tmp / "low" / "report.md").read_text()
    s2_line = next(line for line in md.splitlines() if line.startswith("| [freenet_s2]"))
    assert "1.99 †" in s2_line and f"† {ABOVE_CEILING}" in md
    assert f'title="{ABOVE_CEILING}"' in (tmp / "low" / "report.html").read_text()


def test_html_is_the_same_report_as_markdown(stored):
    _, md, html = _render(stored)
    for needle in ("FreeNet-S2 / StarNet-S4", "onnxruntime 1.32.0 · cpu", "0.71 (desktop GPU)", "Export status", "measured ceiling 100 GFLOP/s"):
        assert needle in md and needle in html, needle
    assert re.search(r'<img class="plot" src="latency_vs_macs.png"', html) and "![latency vs MACs](latency_vs_macs.png)" in md
    assert "<table" in html and "|---" not in html


def test_plots_have_a_family_legend(stored, monkeypatch):
    from matplotlib.axes import Axes

    legends = []
    real = Axes.legend

    def spy(self, *a, **k):
        leg = real(self, *a, **k)
        legends.append([t.get_text() for t in leg.get_texts()])
        return leg

    monkeypatch.setattr(Axes, "legend", spy)
    _render(stored)
    tmp = stored[4]
    assert ["FreeNet", "StarNet"] in legends  # latency vs MACs, by family (MobileNet errored)
    assert any("measured here (95% next-run interval)" in labels for labels in legends)  # ratio plot
    assert (tmp / "report" / "latency_vs_macs.png").stat().st_size > 10_000
    assert json.loads((tmp / "report" / "reports.json").read_text())[0]["model"]["name"] == "freenet_s2"


def test_summarize_run_refuses_a_run_the_store_does_not_have(stored):
    store, reports, *_ = stored
    with pytest.raises(RuntimeError, match="not in the store"):
        summarize_run(store, [r.run_id for r in reports] + ["00000000-0000-0000-0000-000000000000"])
    with pytest.raises(RuntimeError, match="6 of this run's 6 reports"):
        summarize_run(store, [r.run_id for r in reports], device="another phone")
    assert len(summarize_run(store, [r.run_id for r in reports], device=device_label(reports[0]))) == 2


def test_headline_has_a_row_per_reading_with_its_size_and_budget(tmp_path, make_report):
    """FreeNet-S2 in our reading and in Equimo's, each against StarNet-S4; the Equimo reading is
    much smaller and the report says it is outside the ±15% budget."""
    def rep(i, name, family, samples):
        doc = make_report(i, model=name, samples=samples)
        doc["model"]["family"] = family
        return Report.model_validate(doc)

    reports = [rep(1, "freenet_s2", "freenet", SLOW), rep(2, "freenet_s2_equimo", "freenet", FAST), rep(3, "starnet_s4", "starnet", SLOW)]
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    for r in reports:
        store.add_report(r)
    manifest = Manifest(bundle_id="b2", artifacts=[_artifact("freenet_s2", "freenet", 993_000_000, 7_800_000),
                                                  _artifact("freenet_s2_equimo", "freenet", 854_000_000, 6_900_000),
                                                  _artifact("starnet_s4", "starnet", 1_050_000_000, 7_480_000)])
    report = build_report(summarize_run(store, [r.run_id for r in reports]), reports, manifest, ComparePlan(work_dir=tmp_path), None)
    write_report(report, tmp_path / "out")
    by = {h.model: h for h in report.headline}
    assert set(by) == {"freenet_s2", "freenet_s2_equimo"}
    assert by["freenet_s2"].comparison.ratio == pytest.approx(1.0, abs=0.02) and by["freenet_s2"].in_budget is True
    assert by["freenet_s2_equimo"].comparison.ratio == pytest.approx(0.5, abs=0.02)
    assert by["freenet_s2_equimo"].mac_ratio == pytest.approx(854 / 1050) and by["freenet_s2_equimo"].in_budget is False
    md = (tmp_path / "out" / "report.md").read_text()
    equimo = next(line for line in md.splitlines() if "| Equimo (depthwise mixer) |" in line)
    assert "0.50×" in equimo and "outside ±15%" in equimo
    ours = next(line for line in md.splitlines() if "| ours (dense mixer) |" in line)
    assert "outside" not in ours


def test_starnet_protocol_on_this_machine_says_what_it_changed():
    from device_bench.protocols import resolve

    here = resolve("starnet", cores=2, cuda=False)
    assert here.runtimes == ["onnxruntime"] and here.threads == 2
    text = here.describe()
    assert "4 threads asked, 2 used: this machine has 2 core(s)" in text and "CUDA EP not measured" in text
    assert "50 warm-ups, 500 timed runs (5 fresh processes of 2 interleaved rounds x 50" in text and "permute + Linear" in text
    assert "split over fresh worker processes" in text
    two = resolve("starnet", cores=2, cuda=False, processes=2).protocol  # --processes re-splits the same 500 runs
    assert (two.processes, two.rounds, two.runs_per_round, two.total_runs) == (2, 5, 50, 500)
    one = resolve("starnet", cores=2, cuda=False, processes=1).protocol
    assert (one.rounds, one.runs_per_round) == (10, 50) and "500 timed runs (10 interleaved rounds x 50)" in resolve(
        "starnet", cores=2, cuda=False, processes=1).describe()
    with pytest.raises(ValueError, match="do not split evenly over 3 processes"):
        resolve("starnet", cores=2, cuda=False, processes=3)
    gpu = resolve("starnet", cores=16, cuda=True)
    assert gpu.runtimes == ["onnxruntime", "onnxruntime-cuda"] and gpu.threads == 4
    assert not any("threads asked" in n or "not measured" in n for n in gpu.notes)
    with pytest.raises(ValueError, match="valid"):
        resolve("mobileone")


def test_cuda_session_and_runtime_refuse_without_a_cuda_gpu(tmp_path):
    import onnxruntime as ort

    from device_bench.runtimes import get_runtime
    from export.backends import get_format
    from export.backends.base import NotRunnableHere

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has a CUDA EP: the refusal path cannot be exercised here")
    f = tmp_path / "m.onnx"
    f.write_bytes(b"never loaded")
    with pytest.raises(NotRunnableHere, match="onnxruntime-gpu"):
        get_format("onnx").open(f, "onnxruntime-cpu", 1, "cuda")
    with pytest.raises(RuntimeError, match="onnxruntime-gpu"):
        get_runtime("onnxruntime-cuda").check_available()


@pytest.mark.slow
def test_compare_under_the_starnet_protocol_labels_every_number(tmp_path):
    from device_bench.compare import run_compare

    plan = ComparePlan(models=["freenet_tiny", "starnet_s050"], formats=["onnx"], precisions=["fp32"], work_dir=tmp_path,
                       input_size=64, protocol="starnet")
    out = run_compare(plan)
    reports = [Report.model_validate(r) for r in json.loads((out / "reports.json").read_text())]
    how = plan.measurement()
    assert {r.runtime.name for r in reports} == {"onnxruntime"} and len(reports) == 2 * 5  # one report per process
    for m in ("freenet_tiny", "starnet_s050"):  # StarNet's 500 runs in total, split over 5 fresh processes
        mine = [r for r in reports if r.model.name == m]
        assert sum(len(r.timing.samples_ms) for r in mine) == 500 and sorted(r.notes["process"] for r in mine) == list("01234")
    for r in reports:
        assert r.status == "ok" and len(r.timing.samples_ms) == 100 and r.timing.warmup_runs == 50
        assert r.notes["protocol"] == "starnet" and r.runtime.threads == how.threads == min(4, len(os.sched_getaffinity(0)))
    md, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert f"**Protocol of every number below:** {how.describe()}." in md
    assert "StarNet's protocol" in html and "500 timed runs" in html


def _runs_reports(make_report, model, runs, family, start, **top):
    """One report per host-runner process: notes process/processes/session as the runner writes them."""
    out = []
    for p, samples in enumerate(runs):
        doc = make_report(start + p, model=model, samples=samples, **top)
        doc["model"]["family"] = family
        doc["notes"] = {**doc.get("notes", {}), "process": str(p), "processes": str(len(runs)), "session": "s1"}
        out.append(Report.model_validate(doc))
    return out


def test_headline_from_runs_unstable_and_anomalies(tmp_path, make_report):
    """Three processes per model: the headline pools them (one row per model in the summary), an
    unstable pair gets no faster/slower verdict, and a runtime anomaly with its op is named in the
    verdict and listed under the headline in both templates."""
    from device_bench.anomaly import Blame

    stable_fast = [[10.0 + 0.01 * i for i in range(20)]] * 3
    stable_slow = [[20.0 + 0.01 * i for i in range(20)]] * 3
    drifting = [[10.0 + 0.01 * i for i in range(20)], [14.0 + 0.01 * i for i in range(20)], [10.0 + 0.01 * i for i in range(20)]]
    reports = (_runs_reports(make_report, "freenet_s2", stable_fast, "freenet", 10)
               + _runs_reports(make_report, "starnet_s4", stable_slow, "starnet", 20)
               + _runs_reports(make_report, "freenet_s2_equimo", drifting, "freenet", 30)
               # the same two models on a second runtime where StarNet-S4 runs 10x slower: an anomaly
               + _runs_reports(make_report, "freenet_s2", stable_fast, "freenet", 40, runtime={"name": "litert", "version": "2.0", "accelerator": "xnnpack"})
               + _runs_reports(make_report, "starnet_s4", [[200.0 + 0.01 * i for i in range(20)]] * 3, "starnet", 50,
                               runtime={"name": "litert", "version": "2.0", "accelerator": "xnnpack"}))
    store = Store(f"sqlite:///{tmp_path / 'r.db'}")
    for r in reports:
        store.add_report(r)
    manifest = Manifest(bundle_id="b3", artifacts=[_artifact("freenet_s2", "freenet", 1_000_000_000, 7_000_000),
                                                  _artifact("freenet_s2_equimo", "freenet", 1_000_000_000, 7_000_000),
                                                  _artifact("starnet_s4", "starnet", 1_000_000_000, 7_000_000)])
    groups = summarize_run(store, [r.run_id for r in reports])
    for g in groups:  # the summary pools a model's processes into one row
        assert all(row.runs == 3 and row.stats.n == 60 for row in g.rows)
    asked = []

    def locate(model, runtime, best):
        asked.append((model, runtime, best))
        return Blame("depthwise Conv 7x7", 2.6, 0.11, "test profiler")

    report = build_report(groups, reports, manifest, ComparePlan(work_dir=tmp_path), None, locate=locate)
    write_report(report, tmp_path / "out")
    by = {(h.runtime.split()[0], h.model): h for h in report.headline}
    ours = by[("onnxruntime", "freenet_s2")]
    assert ours.paired and ours.runs == (3, 3) and ours.stable is True and ours.verdict == "faster" and not ours.anomalies
    equimo = by[("onnxruntime", "freenet_s2_equimo")]
    assert equimo.stable is False and equimo.verdict.startswith("unstable: runs disagree by")
    assert equimo.comparison.verdict == "faster" and equimo.verdict_class == ""  # called by the interval, withheld
    lit = by[("litert", "freenet_s2")]
    assert [a.model for a in lit.anomalies] == ["starnet_s4"] and lit.anomalies[0].op == "depthwise Conv 7x7"
    assert lit.verdict == "faster, driven by a runtime anomaly in depthwise Conv 7x7"
    assert asked == [("starnet_s4", "litert", "onnxruntime")]  # profiled once, only for the headline's models
    md, html = (tmp_path / "out" / "report.md").read_text(), (tmp_path / "out" / "report.html").read_text()
    head = md.split("## Every model")[0]
    assert "| faster, driven by a runtime anomaly in depthwise Conv 7x7 |" in head
    assert "| unstable: runs disagree by" in head
    (listed,) = report.anomalies  # GFLOP/s from the reports' MACs: 10x slower is 0.10x of its best
    text = listed.describe()
    assert text.startswith("starnet_s4 on litert: ") and ", 0.10x of its " in text and text.endswith(
        " on onnxruntime; op: depthwise Conv 7x7 takes 2.60 ms vs 0.11 ms there (test profiler)")
    assert f"- {text}" in head and f"<li>{text}</li>" in html
    assert 'class="l unstable">unstable: runs disagree by' in html
    # the ratio cell shows the 95 % next-run interval, the confidence interval stands beside it
    c = ours.comparison
    assert c.next_low < c.low <= c.high < c.next_high
    cells = f"| {c.ratio:.2f}× [{c.next_low:.2f}–{c.next_high:.2f}] | [{c.low:.2f}–{c.high:.2f}] |"
    assert "FreeNet-S2 / StarNet-S4 [95% next run] | 95% CI |" in head and cells in head
    assert f"{c.ratio:.2f}× [{c.next_low:.2f}–{c.next_high:.2f}]</td><td class=\"muted\">[{c.low:.2f}–{c.high:.2f}]</td>" in html
