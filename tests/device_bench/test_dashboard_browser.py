"""The dashboard end to end in real headless Chromium (Debian's, driven by playwright):
the page loads, shows a posted report, and its latency-vs-MACs plot renders."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from device_bench.store import Store

CHROMIUM = os.environ.get("FREENET_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]


@pytest.mark.slow
def test_dashboard_shows_posted_report_and_plot(tmp_path, server_factory, make_report):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} not found: run scripts/setup_chromium.sh (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    db_url = f"sqlite:///{tmp_path / 'ui.db'}"
    with Store(db_url) as s:
        token = s.create_token("browser")[1]
    server = server_factory(db_url)
    reports = [
        make_report(1, model="freenet_s2", samples=[8.0, 8.2, 8.1, 8.3]),
        make_report(2, model="starnet_s4", samples=[10.0, 10.4, 10.2, 10.1]),
        make_report(3, model="mobilenetv2_100", samples=[5.0, 5.1, 5.2, 5.05]),
        make_report(4, model="freenet_s2", samples=[400.0, 410.0], runtime={"emulated": True}),
    ]
    for doc, macs in zip(reports, (547_000_000, 1_050_000_000, 300_000_000, 547_000_000)):
        doc["model"]["macs"] = macs
        r = httpx.post(server.base + "/api/v1/reports", json=doc, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 201, r.text

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            page = browser.new_page()
            # Only the local server may be contacted: fail on any other request (no CDN).
            foreign: list[str] = []
            page.on("request", lambda req: None if req.url.startswith(server.base) else foreign.append(req.url))
            resp = page.goto(server.base + "/?baseline=mobilenetv2_100", wait_until="load")
            assert resp is not None and resp.status == 200
            assert "FreeNet vs StarNet vs MobileNet" in page.title() + page.inner_text("h1")
            table = page.inner_text("section.group table")
            for name in ("freenet_s2", "starnet_s4", "mobilenetv2_100", "emulated — not a speed result"):
                assert name in table
            assert page.locator(f"a[href='/reports/{reports[0]['run_id']}']").count() >= 1
            # The headline pair ratio is rendered with its interval and verdict.
            assert "faster" in page.inner_text("section.group p")
            img = page.locator("img.plot").first
            img.wait_for(state="visible")
            natural = page.evaluate(
                "img => img.complete ? [img.naturalWidth, img.naturalHeight] : [0, 0]", img.element_handle())
            assert natural[0] > 0 and natural[1] > 0, natural
            page.click(f"a[href='/reports/{reports[1]['run_id']}']")
            page.wait_for_load_state("load")
            assert reports[1]["run_id"] in page.inner_text("#report-json")
            assert foreign == []
        finally:
            browser.close()
