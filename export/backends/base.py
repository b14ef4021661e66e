"""The contract every backend module follows.

A backend module (onnx.py, coreml.py, tflite.py, executorch.py) exposes exactly:

    export(req: ExportRequest) -> BackendResult
        Convert `req.model` (eval mode, rewrite passes already applied) for `req.target` at
        `req.precision`, writing ONE file or directory at `req.out_path` (inside a staging
        directory: the orchestrator moves it into the bundle only after it is verified, so a crash
        never leaves a half-written artifact). Embed `req.metadata` natively where the format has a
        slot. Record delegate coverage for the target. Heavy imports happen inside the function.

    run(path: Path, x: np.ndarray, target: str) -> np.ndarray
        Run the artifact on this machine for parity (float32 NCHW input as in eager PyTorch; the
        backend handles its own layout). Raise NotRunnableHere(reason) where this machine cannot
        run it (Core ML prediction needs macOS; a Vulkan .pte needs a phone).

Errors are raised as exceptions with the converter's own message; the orchestrator records them in
the status table and carries on with the other formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..manifest import Coverage, TensorSpec

# import name -> PyPI distribution, for "install it with" messages
PIP_NAMES = {
    "onnx": "onnx==1.23.2",
    "onnxruntime": "onnxruntime==1.32.0",
    "onnxscript": "onnxscript==0.7.2",
    "coremltools": "coremltools==9.0",
    "litert_torch": "litert-torch==0.10.0",
    "ai_edge_litert": "ai-edge-litert==2.3.0",
    "ai_edge_quantizer": "ai-edge-quantizer==0.10.*",
    "executorch": "executorch==1.5.1",
}


class NotRunnableHere(RuntimeError):
    """The artifact is valid but this machine has no runtime for it (reason in the message)."""


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str
    targets: tuple[str, ...]
    precisions: tuple[str, ...]
    requires: tuple[str, ...]

    @property
    def pip_names(self) -> dict[str, str]:
        return {p: PIP_NAMES.get(p, p) for p in self.requires}


@dataclass
class ExportRequest:
    model: nn.Module
    example_input: torch.Tensor
    out_path: Path
    target: str
    precision: str
    metadata: dict[str, str] = field(default_factory=dict)
    # real, normalised images (N, C, H, W) for int8 calibration; random data if None
    calibration: torch.Tensor | None = None
    channels_last_io: bool = False  # TFLite: NHWC input and output tensors


@dataclass
class BackendResult:
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tool_versions: dict[str, str] = field(default_factory=dict)
    coverage: list[Coverage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    min_deployment_target: str | None = None


RANDOM_CALIBRATION_SAMPLES = 16


def validate_request(req: ExportRequest, fmt: str, targets, precisions) -> None:
    """Refuse a bad target, precision, input rank or calibration set before any slow conversion."""
    if req.target not in targets:
        raise ValueError(f"unknown {fmt} target {req.target!r}; choose one of {', '.join(targets)}")
    if req.precision not in precisions:
        raise ValueError(f"unknown precision {req.precision!r}; choose one of {', '.join(precisions)}")
    if req.example_input.ndim != 4:
        raise ValueError(f"example_input must be one NCHW image batch, got shape {list(req.example_input.shape)}")
    if req.precision == "int8":
        calibration_batches(req)


def calibration_batches(req: ExportRequest) -> tuple[list[np.ndarray], str]:
    """int8 calibration batches shaped like `req.example_input` (NCHW float32) from
    `req.calibration`, or seeded noise when no images were given, and a note saying which."""
    batch = req.example_input.shape[0]
    if req.calibration is None:
        rng = np.random.default_rng(0)
        shape = tuple(req.example_input.shape)
        data = [rng.standard_normal(shape).astype(np.float32) for _ in range(RANDOM_CALIBRATION_SAMPLES)]
        return data, f"calibrated on {RANDOM_CALIBRATION_SAMPLES} seeded random-normal inputs (no real images given)"
    images = req.calibration.detach().to(torch.float32).cpu().numpy()
    if images.ndim != 4 or images.shape[1:] != tuple(req.example_input.shape[1:]):
        raise ValueError(
            f"calibration images must be (N, {', '.join(map(str, req.example_input.shape[1:]))}), "
            f"got {list(images.shape)}"
        )
    data = [images[i : i + batch] for i in range(0, images.shape[0] - batch + 1, batch)]
    if not data:
        raise ValueError(f"need at least {batch} calibration images, got {images.shape[0]}")
    return data, f"calibrated on {len(data) * batch} real images"


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"
