"""Issue 14 through the real app (FastAPI TestClient): the dashboard and the compare endpoint mark a
row whose runs (reports) disagree beyond their intervals "unstable" and give it no faster/slower
verdict; agreeing runs get the verdict. A model far below its best runtime's GFLOP/s is flagged as a
runtime anomaly. The statistics are the `freenet compare` report's (stats.compare_runs, stability,
row_verdict; anomaly.table_anomalies)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from device_bench.server import create_app
from device_bench.stats import compare_runs, row_verdict, stability
from device_bench.store import Store

LITERT = {"name": "litert", "version": "2.3.0", "accelerator": "xnnpack", "delegate": "XNNPACK", "threads": 1, "emulated": False}


@pytest.fixture
def app(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'dash.db'}")
    _, token = store.create_token("test-device")
    client = TestClient(create_app(store=store, bundles_dir=tmp_path))
    client.headers["Authorization"] = f"Bearer {token}"
    yield client
    store.close()


def _post(app, make_report, runs: dict[str, list[float]], *, runtime: dict | None = None, first: int = 0) -> dict[str, list]:
    """One report per run (as a phone or a host-runner process sends them), 60 samples around each
    run's centre (0.5 % noise), created one second apart."""
    rng = np.random.default_rng(first)
    out: dict[str, list] = {}
    i = first
    for model, centres in runs.items():
        for c in centres:
            samples = (c * (1 + 0.005 * rng.standard_normal(60))).round(4).tolist()
            doc = make_report(i, model=model, samples=samples, created_at=f"2026-11-25T10:{i // 60:02d}:{i % 60:02d}Z",
                              **({"runtime": runtime} if runtime else {}))
            doc["model"]["macs"] = {"freenet_s2": 547_000_000, "starnet_s4": 1_050_000_000}[model]
            assert app.post("/api/v1/reports", json=doc).status_code == 201
            out.setdefault(model, []).append(samples)
            i += 1
    return out


def _group_html(page: str, runtime: str) -> str:
    sections = re.findall(r'<section class="group">.*?</section>', page, flags=re.S)
    return next(s for s in sections if f"· {runtime} ·" in s)


def _s2_row(section: str) -> str:
    return next(tr for tr in re.findall(r"<tr[^>]*>.*?</tr>", section, flags=re.S) if '<td class="l">freenet_s2' in tr)


def test_runs_that_disagree_are_unstable_and_get_no_verdict(app, make_report):
    # FreeNet-S2 agrees with itself; StarNet-S4's three runs sit at 20, 20 and 26 ms
    runs = _post(app, make_report, {"freenet_s2": [10.0, 10.0, 10.0], "starnet_s4": [20.0, 20.0, 26.0]})
    # what the report's statistics say about these runs
    assert stability(runs["starnet_s4"]).stable is False
    expect = row_verdict(compare_runs(runs["freenet_s2"], runs["starnet_s4"]), stability(runs["freenet_s2"]),
                         stability(runs["starnet_s4"]))
    assert expect.startswith("unstable")

    page = app.get("/").text
    section = _group_html(page, "onnxruntime")
    row = _s2_row(section)
    assert "unstable" in row and 'class="faster"' not in row and 'class="slower"' not in row
    assert "unstable: runs disagree" in section  # StarNet-S4's row says why, the pair line too
    pair_line = section.split("<table>")[0]
    assert "unstable" in pair_line and "(faster)" not in pair_line and 'class="faster"' not in pair_line

    g = app.get("/api/v1/compare").json()["groups"][0]
    s2 = next(m for m in g["models"] if m["model"] == "freenet_s2")
    assert s2["verdicts"]["starnet_s4"] == expect
    assert g["pair"]["verdict"] == expect
    sn = next(m for m in g["models"] if m["model"] == "starnet_s4")
    assert sn["stability"]["stable"] is False and sn["stability"]["runs"] == 3


def test_runs_that_agree_get_the_verdict(app, make_report):
    runs = _post(app, make_report, {"freenet_s2": [10.0, 10.0, 10.0], "starnet_s4": [20.0, 20.0, 20.0]})
    # the dashboard pools a row's window newest first
    c = compare_runs(runs["freenet_s2"][::-1], runs["starnet_s4"][::-1])
    assert c.verdict == "faster" and stability(runs["starnet_s4"]).stable is True

    section = _group_html(app.get("/").text, "onnxruntime")
    row = _s2_row(section)
    assert 'class="faster"' in row and "unstable" not in section
    assert "(faster)" in section.split("<table>")[0]
    g = app.get("/api/v1/compare").json()["groups"][0]
    assert g["pair"]["verdict"] == "faster"
    assert g["pair"]["comparison"]["low"] == pytest.approx(c.low) and g["pair"]["comparison"]["high"] == pytest.approx(c.high)


def test_a_runtime_anomaly_is_flagged(app, make_report):
    # StarNet-S4 runs 5x slower on LiteRT's XNNPACK than on ONNX Runtime; FreeNet-S2 does not
    _post(app, make_report, {"freenet_s2": [10.0, 10.0, 10.0], "starnet_s4": [20.0, 20.0, 20.0]})
    _post(app, make_report, {"freenet_s2": [12.0, 12.0, 12.0], "starnet_s4": [100.0, 100.0, 100.0]}, runtime=LITERT, first=100)
    page = app.get("/").text
    litert, ort = _group_html(page, "litert"), _group_html(page, "onnxruntime")
    sn_row = next(tr for tr in re.findall(r"<tr[^>]*>.*?</tr>", litert, flags=re.S) if '<td class="l">starnet_s4' in tr)
    assert "runtime anomaly: 0.20× of its GFLOP/s on onnxruntime" in sn_row
    assert "runtime anomaly" in litert.split("<table>")[0]  # the pair line says the ratio is about the runtime
    assert "runtime anomaly" not in _s2_row(litert) and "runtime anomaly" not in ort


def _post_sessions(app, make_report, drift: list[float], *, ratio: float = 0.42, k: int = 3) -> dict[str, list]:
    """Three `freenet bench` invocations of the host runner (k processes each, notes session and
    process as the runner writes them), the machine `drift` times slower in each session: both
    models move together, so their per-process ratio stays `ratio` (0.5 % sample noise)."""
    rng = np.random.default_rng(7)
    out: dict[str, list] = {}
    i = 0
    for s, d in enumerate(drift):
        session = f"00000000-0000-4000-8000-{s:012d}"
        for p in range(k):
            for model, centre in (("freenet_s2", 20.0 * ratio), ("starnet_s4", 20.0)):
                samples = (centre * d * (1 + 0.005 * rng.standard_normal(40))).round(4).tolist()
                doc = make_report(500 + i, model=model, samples=samples, created_at=f"2026-11-25T11:{i // 60:02d}:{i % 60:02d}Z",
                                  notes={"process": str(p), "processes": str(k), "session": session})
                doc["model"]["macs"] = {"freenet_s2": 547_000_000, "starnet_s4": 1_050_000_000}[model]
                assert app.post("/api/v1/reports", json=doc).status_code == 201
                out.setdefault(model, []).append(samples)
                i += 1
    return out


def test_host_runner_sessions_are_judged_on_paired_per_process_ratios(app, make_report):
    # three back-to-back runs 10 % apart in absolute latency (the machine drifted), ratio unchanged:
    # each model's latency is unstable across runs, the ratio is not
    runs = _post_sessions(app, make_report, [1.0, 1.10, 0.95])
    assert stability(runs["starnet_s4"]).stable is False  # unpaired, per model: the old judgement
    paired = stability(runs["freenet_s2"], runs["starnet_s4"])
    assert paired.stable is True and paired.runs == 9
    expect = compare_runs(runs["freenet_s2"], runs["starnet_s4"], paired=True)
    assert expect.verdict == "faster"

    g = app.get("/api/v1/compare").json()["groups"][0]
    assert g["pair"]["verdict"] == "faster"
    s2 = next(m for m in g["models"] if m["model"] == "freenet_s2")
    assert s2["paired"]["starnet_s4"] is True and s2["ratio_stability"]["starnet_s4"]["stable"] is True
    c = g["pair"]["comparison"]
    assert c["ratio"] == pytest.approx(expect.ratio)
    # the window pairs the same processes, in the dashboard's (newest first) order
    assert c["next_low"] < c["low"] <= c["ratio"] <= c["high"] < c["next_high"]

    section = _group_html(app.get("/").text, "onnxruntime")
    pair_line = section.split("<table>")[0]
    assert "(faster)" in pair_line and "unstable" not in pair_line
    row = _s2_row(section)
    assert 'class="faster"' in row and "unstable" not in row
    assert "latency moves between runs" in section  # the rows' latency drift is still said, not hidden


def test_paired_ratio_that_moves_between_sessions_is_unstable(tmp_path, make_report):
    store = Store(f"sqlite:///{tmp_path / 'moves.db'}")
    _, token = store.create_token("test-device")
    client = TestClient(create_app(store=store, bundles_dir=tmp_path))
    client.headers["Authorization"] = f"Bearer {token}"
    try:
        _post_sessions(client, make_report, [1.0, 1.0], ratio=0.42)
        rng = np.random.default_rng(3)
        session = "00000000-0000-4000-8000-000000000099"
        for p in range(3):  # a third session where FreeNet-S2 alone ran 15 % slower
            for j, (model, centre) in enumerate((("freenet_s2", 20.0 * 0.42 * 1.15), ("starnet_s4", 20.0))):
                doc = make_report(900 + 2 * p + j, model=model, samples=(centre * (1 + 0.005 * rng.standard_normal(40))).round(4).tolist(),
                                  created_at=f"2026-11-25T12:00:{2 * p + j:02d}Z", notes={"process": str(p), "processes": "3", "session": session})
                doc["model"]["macs"] = {"freenet_s2": 547_000_000, "starnet_s4": 1_050_000_000}[model]
                assert client.post("/api/v1/reports", json=doc).status_code == 201
        g = client.get("/api/v1/compare").json()["groups"][0]
        assert g["pair"]["verdict"].startswith("unstable")
        s2 = next(m for m in g["models"] if m["model"] == "freenet_s2")
        assert s2["paired"]["starnet_s4"] is True and s2["ratio_stability"]["starnet_s4"]["stable"] is False
        assert "unstable" in _s2_row(_group_html(client.get("/").text, "onnxruntime"))
    finally:
        store.close()


def test_rendering_the_dashboard_does_not_stop_statistics_from_persisting(tmp_path, make_report, caplog):
    """The dashboard keeps its rendered HTML in the store's memo; that entry must not go to the
    persisted summary_cache (it cannot be encoded, and the failed write took the statistics of the
    next summary with it)."""
    import logging

    store = Store(f"sqlite:///{tmp_path / 'persist.db'}")
    _, token = store.create_token("test-device")
    client = TestClient(create_app(store=store, bundles_dir=tmp_path))
    client.headers["Authorization"] = f"Bearer {token}"
    try:
        _post(client, make_report, {"freenet_s2": [10.0, 10.0], "starnet_s4": [20.0, 20.0]})
        with caplog.at_level(logging.WARNING, logger="device_bench.summary"):
            assert client.get("/").status_code == 200
            _post(client, make_report, {"freenet_s2": [10.0]}, first=50)  # a new window: new statistics
            assert client.get("/").status_code == 200
        assert "could not persist" not in caplog.text
        fresh = Store(store.url)  # a restart reads the second window's statistics back
        try:
            fresh.summary()
            assert fresh.memo.loaded > 0 and fresh.memo.misses == 0
        finally:
            fresh.close()
    finally:
        store.close()
