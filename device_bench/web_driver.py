"""`freenet bench --runtimes web`: the browser runner (`/run`) driven in this machine's Chromium.

This module owns the host use of the web runner: it serves the bundle with the aggregator app on a
free 127.0.0.1 port (localhost is a secure context, so WebGPU is exposed), pairs the page with a
one-time code, opens `/run?...&autostart=1` in Chromium through playwright, waits for the page's
own "done" state, and returns the reports the page produced. The page posts them itself (through
its offline queue); with `--server` they are then forwarded to that aggregator. On a machine
without a GPU, Chromium's WebGPU adapter is SwiftShader: those reports carry `emulated: true`.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

CHROMIUM = os.environ.get("FREENET_CHROMIUM", "/usr/bin/chromium")
# Headless Chromium with WebGPU; on a machine without a GPU the adapter is SwiftShader.
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--enable-unsafe-webgpu", "--enable-features=Vulkan",
                 "--use-webgpu-adapter=swiftshader", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-background-timer-throttling", "--disable-renderer-backgrounding"]
WEB_RUNS = ("onnxruntime-web:webgpu", "onnxruntime-web:wasm", "litert-js:webgpu", "litert-js:wasm")


def runner_query(*, bundle: str, models: list[str] | None, runs: list[str], precisions: list[str], warmup: int,
                 rounds: int, runs_per_round: int, cooldown_ms: int = 0, pair: str | None = None, autostart: bool = True) -> str:
    q: dict[str, Any] = {"bundle": bundle, "runs": ",".join(runs), "precisions": ",".join(precisions), "warmup": warmup,
                         "rounds": rounds, "runs_per_round": runs_per_round, "cooldown": cooldown_ms}
    if models:
        q["models"] = ",".join(models)
    if pair:
        q["pair"] = pair
    if autostart:
        q["autostart"] = 1
    return "?" + urlencode(q)


def launch(pw, *, gpu: str = "swiftshader", extra_args: list[str] | None = None):
    """Chromium with WebGPU on; `gpu="swiftshader"` forces the software adapter (this machine has no GPU)."""
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} not found: run scripts/setup_chromium.sh (Debian's chromium) or set FREENET_CHROMIUM")
    args = [a for a in CHROMIUM_ARGS if gpu == "swiftshader" or not a.startswith("--use-webgpu-adapter")]
    return pw.chromium.launch(executable_path=CHROMIUM, args=args + (extra_args or []), headless=True)


def wait_done(page, timeout_s: float) -> dict[str, Any]:
    """Wait for the page's own done/failed state; returns window.__freenet."""
    page.wait_for_function("() => window.__freenet && ['done', 'failed'].includes(window.__freenet.state)",
                           timeout=timeout_s * 1000, polling=500)
    return page.evaluate("() => window.__freenet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalServer:
    """The aggregator app in a thread on 127.0.0.1 (uvicorn), serving one bundle's parent folder."""

    def __init__(self, db_url: str, bundles: Path) -> None:
        import uvicorn

        from .server import create_app

        self.app = create_app(db_url, bundles)
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LocalServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the local aggregator for the browser runner did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


def bench_web(bundle: Path, *, models: list[str] | None, precisions: list[str], warmup: int, rounds: int,
              runs_per_round: int, db: str | None = None, server: str | None = None, token: str | None = None,
              runs: list[str] | None = None, gpu: str = "swiftshader", timeout_s: float = 3600,
              log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Measure `bundle` with the browser runner in this machine's Chromium; returns the reports (JSON)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # a test extra: say how to get it
        raise RuntimeError("`--runtimes web` needs the playwright package: pip install -e '.[test]'") from exc
    from .store import Store

    bad = [r for r in runs or [] if r not in WEB_RUNS + ("litert-js:webnn", "onnxruntime-web:webnn")]
    if bad:
        raise ValueError(f"unknown web runtime(s) {bad}; valid: {', '.join(WEB_RUNS)} (and ...:webnn)")
    bundle = Path(bundle).resolve()
    if not (bundle / "manifest.json").is_file():
        raise FileNotFoundError(f"{bundle} holds no manifest.json; build one with `freenet export`")
    tmp = None
    if server:  # the page reports to a throw-away local store, then the reports are forwarded
        tmp = tempfile.mkdtemp(prefix="freenet-web-")
        db = f"sqlite:///{Path(tmp) / 'web.db'}"
    try:
        with LocalServer(db or _default_db(), bundle.parent) as srv:
            code, _ = srv.app.state.store.create_pairing_code(600)
            query = runner_query(bundle=bundle.name, models=models, runs=runs or list(WEB_RUNS), precisions=precisions,
                                 warmup=warmup, rounds=rounds, runs_per_round=runs_per_round, pair=code)
            log(f"browser runner: {srv.base}/run{query}")
            with sync_playwright() as pw:
                browser = launch(pw, gpu=gpu)
                try:
                    page = browser.new_page()
                    page.goto(srv.base + "/run" + query)
                    state = wait_done(page, timeout_s)
                    if state["queued"]:
                        raise RuntimeError(f"{state['queued']} report(s) stayed in the page's queue: {state['messages'][-3:]}")
                finally:
                    browser.close()
        reports = state["reports"]
        if server:
            _forward(reports, server, token)
        elif not reports:
            raise RuntimeError(f"the browser runner produced no report: {state['messages'][-5:]}")
        return reports
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def _default_db() -> str:
    from .store import default_db_url

    return default_db_url()


def _forward(reports: list[dict[str, Any]], server: str, token: str | None) -> None:
    import httpx

    if not token:
        raise ValueError("--server needs --token (or FREENET_TOKEN)")
    r = httpx.post(server.rstrip("/") + "/api/v1/reports/batch", json={"reports": reports},
                   headers={"Authorization": f"Bearer {token}"}, timeout=60)
    if r.status_code != 200:
        raise RuntimeError(f"aggregator refused the web reports: HTTP {r.status_code} {r.text[:300]}")
    bad = [x for x in r.json()["results"] if x["status"] not in (200, 201)]
    if bad:
        raise RuntimeError(f"aggregator refused {len(bad)} web report(s): {bad[:2]}")
