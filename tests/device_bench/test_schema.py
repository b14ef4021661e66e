"""The report schema: committed JSON Schema is current, fixtures validate, bad reports fail."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import pytest
from pydantic import ValidationError

from device_bench.schema import Report, json_schema_text, parse_report

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_FILE = ROOT / "device_bench" / "schema" / "report.schema.json"
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "reports").glob("*.json"))
BASE = json.loads((ROOT / "tests" / "fixtures" / "reports" / "host_onnxruntime_freenet_s2.json").read_text())


def test_committed_json_schema_is_current():
    assert SCHEMA_FILE.read_text() == json_schema_text(), (
        "regenerate: python -m device_bench.schema > device_bench/schema/report.schema.json"
    )


def test_there_are_fixtures_for_every_platform():
    platforms = {json.loads(p.read_text())["client"]["platform"] for p in FIXTURES}
    assert platforms == {"host", "android", "ios"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_fixture_validates_with_pydantic_and_json_schema(path: Path):
    doc = json.loads(path.read_text())
    report = parse_report(path.read_bytes())
    assert report.schema_version == "1"
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(doc)
    # Round trip: what we store and serve re-validates to the same report.
    assert parse_report(report.model_dump_json()) == report


def _with(path: str, value):
    doc = copy.deepcopy(BASE)
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return doc


_DELETE = object()

BAD = [
    ("timing.samples_ms", [], "", "needs at least one entry in timing.samples_ms"),
    ("timing.samples_ms", [1.0, -2.0], "timing.samples_ms.1", "greater than 0"),
    ("timing.samples_ms", [0.0], "timing.samples_ms.0", "greater than 0"),
    ("timing.samples_ms", [1.0, 1e12], "timing.samples_ms.1", "less than or equal"),
    ("timing.samples_ms", [1.0] * 100_001, "timing.samples_ms", "at most 100000"),
    ("timing.samples_ms", ["1.0"], "timing.samples_ms.0", "valid number"),
    ("timing.warmup_runs", 2.5, "timing.warmup_runs", "valid integer"),
    ("timing.warmup_runs", "3", "timing.warmup_runs", "valid integer"),
    ("run_id", "not-a-uuid", "run_id", "UUID"),
    ("created_at", 1764064800, "created_at", "ISO 8601"),
    ("created_at", "2026-11-25T10:00:00", "created_at", "timezone"),
    ("client.platform", "windows", "client.platform", "'android', 'ios', 'host' or 'web'"),
    ("runtime.accelerator", "GPU!", "runtime.accelerator", "pattern"),
    ("runtime.emulated", _DELETE, "runtime.emulated", "Field required"),
    ("runtime.threads", 0, "runtime.threads", "greater than or equal to 1"),
    ("model.sha256", "XYZ", "model.sha256", "pattern"),
    ("model.input_shape", [], "model.input_shape", "at least 1"),
    ("model.name", "x" * 201, "model.name", "at most 200"),
    ("memory.peak_bytes", 1 << 60, "memory.peak_bytes", "less than or equal"),
    ("thermal.before", "hot", "thermal.before", "nominal"),
    ("status", "error", "", "needs a non-empty `error`"),
    ("surprise", 1, "surprise", "Extra inputs are not permitted"),
    ("device.colour", "red", "device.colour", "Extra inputs are not permitted"),
    ("schema_version", "2", "schema_version", "'1'"),
    ("finished_at", "2026-11-25T09:00:00Z", "", "earlier than started_at"),
]


@pytest.mark.parametrize(("path", "value", "loc", "message"), BAD, ids=[b[0] + ":" + repr(b[1])[:20] for b in BAD])
def test_invalid_report_names_the_field(path, value, loc, message):
    with pytest.raises(ValidationError) as info:
        parse_report(_with(path, value))
    errors = info.value.errors()
    locs = [".".join(str(p) for p in e["loc"]) for e in errors]
    assert any(loc == l or (loc and l.startswith(loc)) for l in locs), locs
    assert any(message in e["msg"] for e in errors), [e["msg"] for e in errors]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_latency_in_json_text_is_rejected(text):
    body = json.dumps(BASE).replace('"samples_ms": [16.9', f'"samples_ms": [{text}')
    assert text in body
    with pytest.raises(ValidationError, match="finite"):
        parse_report(body)


def test_aggregate_only_report_needs_aggregate_and_no_samples():
    timing = {"load_ms": None, "first_inference_ms": 12.0, "warmup_runs": 1, "samples_kind": "aggregate",
              "samples_ms": [], "aggregate": {"count": 50, "mean_ms": 10.5, "std_ms": 0.4}}
    report = parse_report(_with("timing", timing))
    assert report.timing.aggregate is not None and report.timing.aggregate.mean_ms == 10.5
    with pytest.raises(ValidationError, match="needs the `aggregate`"):
        parse_report(_with("timing", {**timing, "aggregate": None}))
    with pytest.raises(ValidationError, match="empty samples_ms"):
        parse_report(_with("timing", {**timing, "samples_ms": [1.0]}))


def test_python_construction_accepts_strings_and_normalises_to_utc():
    doc = _with("started_at", "2026-11-25T11:00:00+01:00")
    report = Report(**doc)
    assert report.started_at.isoformat() == "2026-11-25T10:00:00+00:00"
    assert json.loads(report.model_dump_json())["started_at"] == "2026-11-25T10:00:00Z"


def test_parity_verdict_rules(make_report):
    """'ok' can never carry a failed parity; 'parity_failed' needs one; the verdict must agree
    with its numbers (a client cannot call 0.5 within a 1e-3 tolerance)."""
    from device_bench.schema import judge_parity, parity_tolerance

    doc = make_report(1)
    doc["parity"] = {"max_abs_diff": 0.5, "reference_checked": True, "rel_diff": 0.5, "tolerance": 1e-3, "passed": False}
    with pytest.raises(ValidationError, match="parity_failed"):
        parse_report(doc)
    doc["status"] = "parity_failed"
    assert parse_report(doc).status == "parity_failed"
    doc["parity"]["passed"] = True
    with pytest.raises(ValidationError, match="contradicts"):
        parse_report(doc)
    assert parity_tolerance("fp32", "xnnpack") == 1e-3 and parity_tolerance("fp32", "webgpu") == 5e-2
    assert parity_tolerance("int8", "cpu") is None
    p = judge_parity(0.02, 10.0, "fp16", "gpu")
    assert p.rel_diff == 0.002 and p.passed is True
    assert judge_parity(0.02, 1e-6, "fp16", "gpu").passed is None  # the reference underflows fp16
    assert judge_parity(0.2, 1.0, "fp32", "cpu").passed is False
