"""The browser runner (web_app/) end to end: Debian's Chromium (headless, WebGPU on SwiftShader,
driven by playwright) opens /run of a real `freenet serve` subprocess over a real exported bundle
(FreeNet-tiny, StarNet-S050, MobileNetV2 at 64 px), through onnxruntime-web and LiteRT.js on webgpu
and wasm. Reports must land in the store, validate against the committed JSON Schema, carry raw
samples and parity, and be marked emulated on SwiftShader. Also: a tampered artifact is refused,
pairing codes work once and expire, a server that goes down mid-run gets every report exactly once
after it comes back, a fallback is reported as such, every WebGPU sample includes the readback."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import jsonschema
import pytest

from device_bench.schema import CPU_ACCELERATORS, FP16_TOLERANCE, FP32_CPU_TOLERANCE, judge_parity, parity_tolerance
from device_bench.store import Store

ROOT = Path(__file__).resolve().parents[2]
# pytest-xdist (`make test`): every test of this file runs on one worker, in order (one bundle, one `make web` and one Chromium for the module).
pytestmark = pytest.mark.xdist_group("web")
WEB = ROOT / "web_app"
SHOTS_ENV = os.environ.get("FREENET_SHOTS")  # keep the screenshots there (else in the test's tmp dir)
SCHEMA = json.loads((ROOT / "device_bench/schema/report.schema.json").read_text())
MODELS = ["freenet_tiny", "starnet_s050", "mobilenet_v2"]
ALL_RUNS = ["onnxruntime-web:webgpu", "onnxruntime-web:wasm", "litert-js:webgpu", "litert-js:wasm"]
# Records when each GPUBuffer.mapAsync (the WebGPU readback primitive both runtimes use) resolves,
# independently of the runner's own timers.
MAP_TAP = """(() => { window.__mapResolved = []; if (typeof GPUBuffer === 'undefined') return;
  const orig = GPUBuffer.prototype.mapAsync;
  GPUBuffer.prototype.mapAsync = function (...a) {
    return orig.apply(this, a).then((v) => { window.__mapResolved.push(performance.now()); return v; }); }; })()"""


def _npm_build() -> None:
    if shutil.which("npm") is None:
        pytest.fail("npm is required to build web_app/ (Node.js 20+); see README set-up")
    out = subprocess.run(["make", "-C", str(ROOT), "web"], capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


@pytest.fixture(scope="module")
def web_dist() -> Path:
    _npm_build()  # npm ci + tsc --noEmit + esbuild; a no-op while dist is newer than its sources
    assert (WEB / "dist/index.html").is_file() and (WEB / "dist/app.js").is_file()
    return WEB / "dist"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> Path:
    """One exported bundle for the module ("web"), plus "tampered": the same manifest with one
    artifact file changed after export."""
    from export.api import ExportPlan, export_bundle

    root = tmp_path_factory.mktemp("webbundles")
    m = export_bundle(ExportPlan(models=MODELS, formats=["onnx", "tflite"], precisions=["fp32"],
                                 targets=["onnxruntime-nnapi", "litert-gpu"], out_dir=root / "web",
                                 on_existing="overwrite", input_size=64))
    assert all(a.status == "ok" for a in m.artifacts), [a.error for a in m.artifacts]
    shutil.copytree(root / "web", root / "tampered")
    onnx = next(a for a in m.artifacts if a.model == "freenet_tiny" and a.format == "onnx")
    data = bytearray((root / "tampered" / onnx.file).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: still loadable, but not the file the manifest names
    (root / "tampered" / onnx.file).write_bytes(bytes(data))
    return root


@pytest.fixture
def served(bundles, web_dist, tmp_path, server_factory):
    """A real `freenet serve` over the bundles; returns (server, db_url)."""
    db = f"sqlite:///{tmp_path / 'web.db'}"
    Store(db).close()
    return server_factory(db, bundles=bundles), db


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    from device_bench.web_driver import launch

    with sync_playwright() as pw:
        browser = launch(pw, extra_args=["--host-resolver-rules=MAP phone.test 127.0.0.1"])
        yield browser
        browser.close()


def _code(db: str, ttl: int = 600) -> str:
    with Store(db) as s:
        return s.create_pairing_code(ttl)[0]


def _open(chromium, url: str):
    ctx = chromium.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    page.add_init_script(MAP_TAP)
    foreign: list[str] = []
    base = url.split("/run")[0]
    page.on("request", lambda r: None if r.url.startswith(base) or r.url.startswith("data:") else foreign.append(r.url))
    page.goto(url)
    return ctx, page, foreign


def _run(chromium, srv, db, *, bundle="web", models=MODELS, runs=ALL_RUNS, rounds=2, runs_per_round=1, warmup=1,
         timeout_s=600, pair=True, host=None):
    from device_bench.web_driver import runner_query, wait_done

    q = runner_query(bundle=bundle, models=models, runs=runs, precisions=["fp32"], warmup=warmup, rounds=rounds,
                     runs_per_round=runs_per_round, pair=_code(db) if pair else None)
    base = srv.base if host is None else srv.base.replace("127.0.0.1", host)
    ctx, page, foreign = _open(chromium, base + "/run" + q)
    state = wait_done(page, timeout_s)
    return ctx, page, state, foreign


def _stored(srv, **filters) -> list[dict]:
    rows = httpx.get(srv.base + "/api/v1/reports", params={"limit": 1000, **filters}).json()["reports"]
    return [httpx.get(srv.base + f"/api/v1/reports/{r['run_id']}").json() for r in rows]


# ---- pure checks (no browser) -------------------------------------------------------------------


def test_js_tolerance_table_equals_python(web_dist):
    """The page's parity rule (web_app/src/parity.ts + tolerance.json), evaluated in node, gives the
    same tolerance and verdict as device_bench.schema for every precision x accelerator."""
    accels = sorted(CPU_ACCELERATORS | {"webgpu", "webnn", "gpu", "nnapi", "ane"})
    cases = [(p, a, m, r) for p in ("fp32", "fp16", "int8") for a in accels
             for m, r in ((1e-4, 1.0), (2e-3, 1.0), (0.04, 1.0), (0.2, 1.0), (1e-9, 1e-6))]
    script = f"""
const {{ buildSync }} = require('esbuild');
const out = buildSync({{ entryPoints: ['src/parity.ts'], bundle: true, write: false, format: 'cjs', platform: 'node' }});
const m = {{ exports: {{}} }}; new Function('module', 'exports', 'require', out.outputFiles[0].text)(m, m.exports, require);
const cases = {json.dumps(cases)};
console.log(JSON.stringify(cases.map(([p, a, mx, r]) => [m.exports.parityTolerance(p, a), m.exports.judge(mx, r, p, a)])));
"""
    res = subprocess.run(["node", "-e", script], cwd=WEB, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    js = json.loads(res.stdout)
    table = json.loads((WEB / "src/tolerance.json").read_text())
    assert table["fp32_cpu"] == FP32_CPU_TOLERANCE and table["fp16"] == FP16_TOLERANCE
    assert set(table["cpu_accelerators"]) == set(CPU_ACCELERATORS)
    for (p, a, mx, r), (tol, verdict) in zip(cases, js):
        assert tol == parity_tolerance(p, a), (p, a)
        py = judge_parity(mx, r, p, a)
        assert (verdict["tolerance"], verdict["passed"]) == (py.tolerance, py.passed), (p, a, mx, r)
        assert verdict["rel_diff"] == pytest.approx(py.rel_diff)


def test_run_page_explains_a_missing_build(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from device_bench.server import create_app

    monkeypatch.setenv("FREENET_WEB_DIST", str(tmp_path / "nothing"))
    client = TestClient(create_app(f"sqlite:///{tmp_path / 'a.db'}"))
    r = client.get("/run")
    assert r.status_code == 503 and "make web" in r.text and "npm ci" in r.text
    assert client.get("/run/app.js").status_code == 503


def test_pairing_codes_work_once_and_expire(tmp_path, server_factory):
    db = f"sqlite:///{tmp_path / 'p.db'}"
    with Store(db) as s:
        code, _ = s.create_pairing_code(600)
        old, _ = s.create_pairing_code(600)
    with sqlite3.connect(tmp_path / "p.db") as c:  # let `old` expire
        c.execute("UPDATE pairing_codes SET expires_at = '2000-01-01 00:00:00.000000'")
        c.execute("UPDATE pairing_codes SET expires_at = '2999-01-01 00:00:00.000000' WHERE code_hash = ?",
                  (__import__("hashlib").sha256(code.encode()).hexdigest(),))
    srv = server_factory(db)
    r = httpx.post(srv.base + "/api/v1/pair", json={"code": code, "device": "web Pixel 8 ab12"})
    assert r.status_code == 201, r.text
    token = r.json()["token"]
    again = httpx.post(srv.base + "/api/v1/pair", json={"code": code, "device": "thief"})
    assert again.status_code == 410 and "already used" in again.json()["detail"]
    expired = httpx.post(srv.base + "/api/v1/pair", json={"code": old, "device": "late"})
    assert expired.status_code == 410 and "expired" in expired.json()["detail"]
    assert httpx.post(srv.base + "/api/v1/pair", json={"code": "deadbeef00", "device": "x"}).status_code == 404
    # the token works for the batch endpoint until `freenet token revoke`
    hdr = {"Authorization": f"Bearer {token}"}
    assert httpx.post(srv.base + "/api/v1/reports/batch", json={"reports": []}, headers=hdr).status_code == 200
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "device_bench.cli", "token", "revoke", r.json()["token_id"], "--db", db],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # the server caches a known token for up to 1 s (docs/device_bench.md): a revocation made by
    # another process takes effect within that, never later
    deadline, code = time.monotonic() + 3.0, None
    while time.monotonic() < deadline:
        code = httpx.post(srv.base + "/api/v1/reports/batch", json={"reports": []}, headers=hdr).status_code
        if code == 401:
            break
        time.sleep(0.2)
    assert code == 401
    # /pair mints codes for the server's own machine and shows them as a QR code
    page = httpx.get(srv.base + "/pair")
    assert page.status_code == 200 and "<svg" in page.text and "?pair=" in page.text


def _serve_tls(tmp_path, *extra: str) -> tuple[subprocess.Popen, int]:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FREENET_TLS_DIR": str(tmp_path / "tls")}
    proc = subprocess.Popen([sys.executable, "-m", "device_bench.cli", "serve", "--db", f"sqlite:///{tmp_path / 't.db'}",
                             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", *extra],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return proc, port


def _wait_https(proc, url: str, ca: Path) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        if ca.is_file():
            try:
                return httpx.get(url, verify=ssl.create_default_context(cafile=str(ca)), timeout=2)
            except httpx.ConnectError:
                pass
        time.sleep(0.2)
    raise AssertionError("HTTPS server did not answer")


def test_serve_prints_url_and_qr_and_speaks_https(tmp_path):
    """`freenet serve --self-signed-tls`: a lab CA and a server certificate it signs, HTTPS that
    verifies against that CA, the CA downloadable at /run/lab-ca.pem, the runner URL with a pairing
    code and a QR code printed; `--tls-cert/--tls-key` serve a given certificate."""
    from device_bench.web import self_signed

    proc, port = _serve_tls(tmp_path, "--self-signed-tls")
    ca = tmp_path / "tls" / "lab-ca.pem"
    try:
        r = _wait_https(proc, f"https://127.0.0.1:{port}/api/v1/health", ca)
        assert r.status_code == 200
        got = httpx.get(f"https://localhost:{port}/run/lab-ca.pem", verify=ssl.create_default_context(cafile=str(ca)))
        assert got.status_code == 200 and got.content == ca.read_bytes()
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # not a publicly trusted certificate
            httpx.get(f"https://127.0.0.1:{port}/api/v1/health", timeout=5)
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0]
    assert f"https://localhost:{port}/run?pair=" in out and "lab-ca.pem" in out and "\u2588" in out  # QR code blocks
    cert, key, ca2, _ = self_signed(tmp_path / "own", ["127.0.0.1"])
    proc, port = _serve_tls(tmp_path, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        assert _wait_https(proc, f"https://127.0.0.1:{port}/api/v1/health", ca2).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


# ---- real browser --------------------------------------------------------------------------------


@pytest.mark.slow
def test_browser_runs_all_runtimes_and_reports_land(chromium, served, bundles, tmp_path):
    srv, db = served
    shots = Path(SHOTS_ENV) if SHOTS_ENV else tmp_path
    ctx, page, state, foreign = _run(chromium, srv, db)
    try:
        assert state["state"] == "done" and state["queued"] == 0, state["messages"]
        assert not foreign, f"the page fetched from outside the server: {foreign}"
        reports = state["reports"]
        assert len(reports) == len(MODELS) * len(ALL_RUNS), [r.get("error") for r in reports]
        stored = {r["run_id"]: r for r in _stored(srv, platform="web")}
        assert set(stored) == {r["run_id"] for r in reports}
        for r in reports:
            jsonschema.validate(r, SCHEMA)
            s = stored[r["run_id"]]
            assert r["status"] == "ok", r.get("error")
            assert s["timing"]["samples_ms"] == pytest.approx(r["timing"]["samples_ms"]) and len(r["timing"]["samples_ms"]) == 2
            assert r["timing"]["load_ms"] > 0 and r["timing"]["first_inference_ms"] > 0
            acc = r["runtime"]["accelerator"]
            assert r["runtime"]["emulated"] is (acc == "webgpu"), "SwiftShader WebGPU must be marked emulated"
            assert r["runtime"].get("accelerator_used") is None
            assert r["runtime"]["version"] == {"onnxruntime-web": "1.30.0", "litert-js": "2.5.3"}[r["runtime"]["name"]]
            assert "swiftshader" in r["device"]["gpu"] and r["client"]["platform"] == "web" and r["client"]["browser"]
            p = r["parity"]
            assert p["reference_checked"] and p["tolerance"] in (None, parity_tolerance("fp32", acc))
            assert p["passed"] in (True, None) and p["rel_diff"] < 1e-3  # also where no bound applies (tiny reference)
            assert r["model"]["family"] in ("freenet", "starnet", "mobilenet") and r["model"]["sha256"]
        ort_gpu = [r for r in reports if r["runtime"]["name"] == "onnxruntime-web" and r["runtime"]["accelerator"] == "webgpu"]
        assert all(r["placement"] and r["placement"].get("webgpu", 0) > 0 for r in ort_gpu)
        _check_samples_include_readback(page, state)
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "run_page_after_run.png"), full_page=True)
        assert "nothing queued" in page.inner_text("#queue-status")
    finally:
        ctx.close()
    _dashboard_beside_host(chromium, srv, db, bundles, shots)


def _check_samples_include_readback(page, state) -> None:
    """Every WebGPU sample spans its output's readback: a GPUBuffer.mapAsync (recorded by a wrapper
    the runner does not know about) resolved inside [t0, t1], and the sample is exactly t1 - t0.
    LiteRT.js run() returns before the GPU finished; the readback comes later and is counted."""
    maps = sorted(page.evaluate("window.__mapResolved"))
    gpu_trace = [t for t in state["trace"] if "/webgpu/" in t["job"]]
    assert gpu_trace and maps
    for t in gpu_trace:
        assert t["sample"] == pytest.approx(t["t1"] - t["t0"])
        assert any(t["t0"] <= m <= t["t1"] for m in maps), f"no readback inside the timed span of {t}"
        assert t["t1"] >= t["tDispatched"] >= t["t0"]
    by_job: dict[str, list[float]] = {}
    for t in state["trace"]:
        by_job.setdefault(t["job"], []).append(t["sample"])
    for r in state["reports"]:
        key = f"{r['runtime']['name']}/{r['runtime']['accelerator']}/{r['model']['artifact_id']}"
        assert r["timing"]["samples_ms"] == pytest.approx(by_job[key])  # the report holds exactly the traced samples
    litert = [t for t in gpu_trace if t["job"].startswith("litert-js/")]
    assert litert and all(t["t1"] > t["tDispatched"] for t in litert)


def _dashboard_beside_host(chromium, srv, db, bundles, shots: Path) -> None:
    from device_bench.runner import BenchPlan, http_sink, run_bench

    with Store(db) as s:
        token = s.create_token("host-ci")[1]
    host = run_bench(BenchPlan(bundles / "web", runtimes=["onnxruntime"], warmup=1, rounds=1, runs_per_round=3),
                     http_sink(srv.base, token))
    assert host and all(r.status == "ok" for r in host)
    ctx = chromium.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = ctx.new_page()
        page.goto(srv.base + "/")
        text = page.inner_text("body")
        for name in ("onnxruntime-web", "litert-js", "onnxruntime · cpu"):
            assert name in text
        assert page.locator("a#pair-link").count() == 1
        page.screenshot(path=str(shots / "dashboard_web_beside_host.png"), full_page=True)
    finally:
        ctx.close()


@pytest.mark.slow
def test_tampered_artifact_is_refused_and_nothing_measured(chromium, served):
    srv, db = served
    ctx, page, state, _ = _run(chromium, srv, db, bundle="tampered", models=["freenet_tiny", "starnet_s050"],
                               runs=["onnxruntime-web:wasm"], rounds=1, runs_per_round=2)
    try:
        by_model = {r["model"]["name"]: r for r in state["reports"]}
        bad, good = by_model["freenet_tiny"], by_model["starnet_s050"]
        assert bad["status"] == "error" and "sha256 mismatch" in bad["error"] and "refused" in bad["error"]
        assert bad["timing"]["samples_ms"] == [] and bad["timing"]["load_ms"] is None
        assert bad["timing"]["first_inference_ms"] is None and not bad["parity"]["reference_checked"]
        assert not any("freenet_tiny" in t["job"] for t in state["trace"]), "a refused file was run"
        assert good["status"] == "ok"
        stored = {r["run_id"]: r for r in _stored(srv)}
        assert stored[bad["run_id"]]["status"] == "error"
        assert "sha256 mismatch" in page.inner_text("#progress")
    finally:
        ctx.close()


@pytest.mark.slow
def test_reused_or_expired_pairing_code_is_refused_in_the_page(chromium, served):
    srv, db = served
    with Store(db) as s:
        used, _ = s.create_pairing_code(600)
        s.redeem_pairing_code(used, "first phone")
    for code, words in ((used, "already used"), ("0000000000", "unknown pairing code")):
        ctx, page, _ = _open(chromium, f"{srv.base}/run?pair={code}")[:3]
        try:
            page.wait_for_function("() => window.__freenet && window.__freenet.state !== 'loading'", timeout=60000)
            text = page.inner_text("#pairing")
            assert "Pairing refused" in text and words in text, text
            assert page.evaluate("localStorage.getItem('freenet.device_token')") is None
        finally:
            ctx.close()


@pytest.mark.slow
def test_server_down_mid_run_reports_queued_then_delivered_once(chromium, served):
    srv, db = served
    from device_bench.web_driver import runner_query

    q = runner_query(bundle="web", models=["freenet_tiny", "starnet_s050"], runs=["litert-js:wasm"], precisions=["fp32"],
                     warmup=1, rounds=4, runs_per_round=3, cooldown_ms=300, pair=_code(db))
    ctx, page, _ = _open(chromium, srv.base + "/run" + q)[:3]
    try:
        page.wait_for_function("() => window.__freenet && window.__freenet.trace.length > 0", timeout=120000)
        srv.kill()  # the aggregator dies while the page is measuring
        page.wait_for_function("() => window.__freenet.state === 'done'", timeout=300000)
        state = page.evaluate("window.__freenet")
        assert len(state["reports"]) == 2 and state["queued"] == 2
        assert "2 report(s) waiting" in page.inner_text("#queue-status")
        assert len(page.locator("#queue-list li").all()) == 2
        srv.start()  # same port, same database
        page.click("#flush")
        page.wait_for_function("() => window.__freenet.queued === 0", timeout=60000)
        page.click("#flush")  # a second flush has nothing to send
        time.sleep(1)
        ids = {r["run_id"] for r in state["reports"]}
        with Store(db) as s:
            assert s.count() == 2 and {r.run_id for r in s.query()} == ids
        # the page's queue is idempotent on the server side too: a resend stores nothing new
        token = page.evaluate("localStorage.getItem('freenet.device_token')")
        again = httpx.post(srv.base + "/api/v1/reports/batch", json={"reports": state["reports"]},
                           headers={"Authorization": f"Bearer {token}"}).json()["results"]
        assert [x["status"] for x in again] == [200, 200]
        with Store(db) as s:
            assert s.count() == 2
    finally:
        ctx.close()


@pytest.mark.slow
def test_fallback_is_reported_not_hidden(chromium, served):
    """LiteRT.js asked for WebNN in a browser without WebNN compiles 'fully' and runs its wasm CPU
    kernels: the report says accelerator webnn, accelerator_used wasm, and the store files it under
    wasm. onnxruntime-web refuses WebNN outright: an error report with its message."""
    srv, db = served
    ctx, page, state, _ = _run(chromium, srv, db, models=["freenet_tiny"], runs=["litert-js:webnn", "onnxruntime-web:webnn"],
                               rounds=1, runs_per_round=2)
    try:
        assert not page.evaluate("'ml' in navigator")
        by_rt = {r["runtime"]["name"]: r for r in state["reports"]}
        lit = by_rt["litert-js"]
        assert lit["runtime"]["accelerator"] == "webnn" and lit["runtime"]["accelerator_used"] == "wasm"
        assert "no WebNN" in lit["notes"]["fallback"] and lit["status"] == "ok"
        assert lit["parity"]["tolerance"] == parity_tolerance("fp32", "wasm")  # judged as what really ran
        rows = httpx.get(srv.base + "/api/v1/reports", params={"runtime": "litert-js"}).json()["reports"]
        assert [r["accelerator"] for r in rows if r["run_id"] == lit["run_id"]] == ["wasm"]
        ort = by_rt["onnxruntime-web"]
        assert ort["status"] == "error" and "WebNN" in ort["error"] and ort["timing"]["samples_ms"] == []
        assert "→ ran on wasm" in page.inner_text("#results")
    finally:
        ctx.close()


@pytest.mark.slow
def test_insecure_origin_is_explained_and_wasm_still_runs(chromium, served):
    """http://phone.test (not localhost, no TLS) is not a secure context: the page says what to do,
    offers no WebGPU, and still runs wasm with its own sha256 (no SubtleCrypto there)."""
    srv, db = served
    ctx, page, state, _ = _run(chromium, srv, db, models=["freenet_tiny"], runs=["litert-js:wasm"], rounds=1,
                               runs_per_round=2, host="phone.test")
    try:
        assert page.evaluate("isSecureContext") is False
        env = page.inner_text("#env")
        assert "not a secure context" in env and "adb reverse tcp:8787 tcp:8787" in env and "--tls-cert" in env
        assert "not offered by this browser" in page.inner_text("#runtimes")
        (r,) = state["reports"]
        assert r["status"] == "ok" and r["parity"]["passed"] is True, r.get("error")
    finally:
        ctx.close()


@pytest.mark.slow
def test_freenet_bench_runtimes_web(bundles, web_dist, tmp_path):
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", "from freenet.cli import main; main()", "bench", str(bundles / "web"),
                          "--runtimes", "web:litert-js:webgpu,web:onnxruntime-web:wasm", "--models", "freenet_tiny",
                          "--warmup", "0", "--rounds", "1", "--runs", "2",
                          "--db", db], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    with Store(db) as s:
        rows = s.query(platform="web")
    assert sorted((r.runtime, r.accelerator) for r in rows) == [("litert-js", "webgpu"), ("onnxruntime-web", "wasm")]
    assert all(r.status == "ok" and r.emulated == (r.accelerator == "webgpu") for r in rows)
    assert "onnxruntime-web" in out.stdout and "(emulated)" in out.stdout
    bad = subprocess.run([sys.executable, "-c", "from freenet.cli import main; main()", "bench", str(bundles / "web"),
                          "--runtimes", "web:tensorrt:gpu", "--db", db], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown web runtime" in bad.stdout


@pytest.mark.slow
def test_page_going_to_background_aborts_with_invalid_samples_dropped(chromium, served):
    srv, db = served
    from device_bench.web_driver import runner_query

    q = runner_query(bundle="web", models=["freenet_tiny", "starnet_s050"], runs=["litert-js:wasm"], precisions=["fp32"],
                     warmup=0, rounds=50, runs_per_round=3, cooldown_ms=200, pair=_code(db))
    ctx, page, _ = _open(chromium, srv.base + "/run" + q)[:3]
    try:
        page.wait_for_function("() => window.__freenet && window.__freenet.trace.length > 0", timeout=120000)
        # what a phone does when the user switches apps: the document becomes hidden
        page.evaluate("""() => { Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
                                 Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => 'hidden'});
                                 document.dispatchEvent(new Event('visibilitychange')); }""")
        page.wait_for_function("() => window.__freenet.state === 'done'", timeout=120000)
        state = page.evaluate("window.__freenet")
        assert len(state["reports"]) == 2
        for r in state["reports"]:
            assert r["status"] == "error" and "background" in r["error"] and r["timing"]["samples_ms"] == []
        assert "background" in page.inner_text("#log")
    finally:
        ctx.close()
