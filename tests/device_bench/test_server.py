"""The HTTP API in-process (FastAPI TestClient): status codes, field-level 422s, tokens, bundles."""

from __future__ import annotations

import hashlib
import json

import pytest
from fastapi.testclient import TestClient

from device_bench.server import create_app
from device_bench.store import Store


@pytest.fixture
def api(tmp_path):
    # SQLite only here: the same store code runs on PostgreSQL in test_store and test_reliability.
    db_url = f"sqlite:///{tmp_path / 'api.db'}"
    store = Store(db_url)
    info, token = store.create_token("test-device")
    bundles = tmp_path / "bundles"
    (bundles / "b1" / "models").mkdir(parents=True)
    (bundles / "b1" / "manifest.json").write_text(json.dumps({"schema_version": "1", "bundle_id": "b1", "artifacts": []}))
    (bundles / "b1" / "models" / "m.tflite").write_bytes(b"\x00tflite-bytes" * 100)
    (tmp_path / "secret.txt").write_text("not served")
    client = TestClient(create_app(store=store, bundles_dir=bundles, max_body_bytes=64 * 1024))
    client.headers["Authorization"] = f"Bearer {token}"
    client.store, client.token, client.token_id = store, token, info.id
    yield client
    store.close()


def test_health(api):
    assert api.get("/api/v1/health").json() == {"status": "ok", "schema_version": "1"}


def test_post_is_idempotent_and_listed(api, make_report):
    doc = make_report(7)
    first = api.post("/api/v1/reports", json=doc)
    assert first.status_code == 201 and first.json()["stored"] is True
    again = api.post("/api/v1/reports", json=doc)
    assert again.status_code == 200 and again.json()["stored"] is False
    listed = api.get("/api/v1/reports", params={"model": "freenet_s2"}).json()["reports"]
    assert [r["run_id"] for r in listed] == [doc["run_id"]]
    assert api.get("/api/v1/reports", params={"model": "nothing"}).json()["reports"] == []
    assert api.get(f"/api/v1/reports/{doc['run_id']}").json()["timing"]["samples_ms"] == doc["timing"]["samples_ms"]
    assert api.get("/api/v1/reports/00000000-0000-0000-0000-000000000000").status_code == 404
    assert api.get("/api/v1/reports", params={"limit": 5000}).status_code == 422


@pytest.mark.parametrize(
    ("headers", "why"),
    [({}, "missing"), ({"Authorization": "Bearer fnt_wrong"}, "unknown"), ({"Authorization": "Basic abc"}, "missing")],
)
def test_bad_token_is_401(api, make_report, headers, why):
    api.headers.pop("Authorization")
    r = api.post("/api/v1/reports", json=make_report(1), headers=headers)
    assert r.status_code == 401 and why in r.json()["detail"]
    assert api.store.count() == 0


def test_revoked_token_is_401(api, make_report):
    assert api.post("/api/v1/reports", json=make_report(1)).status_code == 201
    api.store.revoke_token(api.token_id)
    r = api.post("/api/v1/reports", json=make_report(2))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_oversized_body_is_413(api, make_report):
    doc = make_report(1, samples=[1.0] * 20_000)  # ~100 kB > the 64 kB limit of this app
    assert api.post("/api/v1/reports", json=doc).status_code == 413

    def chunks():  # no Content-Length: the limit must count streamed bytes
        body = json.dumps(doc).encode()
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]

    assert api.post("/api/v1/reports", content=chunks()).status_code == 413
    assert api.store.count() == 0


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d["timing"].update(samples_ms=[1.0, -3.0]), "timing.samples_ms.1"),
        (lambda d: d["timing"].update(warmup_runs="ten"), "timing.warmup_runs"),
        (lambda d: d["runtime"].pop("emulated"), "runtime.emulated"),
        (lambda d: d["device"].update(memory_bytes=10**30), "device.memory_bytes"),
        (lambda d: d["model"].update(input_shape=[1] * 50), "model.input_shape"),
        (lambda d: d.update(run_id=12), "run_id"),
        (lambda d: d.update(unexpected=True), "unexpected"),
    ],
)
def test_invalid_report_is_422_with_field(api, make_report, mutate, field):
    doc = make_report(1)
    mutate(doc)
    r = api.post("/api/v1/reports", json=doc)
    assert r.status_code == 422
    assert field in [e["field"] for e in r.json()["detail"]], r.json()


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b"null", b'{"schema_version": "1"}', b"\xff\xfe"])
def test_malformed_body_is_422(api, body):
    r = api.post("/api/v1/reports", content=body)
    assert r.status_code == 422 and r.json()["detail"]


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "-1.5", "0", "1e400"])
def test_non_finite_and_non_positive_latencies_are_422(api, make_report, token):
    body = json.dumps(make_report(1, samples=[123456.0])).replace("123456.0", token)
    r = api.post("/api/v1/reports", content=body)
    assert r.status_code == 422
    assert r.json()["detail"][0]["field"] == "timing.samples_ms.0"


def test_bundle_files_have_sha256_and_no_traversal(api, tmp_path):
    m = api.get("/api/v1/bundles/b1/manifest.json")
    assert m.status_code == 200 and m.json()["bundle_id"] == "b1"
    assert m.headers["X-Content-SHA256"] == hashlib.sha256(m.content).hexdigest()
    f = api.get("/api/v1/bundles/b1/files/models/m.tflite")
    assert f.status_code == 200 and f.content == b"\x00tflite-bytes" * 100
    assert f.headers["X-Content-SHA256"] == hashlib.sha256(f.content).hexdigest()
    assert api.get("/api/v1/bundles").json() == {"bundles": ["b1"]}
    for bad in ["/api/v1/bundles/b1/files/../../secret.txt", "/api/v1/bundles/b1/files/%2E%2E/%2E%2E/secret.txt",
                "/api/v1/bundles/b1/files/nothing.bin", "/api/v1/bundles/..%2F/manifest.json"]:
        assert api.get(bad).status_code == 404, bad


def test_openapi_docs_and_pages(api, make_report):
    assert api.get("/docs").status_code == 200
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert "Report" in schemas and "Timing" in schemas
    doc = make_report(3)
    api.post("/api/v1/reports", json=doc)
    page = api.get("/")
    assert page.status_code == 200 and doc["run_id"] in page.text
    assert api.get(f"/reports/{doc['run_id']}").text.count(doc["run_id"]) >= 1
    assert api.get(f"/reports/{doc['run_id']}", params={"format": "json"}).json()["run_id"] == doc["run_id"]
    svg = api.get("/plots/latency_vs_macs.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml") and b"<svg" in svg.content


def test_compare_endpoint_shapes_missing_values_as_null(api, make_report):
    api.post("/api/v1/reports", json=make_report(1, samples=[5.0]))
    (group,) = api.get("/api/v1/compare").json()["groups"]
    (row,) = group["models"]
    assert row["stats"]["median_ms"] == 5.0 and row["stats"]["iqr_ms"] is None
    assert group["pair"]["comparison"] is None


def test_batch_judges_each_report_alone_and_is_idempotent(api, make_report):
    good, dup, other = make_report(1), make_report(2), make_report(3)
    bad = make_report(4)
    bad["timing"]["samples_ms"] = [1.0, -2.0]
    r = api.post("/api/v1/reports/batch", json={"reports": [good, bad, dup, dup, "junk"]})
    assert r.status_code == 200
    res = r.json()["results"]
    assert [x["status"] for x in res] == [201, 422, 201, 200, 422]
    assert res[1]["run_id"] == bad["run_id"] and any(d["field"] == "timing.samples_ms.1" for d in res[1]["detail"])
    assert api.store.count() == 2
    again = api.post("/api/v1/reports/batch", json={"reports": [good, dup, other]}).json()["results"]
    assert [x["status"] for x in again] == [200, 200, 201] and api.store.count() == 3


@pytest.mark.parametrize("body", [{"reports": "x"}, {"nope": []}, [1, 2]])
def test_batch_needs_a_reports_list(api, body):
    r = api.post("/api/v1/reports/batch", json=body)
    assert r.status_code == 422 and "reports" in r.json()["detail"]


def test_batch_needs_a_token(api, make_report):
    api.headers.pop("Authorization")
    assert api.post("/api/v1/reports/batch", json={"reports": [make_report(1)]}).status_code == 401
    assert api.store.count() == 0
