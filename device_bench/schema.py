"""The benchmark report schema: the single source of truth for what a latency report is.

This module owns the pydantic models of one report (one model artifact measured on one device
with one runtime and accelerator), their validation rules (status "ok" needs samples, latencies
are finite and > 0, every string and list is bounded, unknown fields are rejected), and the
JSON Schema that apps read. Regenerate the committed JSON Schema with
`python -m device_bench.schema > device_bench/schema/report.schema.json`; a test checks that the
committed file equals the generated one. Field names follow the protocol contract in
`docs/protocol.md`; bump `SCHEMA_VERSION` for any change an existing client could not send.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from typing import Annotated, Any, Literal
from uuid import UUID

from export.manifest import FP16_MIN_NORMAL
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    model_validator,
)

SCHEMA_VERSION = "1"

# Bounds keep one report small enough to store and render; the server's body limit is sized so
# a report at these bounds fits.
MAX_SAMPLES = 100_000
MAX_BYTES = 1 << 50  # 1 PiB: beyond any device memory, catches unit mistakes (bits, garbage)
MAX_MS = 3_600_000.0  # one hour per inference/load is certainly a unit mistake or a hang
MAX_ERROR_CHARS = 20_000

Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
OptName = Annotated[str, StringConstraints(max_length=200)]
# Accelerators are an open set ("cpu", "gpu", "npu", "nnapi", "xnnpack", "vulkan", "ane", ...):
# a lowercase identifier rather than an enum, so a new delegate needs no schema change.
Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.+-]{0,63}$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Milliseconds = Annotated[float, Field(gt=0, le=MAX_MS, allow_inf_nan=False)]
NonNegMilliseconds = Annotated[float, Field(ge=0, le=MAX_MS, allow_inf_nan=False)]
Bytes = Annotated[int, Field(ge=0, le=MAX_BYTES)]


def _reject_numbers(value: Any) -> Any:
    # Lax datetime parsing would read 1700000000 as a Unix time; the contract says ISO 8601.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise ValueError("must be an ISO 8601 string with a timezone, e.g. 2026-11-25T10:00:00Z")
    return value


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(timezone.utc)


# Timestamps and the run id accept their ISO/UUID strings also when validated from Python
# objects (strict mode would accept strings only from JSON), so runners may pass either.
UtcDatetime = Annotated[
    AwareDatetime, Strict(False), BeforeValidator(_reject_numbers), AfterValidator(_to_utc)
]
RunId = Annotated[UUID, Strict(False)]

ThermalState = Literal["nominal", "fair", "serious", "critical", "unknown"]
# A temperature in degrees Celsius (e.g. Android's battery temperature) instead of a state.
Celsius = Annotated[float, Field(ge=-50, le=200, allow_inf_nan=False)]


class _Strict(BaseModel):
    # strict: no silent coercion ("12" is not 12, 1.5 is not an int); forbid: a misspelt field
    # is an error, not a silently dropped value.
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class Client(_Strict):
    """The program that produced the report."""

    app: Name = Field(description="Name of the runner app, e.g. 'freenet-bench-android'.")
    platform: Literal["android", "ios", "host", "web"]
    app_version: Name
    browser: OptName | None = Field(
        default=None, description="Web runner only: browser name and version, e.g. 'Chrome 150.0.7000.1'."
    )
    user_agent: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        default=None, description="Web runner only: the full User-Agent string."
    )


class Device(_Strict):
    """The hardware and OS the measurement ran on."""

    manufacturer: Name = Field(description="e.g. 'Google', 'Apple', or the CPU vendor on host.")
    model: Name = Field(description="e.g. 'Pixel 8', 'iPhone15,2', or the host CPU model name.")
    soc: Name = Field(description="e.g. 'Tensor G3', 'A16 Bionic', 'x86_64'.")
    os: Name = Field(description="e.g. 'android', 'ios', 'linux'.")
    os_version: Name
    memory_bytes: Bytes | None = None
    cpu_cores: Annotated[int, Field(ge=1, le=4096)] | None = Field(
        default=None, description="Logical CPU cores (web: navigator.hardwareConcurrency)."
    )
    gpu: OptName | None = Field(
        default=None,
        description="The GPU as the runtime sees it, e.g. 'Adreno (TM) 740' or a WebGPU adapter's "
        "'vendor / architecture / description'.",
    )


class Runtime(_Strict):
    """The inference runtime and the compute unit it was asked to use."""

    name: Literal["litert", "onnxruntime", "executorch", "coreml", "pytorch", "onnxruntime-web", "litert-js"]
    version: Name
    accelerator: Ident = Field(
        description="Compute path asked for: cpu, gpu, npu, nnapi, xnnpack, vulkan, ane, ..."
    )
    delegate: OptName | None = Field(
        default=None, description="Delegate / execution provider / backend actually used."
    )
    accelerator_used: Ident | None = Field(
        default=None,
        description="The compute path the runtime says it actually ran on, when it differs from "
        "`accelerator` (a whole-model fallback, e.g. asked 'webgpu', ran 'wasm'). Partial "
        "fallbacks are counted in `placement`. A report is never labelled with an accelerator "
        "it did not run on: ratios group by `accelerator_used` when it is set.",
    )
    compute_units: OptName | None = Field(
        default=None, description="Core ML MLComputeUnits, e.g. 'all', 'cpuAndGPU', 'cpuOnly'."
    )
    threads: Annotated[int, Field(ge=1, le=1024)] | None = None
    emulated: bool = Field(
        description="True when the accelerator is emulated (e.g. SwiftShader software GPU, "
        "iOS simulator): such a result proves the path runs, it is never a speed result."
    )


class Model(_Strict):
    """The model artifact that was measured."""

    name: Name = Field(description="Model name, e.g. 'freenet_s2', 'starnet_s4', 'mobilenetv2'.")
    family: Ident | None = Field(
        default=None, description="Model family from the bundle manifest ('freenet', 'starnet', 'mobilenet', ...)."
    )
    artifact_id: Name = Field(description="Artifact id from the bundle manifest.")
    format: Literal["onnx", "coreml", "tflite", "executorch", "pytorch"]
    precision: Literal["fp32", "fp16", "int8"]
    sha256: Sha256 = Field(description="Lowercase hex sha256 of the artifact file measured.")
    input_shape: Annotated[list[Annotated[int, Field(ge=1, le=1 << 16)]], Field(min_length=1, max_length=8)]
    bundle: OptName | None = Field(default=None, description="Bundle id the artifact came from.")
    macs: Annotated[int, Field(ge=0, le=1 << 50)] | None = Field(
        default=None, description="Multiply-accumulates of one inference at input_shape."
    )
    params: Annotated[int, Field(ge=0, le=1 << 50)] | None = Field(
        default=None, description="Number of parameters."
    )


class Aggregate(_Strict):
    """Summary numbers from a tool that prints no per-run latencies (see `samples_kind`)."""

    count: Annotated[int, Field(ge=1, le=1 << 31)] | None = Field(
        description="Number of timed runs; null when the tool does not say (ExecuTorch minibench)."
    )
    mean_ms: Milliseconds
    std_ms: NonNegMilliseconds | None = None
    min_ms: Milliseconds | None = None
    max_ms: Milliseconds | None = None
    median_ms: Milliseconds | None = None
    trimmed_mean_ms: Milliseconds | None = Field(
        default=None, description="Mean of the middle runs as the tool defines it (minibench: 10-90 %)."
    )


class Timing(_Strict):
    """Latencies in milliseconds. `samples_ms` holds every timed run, in order."""

    load_ms: Milliseconds | None = Field(
        description="Model load/compile time; null when the tool does not report it."
    )
    first_inference_ms: Milliseconds | None = Field(
        description="First (cold) inference; null when the tool does not report it."
    )
    warmup_runs: Annotated[int, Field(ge=0, le=1_000_000)]
    samples_kind: Literal["raw", "aggregate"] = Field(
        default="raw",
        description="'raw': samples_ms holds each timed run. 'aggregate': the tool printed only "
        "summary numbers (e.g. TFLite benchmark_model), samples_ms is empty and `aggregate` "
        "holds them; such reports are shown but never enter bootstrap comparisons.",
    )
    samples_ms: Annotated[list[Milliseconds], Field(max_length=MAX_SAMPLES)]
    aggregate: Aggregate | None = None
    cooldown_ms: NonNegMilliseconds | None = Field(
        default=None, description="Idle time before the timed runs (thermal cool-down)."
    )

    @model_validator(mode="after")
    def _kind_matches(self) -> Timing:
        if self.samples_kind == "aggregate":
            if self.aggregate is None:
                raise ValueError("samples_kind 'aggregate' needs the `aggregate` object")
            if self.samples_ms:
                raise ValueError("samples_kind 'aggregate' must have empty samples_ms")
        elif self.aggregate is not None:
            raise ValueError("`aggregate` is only allowed with samples_kind 'aggregate'")
        return self


class Memory(_Strict):
    peak_bytes: Bytes | None = None


class Thermal(_Strict):
    """Thermal state before and after the timed runs (a state, or a temperature in °C)."""

    before: ThermalState | Celsius
    after: ThermalState | Celsius


class Parity(_Strict):
    """Numerical check of the output against the bundle's reference output.

    `rel_diff` is max |output - reference| / max |reference|; `tolerance` is the acceptance bound
    the runner applied (docs/protocol.md, "Parity"); `passed` its verdict, null where no bound
    applies (int8, judged at export by top-1 agreement; or a reference too small for fp16).
    A report whose parity did not pass can never have status "ok".
    """

    max_abs_diff: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    reference_checked: bool
    rel_diff: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    tolerance: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    passed: bool | None = None

    @model_validator(mode="after")
    def _verdict_matches(self) -> Parity:
        if self.passed is not None and not self.reference_checked:
            raise ValueError("parity.passed needs reference_checked true")
        if self.rel_diff is not None and self.tolerance is not None and self.passed is not None:
            if self.passed != (self.rel_diff <= self.tolerance):
                raise ValueError(
                    f"parity.passed={self.passed} contradicts rel_diff {self.rel_diff:g} vs tolerance {self.tolerance:g}"
                )
        return self


class Battery(_Strict):
    """Battery at the start of the run, where the platform tells (web: the Battery Status API)."""

    level: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    charging: bool | None = None


Placement = Annotated[
    dict[Ident, Annotated[int, Field(ge=0, le=1 << 24)]], Field(max_length=32)
]
Notes = Annotated[
    dict[
        Annotated[str, StringConstraints(min_length=1, max_length=64)],
        Annotated[str, StringConstraints(max_length=2000)],
    ],
    Field(max_length=32),
]


class Report(_Strict):
    """One latency measurement of one artifact on one device, runtime and accelerator."""

    model_config = ConfigDict(
        title="FreeNet benchmark report",
        json_schema_extra={"$id": "https://freenet-deploy/schema/report/v1"},
    )

    schema_version: Literal["1"]
    run_id: RunId = Field(description="Client-generated UUID; resending the same run is a no-op.")
    created_at: UtcDatetime
    started_at: UtcDatetime
    finished_at: UtcDatetime
    client: Client
    device: Device
    runtime: Runtime
    model: Model
    timing: Timing
    memory: Memory | None = None
    placement: Placement | None = Field(
        default=None,
        description="Nodes/ops per compute unit, e.g. {'gpu': 620, 'cpu': 16}.",
    )
    thermal: Thermal
    parity: Parity | None = None
    battery: Battery | None = None
    status: Literal["ok", "error", "parity_failed"] = Field(
        description="'ok': measured and, where checked, within the parity tolerance. 'parity_failed': "
        "measured, but the output is off the reference beyond the tolerance (the samples are kept, "
        "never used as a speed result). 'error': nothing valid was measured."
    )
    error: Annotated[str, StringConstraints(max_length=MAX_ERROR_CHARS)] | None = None
    notes: Notes | None = Field(
        default=None, description="Free-form string metadata; never used in statistics."
    )

    @model_validator(mode="after")
    def _consistent(self) -> Report:
        if self.status == "ok":
            if self.timing.samples_kind == "raw" and not self.timing.samples_ms:
                raise ValueError("status 'ok' needs at least one entry in timing.samples_ms")
            if self.parity is not None and self.parity.passed is False:
                raise ValueError("status 'ok' with parity.passed false: a report whose parity failed is 'parity_failed'")
        elif self.status == "parity_failed":
            if self.parity is None or self.parity.passed is not False:
                raise ValueError("status 'parity_failed' needs parity.passed false")
        elif not self.error:
            raise ValueError("status 'error' needs a non-empty `error` text")
        if self.finished_at < self.started_at:
            raise ValueError("finished_at is earlier than started_at")
        return self


# On-device parity acceptance (docs/protocol.md, "Parity"): relative to the reference output's
# largest magnitude. CPU paths compute in fp32 (other kernels and summation orders than the export
# check: 1e-3); GPU/NPU paths may compute in fp16 even for an fp32 model (LiteRT GPU, WebGPU,
# NNAPI, Core ML), so they get the fp16 bound. int8 is judged at export (top-1 agreement on real
# images), not from one reference input. A wrong model lands near 1, far above either bound.
FP32_CPU_TOLERANCE = 1e-3
FP16_TOLERANCE = 5e-2
CPU_ACCELERATORS = frozenset({"cpu", "xnnpack", "wasm", "portable"})


def parity_tolerance(precision: str, accelerator: str) -> float | None:
    """The relative bound a runner applies to its output, or None where none applies (int8)."""
    if precision == "int8":
        return None
    if precision == "fp32" and accelerator in CPU_ACCELERATORS:
        return FP32_CPU_TOLERANCE
    return FP16_TOLERANCE


def judge_parity(max_abs_diff: float, reference_max_abs: float, precision: str, accelerator: str) -> Parity:
    """The parity record of one on-device output, with its verdict (None where no bound applies)."""
    tol = parity_tolerance(precision, accelerator)
    rel = max_abs_diff / reference_max_abs if reference_max_abs > 0 else max_abs_diff
    if tol is not None and tol >= FP16_TOLERANCE and reference_max_abs < FP16_MIN_NORMAL:
        tol = None  # the reference underflows fp16: the comparison says nothing (export does the same)
    return Parity(max_abs_diff=max_abs_diff, reference_checked=True, rel_diff=rel, tolerance=tol,
                  passed=None if tol is None else rel <= tol)


def parse_report(data: bytes | str | dict[str, Any] | Report) -> Report:
    """Validate a report from JSON text/bytes, a JSON-decoded dict, or a Report instance.

    Dicts are validated in JSON mode (as if re-read from JSON), so a dict is accepted exactly
    when the same document sent over HTTP would be.
    """
    if isinstance(data, Report):
        return data
    if isinstance(data, dict):
        return Report.model_validate_json(json.dumps(data, allow_nan=True))
    return Report.model_validate_json(data)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one report, as committed for the apps."""
    schema = Report.model_json_schema(mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(json_schema_text())
