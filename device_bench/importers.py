"""Importers: turn other benchmark tools' output into reports (`freenet import`).

This module owns the translation of two upstream formats into the report schema:
TFLite/LiteRT `benchmark_model` console output (the "count=... avg=... std=..." lines, the
"Inference timings in us: Init: ..., First inference: ..., Warmup (avg): ..., Inference (avg): ..."
summary, delegate "Replacing N out of M node(s)" lines and the peak memory lines of
`--report_peak_memory_footprint`), and the `benchmark_results.json` of ExecuTorch's Android
benchmark app (minibench: a Gson list of {benchmarkModel, metric, actualValue, targetValue,
deviceInfo}). Neither tool writes per-run latencies, so imported reports are aggregate-only
(`timing.samples_kind = "aggregate"`); nothing is invented. What the tools do not print (device
for TFLite, model hash, input shape, timestamps, runtime version) comes from a context dict the
user supplies; run_id is derived from the input, so importing the same output twice is a no-op.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from device_bench.schema import Report, parse_report

_NAMESPACE = uuid.UUID("6f1c1a7e-3d4b-4f0e-9a51-0b5c2f6d7e80")
_NUM = r"([0-9.]+(?:e[+-]?[0-9]+)?)"

# benchmark_model's delegate class names -> our accelerator identifiers
_DELEGATES = {"xnnpack": "xnnpack", "gpu": "gpu", "nnapi": "nnapi", "hexagon": "npu", "coreml": "ane"}


class UnrecognisedOutput(ValueError):
    """The input is not the tool output this importer understands (message says what is missing)."""


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _run_id(kind: str, payload: str, context: dict[str, Any]) -> str:
    digest = hashlib.sha256((kind + "\0" + payload + "\0" + json.dumps(context, sort_keys=True)).encode())
    return str(uuid.uuid5(_NAMESPACE, digest.hexdigest()))


def _times(context: dict[str, Any]) -> dict[str, str]:
    # The tools print no timestamps: use the context's, else "now" (documented as synthesised).
    now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    started = context.get("started_at", now)
    return {"created_at": context.get("created_at", now), "started_at": started,
            "finished_at": context.get("finished_at", started)}


# ---- TFLite benchmark_model ------------------------------------------------------------------


def parse_benchmark_model_log(text: str) -> dict[str, Any]:
    """The numbers in one benchmark_model console log (microseconds and MB as printed)."""
    lines = [re.sub(r"^\s*(?:INFO:|I tflite\s*:)\s*", "", ln).rstrip("\r") for ln in text.splitlines()]
    out: dict[str, Any] = {"runs": []}
    for ln in lines:
        if m := re.match(r"count=(\d+)(.*)$", ln.strip()):
            fields = dict(re.findall(r"(\w+)=" + _NUM, m.group(2)))
            out["runs"].append({"count": int(m.group(1)), **{k: float(v) for k, v in fields.items()}})
        elif m := re.search(r"Inference timings in us: Init: " + _NUM + r", First inference: " + _NUM
                            + r", Warmup \(avg\): " + _NUM + r", Inference \(avg\): " + _NUM, ln):
            out["init_us"], out["first_us"], out["warmup_avg_us"], out["avg_us"] = map(float, m.groups())
        elif m := re.search(r"Overall peak memory footprint \(MB\) via periodic monitoring: " + _NUM, ln):
            out["peak_mb"] = float(m.group(1))
        elif m := re.search(r"Peak memory footprint \(MB\): init=" + _NUM + r" overall=" + _NUM, ln):
            out.setdefault("peak_mb", float(m.group(2)))
        elif m := re.search(r"Replacing (\d+) out of (\d+) node\(s\) with delegate \((\w+)\)", ln):
            out["delegated"], out["nodes"], out["delegate"] = int(m.group(1)), int(m.group(2)), m.group(3)
        elif m := re.search(r"(\d+) operations will run on the GPU, and the remaining (\d+) operations", ln):
            out["gpu_ops"], out["cpu_ops"] = int(m.group(1)), int(m.group(2))
        elif m := re.match(r"Use (gpu|nnapi|hexagon|xnnpack): \[(?:1|true)\]", ln.strip()):
            out.setdefault("requested", []).append(m.group(1))
        elif m := re.search(r"Graph: \[(.*)\]", ln):
            out["graph"] = m.group(1)
        elif m := re.search(r"Num threads: \[(\d+)\]", ln):
            out["threads"] = int(m.group(1))
    # The first "count=" line is the warm-up phase, the last one the timed phase.
    if len(out["runs"]) >= 2:
        out["warmup"], out["timed"] = out["runs"][0], out["runs"][-1]
    elif out["runs"]:
        out["timed"] = out["runs"][-1]
    out["error_lines"] = [ln for ln in lines if re.search(r"(?i)\b(error|failed|unable|not supported)\b", ln)]
    return out


def _accelerator_of(delegate: str | None) -> str | None:
    if not delegate:
        return None
    low = delegate.lower()
    return next((acc for key, acc in _DELEGATES.items() if key in low), None)


def report_from_benchmark_model(text: str, context: dict[str, Any]) -> Report:
    """One report from a benchmark_model log plus the context (device, model, runtime...)."""
    p = parse_benchmark_model_log(text)
    ms = lambda us: None if us is None else us / 1000.0  # noqa: E731
    doc: dict[str, Any] = {
        "schema_version": "1",
        "run_id": _run_id("tflite", text, context),
        **_times(context),
        "client": {"app": "tflite-benchmark_model (imported)", "platform": "android", "app_version": "unknown"},
        "runtime": {"name": "litert", "emulated": False},
        "model": {"format": "tflite"},
        "thermal": {"before": "unknown", "after": "unknown"},
    }
    # The delegate that took nodes wins; else the one asked for on the command line; else CPU.
    requested = next((a for a in ("gpu", "nnapi", "hexagon", "xnnpack") if a in p.get("requested", [])), None)
    acc = _accelerator_of(p.get("delegate")) or _DELEGATES.get(requested or "", None) or "cpu"
    doc["runtime"]["accelerator"] = acc
    if p.get("delegate"):
        doc["runtime"]["delegate"] = p["delegate"]
    if "threads" in p:
        doc["runtime"]["threads"] = p["threads"]
    if "gpu_ops" in p:
        doc["placement"] = {"gpu": p["gpu_ops"], "cpu": p["cpu_ops"]}
    elif "nodes" in p:
        doc["placement"] = {acc or "delegate": p["delegated"], "cpu": p["nodes"] - p["delegated"]}
    if "peak_mb" in p:
        doc["memory"] = {"peak_bytes": int(p["peak_mb"] * 1024 * 1024)}
    timed = p.get("timed")
    if "avg_us" in p and timed:
        agg = {"count": timed["count"], "mean_ms": ms(p["avg_us"]), "std_ms": ms(timed.get("std")),
               "min_ms": ms(timed.get("min")), "max_ms": ms(timed.get("max")), "median_ms": ms(timed.get("median"))}
        doc["timing"] = {"load_ms": ms(p["init_us"]) or None, "first_inference_ms": ms(p["first_us"]) or None,
                         "warmup_runs": p["warmup"]["count"] if "warmup" in p else 0,
                         "samples_kind": "aggregate", "samples_ms": [],
                         "aggregate": {k: v for k, v in agg.items() if v is not None}}
        doc["status"] = "ok"
    else:
        tail = p["error_lines"][-5:] or text.strip().splitlines()[-5:] or ["(empty log)"]
        doc["timing"] = {"load_ms": None, "first_inference_ms": None, "warmup_runs": 0, "samples_ms": []}
        doc["status"] = "error"
        doc["error"] = "benchmark_model printed no 'Inference timings' line:\n" + "\n".join(tail)
    return parse_report(_merge(doc, context))


# ---- ExecuTorch minibench benchmark_results.json --------------------------------------------

_ET_BACKENDS = {"xnnpack": "xnnpack", "vulkan": "vulkan", "qnn": "npu", "coreml": "ane", "mps": "gpu", "portable": "cpu"}
_ET_PRECISION = {"fp32": "fp32", "fp16": "fp16", "q8": "int8", "int8": "int8", "8da4w": "int8"}


def reports_from_executorch(data: str | bytes | list[dict[str, Any]], context: dict[str, Any]) -> list[Report]:
    """One report per model in an ExecuTorch benchmark_results.json (list of metric entries)."""
    payload = data if isinstance(data, (str, bytes)) else json.dumps(data)
    entries = json.loads(payload) if isinstance(data, (str, bytes)) else data
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "metric" in e for e in entries):
        raise UnrecognisedOutput("not an ExecuTorch benchmark_results.json: expected a list of "
                           "{benchmarkModel, metric, actualValue, ...} objects")
    by_model: dict[tuple, dict[str, Any]] = {}
    for e in entries:
        bm = e.get("benchmarkModel") or {}
        key = (bm.get("name", "unknown"), bm.get("backend", ""), bm.get("quantization", ""))
        slot = by_model.setdefault(key, {"metrics": {}, "device": e.get("deviceInfo") or {}})
        slot["metrics"][e["metric"]] = e.get("actualValue")
    context = copy.deepcopy(context)
    per_model: dict[str, Any] = context.pop("models", {})  # {model name: {model: {sha256, ...}}}
    reports = []
    for (name, backend, quant), slot in by_model.items():
        m, dev = slot["metrics"], slot["device"]
        os_name = str(dev.get("os", ""))
        total = dev.get("totalMem")
        doc: dict[str, Any] = {
            "schema_version": "1",
            "run_id": _run_id("executorch", f"{payload}\0{name}\0{backend}\0{quant}", context),
            **_times(context),
            "client": {"app": "executorch-minibench (imported)", "platform": "android", "app_version": "unknown"},
            "device": {"manufacturer": dev.get("device") or "unknown", "model": dev.get("arch") or "unknown",
                       "soc": "unknown", "os": "android",
                       "os_version": os_name.removeprefix("Android ").strip() or "unknown",
                       # minibench reads totalMem from an unfilled MemoryInfo: 0 means unknown.
                       **({"memory_bytes": int(total)} if total else {})},
            "runtime": {"name": "executorch", "accelerator": _ET_BACKENDS.get(backend.lower(), backend.lower() or "cpu"),
                        "delegate": backend or None, "emulated": False},
            "model": {"name": name, "artifact_id": "_".join(p for p in (name, backend, quant) if p),
                      "format": "executorch", "precision": _ET_PRECISION.get(quant.lower(), "fp32")},
            "thermal": {"before": "unknown", "after": "unknown"},
        }
        load_ms = m.get("model_load_time(ms)")
        status = m.get("load_status", 0)
        if status not in (0, 0.0, None) or "avg_inference_latency(ms)" not in m:
            doc["timing"] = {"load_ms": load_ms or None, "first_inference_ms": None, "warmup_runs": 0, "samples_ms": []}
            doc["status"] = "error"
            doc["error"] = f"ExecuTorch minibench: load_status={status} (method 'forward' did not load)" \
                if status not in (0, 0.0, None) else "ExecuTorch minibench wrote no avg_inference_latency(ms)"
        else:
            agg = {"count": None, "mean_ms": m["avg_inference_latency(ms)"]}
            if m.get("trimmean_inference_latency(ms)"):
                agg["trimmed_mean_ms"] = m["trimmean_inference_latency(ms)"]
            doc["timing"] = {"load_ms": load_ms or None, "first_inference_ms": None,
                             "warmup_runs": context.get("timing", {}).get("warmup_runs", 0),
                             "samples_kind": "aggregate", "samples_ms": [], "aggregate": agg}
            doc["status"] = "ok"
            if m.get("ram_pss_usage(mb)"):
                doc["notes"] = {"ram_pss_delta_mb": f"{m['ram_pss_usage(mb)']:.3f}"}
        reports.append(parse_report(_merge(_merge(doc, context), per_model.get(name, {}))))
    return reports
