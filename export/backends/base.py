"""The contract every export format follows: one `Format` object per format, one module each.

A format module (onnx.py, coreml.py, tflite.py, executorch.py) defines ONE object, `FORMAT`, a
`Format` subclass instance that holds every fact about the format and both of its operations:

    name, extension, targets (each with its precisions and whether this machine can run it),
    default_targets, requires (import name -> pip requirement), tool_packages (distributions
    whose versions every artifact records), accelerators (what `open` can run it on here),
    export_cost (relative seconds per precision: the parallel export's longest-first order),
    memoises (a model's artifacts share one memoised conversion, so one worker builds them).

    export(req: ExportRequest) -> BackendResult
        Convert `req.model` (eval mode, rewrite passes already applied) for `req.target` at
        `req.precision`, writing ONE file or directory at `req.out_path` (inside a staging
        directory: the orchestrator moves it into the bundle only after it is verified, so a crash
        never leaves a half-written artifact). Embed `req.metadata` natively where the format has a
        slot. Record delegate coverage for the target. Heavy imports happen inside the function.

    open(path, target, threads=1, accelerator=None) -> Session
        Load the artifact once on this machine. The SAME session serves the export's parity checks
        (export/api.py) and the host runner's timing (device_bench/runtimes). Raise
        NotRunnableHere(reason) where this machine cannot run it (Core ML prediction needs macOS; a
        Vulkan .pte needs a phone).

The registry (export/backends/__init__.py), the planner's checks, the tool versions, the host
runtimes and the docs' format table are all derived from these objects. Errors are raised as
exceptions with the converter's own message; the orchestrator records them in the status table and
carries on with the other formats.
"""

from __future__ import annotations

import importlib.util
import sys
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..manifest import Coverage, TensorSpec

if TYPE_CHECKING:  # torch is imported where it is used: a timing worker of ONNX Runtime never loads it
    import torch
    from torch import nn

class NotRunnableHere(RuntimeError):
    """The artifact is valid but this machine has no runtime for it (reason in the message)."""


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


def validate_request(req: ExportRequest, fmt: Format) -> None:
    """Refuse a bad target, precision, input rank or calibration set before any slow conversion."""
    fmt.check(req.target, req.precision)
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
    import torch

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


def exported_program(model, x):
    """`torch.export.export(model, (x,))`, traced once per prepared model, input shape and process
    (export.steps.memo) and handed out as a deep copy: Core ML fp32/fp16 and the ExecuTorch programs
    of the fp32 graph (XNNPACK fp32, Vulkan and Core ML fp32/fp16) all start from this one program,
    and a lowering or `run_decompositions` never sees another artifact's. Measured on FreeNet-S2:
    the shared program gives byte-identical .pte files, and a copy costs ~0.1 s against a trace of
    1.5-4 s (docs/export-scaling.md)."""
    import copy

    import torch

    from ..steps import memo

    program = memo(model, ("torch.export", tuple(x.shape), str(x.dtype)), lambda: torch.export.export(model, (x,)))
    return copy.deepcopy(program)


def package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


@dataclass(frozen=True)
class Target:
    """One deployment target of a format: what it runs on and which precisions its backend offers."""

    name: str
    precisions: tuple[str, ...]
    device: str  # where the artifact runs, in words (docs table, notes)
    hosts: tuple[str, ...] = ("linux", "darwin")  # sys.platform values whose pip runtime can run it
    why_not_here: str = ""  # the reason when this machine cannot (NotRunnableHere's message)
    # the short name of this target's mobile-delegate check in the compare report's "mobile
    # delegates" cell ("LiteRT GPU ✓ · NNAPI ✓ · XNNPACK ✓"); its first word, lower-cased, picks
    # the artifact's coverage records; empty: not shown there
    delegate_label: str = ""

    @property
    def runs_here(self) -> bool:
        return sys.platform in self.hosts


class Session(ABC):
    """One loaded artifact. `run` takes and returns the artifact's own tensors (its layout), which is
    what timing measures; `prepare`/`finish` convert from/to float32 NCHW outside the timed call;
    `infer` chains the three for parity."""

    #: where the ops run, e.g. {"gpu": 636, "cpu": 0}; None when the runtime does not say
    placement: dict[str, int] | None = None

    def prepare(self, x_nchw: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x_nchw, dtype=np.float32)

    @abstractmethod
    def run(self, x: np.ndarray) -> np.ndarray: ...

    def finish(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, dtype=np.float32)

    def infer(self, x_nchw: np.ndarray) -> np.ndarray:
        return self.finish(self.run(self.prepare(x_nchw)))


class Format(ABC):
    """Every fact about one export format, and its two operations (see the module docstring)."""

    name: ClassVar[str]
    title: ClassVar[str]  # for the docs table
    extension: ClassVar[str]
    targets: ClassVar[tuple[Target, ...]]
    default_targets: ClassVar[tuple[str, ...]]  # what `freenet export` builds when no target is named
    requires: ClassVar[dict[str, str]]  # import name -> pip requirement
    tool_packages: ClassVar[tuple[str, ...]]  # distributions whose versions every artifact records
    accelerators: ClassVar[tuple[str, ...]] = ("cpu",)  # what open() can run the artifact on here
    # relative cost of exporting one artifact per precision (seconds for FreeNet-S2 on the 2-core CI
    # machine, docs/export-scaling.md): the parallel export hands out the costliest work first, so
    # only the order matters
    export_cost: ClassVar[dict[str, float]] = {}
    # whether a model's artifacts of this format share one memoised conversion in a worker (the
    # ONNX graph, the TFLite flatbuffer: export.steps.memo), so they go to one worker as one unit
    memoises: ClassVar[bool] = False

    @property
    def precisions(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(p for t in self.targets for p in t.precisions))

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise ValueError(f"unknown {self.title} target {name!r}; choose one of {', '.join(self.target_names)}")

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    def check(self, target: str, precision: str) -> None:
        """Raise ValueError when this format does not offer `precision` for `target`."""
        t = self.target(target)
        if precision not in t.precisions:
            raise ValueError(f"{target} does not offer {precision!r}; it offers {', '.join(t.precisions)}")

    def missing(self) -> list[str]:
        """Import names of the required packages that are not installed."""
        return [p for p in self.requires if importlib.util.find_spec(p) is None]

    def ensure_installed(self) -> None:
        missing = self.missing()
        if missing:
            raise ImportError(
                f"the {self.name} exporter needs {', '.join(missing)}: install it with "
                f"`pip install {' '.join(self.requires[p] for p in missing)}` (or `pip install -e .`)"
            )

    def tool_versions(self) -> dict[str, str]:
        return {p: package_version(p) for p in self.tool_packages}

    def runnable(self, target: str) -> Target:
        """The target, or NotRunnableHere with the reason this machine cannot run it."""
        t = self.target(target)
        if not t.runs_here:
            raise NotRunnableHere(f"{target}: {t.why_not_here}")
        return t

    @abstractmethod
    def export(self, req: ExportRequest) -> BackendResult: ...

    @abstractmethod
    def open(self, path: str | Path, target: str, threads: int = 1, accelerator: str | None = None) -> Session: ...
