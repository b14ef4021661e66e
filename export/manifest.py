"""The model-bundle manifest: the one schema that describes every exported artifact.

A bundle is a directory of artifacts plus `manifest.json`, validated by these pydantic models. The
JSON Schema generated from them (`python -m export.manifest > export/schema/manifest.schema.json`)
is what the runner apps read. Every artifact carries its provenance (model, config hash, passes and
what they rewrote, tool versions, sha256), its verification (parity, delegate coverage) and a
reference input/output pair so that a phone can check its own numerics.
"""

from __future__ import annotations

import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1"

Format = Literal["onnx", "coreml", "tflite", "executorch"]
Precision = Literal["fp32", "fp16", "int8"]
Status = Literal["ok", "failed", "skipped"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TensorSpec(_Model):
    name: str
    shape: list[int]
    dtype: str = "float32"
    layout: Literal["NCHW", "NHWC", "NC"] = "NCHW"
    mean: list[float] | None = None
    std: list[float] | None = None


class Reference(_Model):
    """Raw little-endian float32 files inside the bundle; the input is already normalised."""

    input_file: str
    output_file: str
    dtype: Literal["float32"] = "float32"
    input_sha256: str
    output_sha256: str
    seed: int


class PassRecord(_Model):
    name: str
    rewrites: int = Field(description="sites this pass rewrote")
    before: str = Field(description="the pattern it replaces (`before -> after` docstring)")
    not_matched: str | None = Field(None, description="why the pass rewrote nothing (its check()), when it did not")


# The acceptance rules of an artifact's parity check (docs/export-onnx-tflite.md, "Parity"):
# fp32/fp16 compare the output on the reference input with eager PyTorch fp32 (relative to the
# output's largest magnitude); int8 is judged by top-1 agreement with eager fp32 on real images,
# because one input says little about a quantized model. Missing a rule fails the artifact.
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2}
INT8_MIN_TOP1_AGREEMENT = 0.8
FP16_MIN_NORMAL = 6.1e-5  # an fp16 reference output below this underflows: the check is inconclusive


class Parity(_Model):
    checked: bool
    reference: str = "eager pytorch fp32"
    max_abs_diff: float | None = None
    rel_diff: float | None = Field(None, description="max abs diff / max abs of the reference output")
    tolerance: float | None = Field(None, description="fp32/fp16: the largest rel_diff accepted")
    passed: bool | None = Field(None, description="the verdict of the rule that applies; null: inconclusive or not run")
    top1_agreement: float | None = Field(None, description="int8: share of real images with the same top-1")
    min_top1_agreement: float | None = Field(None, description="int8: the smallest top1_agreement accepted")
    images: int | None = None
    note: str | None = None

    def failure(self) -> str | None:
        """Why this check fails the artifact, or None when it does not."""
        if self.passed is not False:
            return None
        if self.min_top1_agreement is not None:
            return (f"int8 top-1 agreement {self.top1_agreement:.0%} on {self.images} images is below "
                    f"the required {self.min_top1_agreement:.0%}")
        return f"parity {self.rel_diff:.2e} exceeds tolerance {self.tolerance:.0e}"


class Coverage(_Model):
    """How much of the graph the target delegate/compute unit takes, and the evidence."""

    tool: str
    delegate: str
    supported_nodes: int | None = None
    total_nodes: int | None = None
    partitions: int | None = None
    full: bool | None = None
    unsupported: list[str] = Field(default_factory=list)
    detail: dict = Field(default_factory=dict)


class Artifact(_Model):
    id: str
    model: str
    model_family: str
    config_hash: str
    weights: str = Field("random", description="'random(seed=N)' or 'checkpoint:<sha256>'")
    model_options: dict[str, Any] = Field(
        default_factory=dict, description="constructor options the model was built with (`--set KEY=VALUE`)"
    )
    format: Format
    target: str
    precision: Precision
    status: Status
    error: str | None = None
    file: str | None = Field(None, description="path inside the bundle; Core ML packages ship as an uncompressed .mlpackage.zip")
    sha256: str | None = None
    size_bytes: int | None = None
    inputs: list[TensorSpec] = Field(default_factory=list)
    outputs: list[TensorSpec] = Field(default_factory=list)
    reference: Reference | None = None
    passes: list[PassRecord] = Field(default_factory=list)
    tool_versions: dict[str, str] = Field(default_factory=dict)
    parity: Parity | None = None
    coverage: list[Coverage] = Field(default_factory=list)
    export_seconds: float | None = None
    step_seconds: dict[str, float] = Field(
        default_factory=dict,
        description="where export_seconds went: prepare.* (the model's build and rewrite passes, on the first artifact of "
                    "a model in each process), convert (with the format's own convert.* sub-steps: trace, quantize, "
                    "lower, coverage, gpu_check), parity, package, write; memo_hits counts conversions reused in-process",
    )
    worker: str | None = Field(None, description="where it was converted: 'local', 'pid:<n>' or a cluster worker's address")
    log_file: str | None = Field(None, description="path inside the bundle of the converters' own output for this artifact")
    params: int | None = None
    macs: int | None = None
    min_deployment_target: str | None = None
    notes: list[str] = Field(default_factory=list)


class Manifest(_Model):
    schema_version: Literal["1"] = SCHEMA_VERSION
    bundle_id: str
    created_at: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    tool: str = "freenet-deploy"
    artifacts: list[Artifact] = Field(default_factory=list)

    def find(self, model: str, fmt: str, target: str, precision: str) -> Artifact | None:
        for a in self.artifacts:
            if (a.model, a.format, a.target, a.precision) == (model, fmt, target, precision):
                return a
        return None

    @classmethod
    def load(cls, path: Path) -> Manifest:
        return cls.model_validate_json(Path(path).read_text())

    def dump(self, path: Path) -> None:
        """Write atomically: a crash never leaves a half-written manifest."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2, exclude_none=False))
        tmp.replace(path)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_schema() -> dict:
    return Manifest.model_json_schema()


if __name__ == "__main__":
    json.dump(json_schema(), sys.stdout, indent=2)
    sys.stdout.write("\n")
