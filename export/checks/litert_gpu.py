"""Run a .tflite on the real LiteRT GPU accelerator (SwiftShader's software Vulkan) and judge it.

This module owns the GPU-delegation proof for TFLite artifacts on a machine without a GPU:
LiteRT's GPU accelerator (ML Drift over WebGPU/Dawn over Vulkan) runs on SwiftShader, the
software Vulkan driver installed by `scripts/setup_swiftshader.sh`. In mode "gpu" the accelerator
is all-or-nothing (compilation is refused if any op would stay on the CPU); in mode "gpu+cpu" it
falls back per op, and the delegate's stderr says which ops and why. Every run happens in a
subprocess (`_litert_gpu_worker.py`) because the driver's environment must be set before LiteRT
loads and because a crash in the driver must not take the caller down. The result compares the
GPU output with the CPU interpreter on the same input. SwiftShader timings are emulation: they
prove delegation and numerics, never speed (`emulated` is always reported).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from .swiftshader import SETUP_SCRIPT, SwiftShaderMissingError, driver_version as _driver_version, swiftshader_dir, tools_dir

__all__ = ["SETUP_SCRIPT", "SwiftShaderMissingError", "swiftshader_dir", "tools_dir", "run_litert_gpu", "parse_delegate_log"]

Mode = Literal["gpu", "gpu+cpu"]

_WORKER = "export.checks._litert_gpu_worker"


class UnsupportedOp(BaseModel):
    """One op the GPU delegate refused, with the delegate's own reason."""

    op: str
    reason: str


class DelegateLog(BaseModel):
    """What the LiteRT GPU accelerator said on stderr while compiling a model."""

    gpu_ops: int | None = None
    cpu_ops: int | None = None
    unsupported: list[UnsupportedOp] = Field(default_factory=list)
    gpu_partitions: int = 0
    adapter: str | None = None
    adapter_arch: str | None = None
    backend: str | None = None
    adapter_type: str | None = None
    no_adapter: bool = False


_SUMMARY_SPLIT = re.compile(
    r"(\d+) operations will run on the GPU, and the remaining (\d+) operations will run on the CPU"
)
_SUMMARY_NONE = re.compile(r"No operations will run on the GPU, and all (\d+) operations will run on the CPU")
_UNSUPPORTED_HEADER = "Following operations are not supported by GPU delegate:"
_OP_LINE = re.compile(r"^([A-Z][A-Z0-9_]*): (.+)$")
_ADAPTER = re.compile(
    r"Selected adapter: (?P<name>[^,]+), arch=(?P<arch>[^,]*), vendor=[^,]*, "
    r"backend=(?P<backend>[^,]*), adapterType=(?P<type>.*)$"
)


def parse_delegate_log(stderr: str) -> DelegateLog:
    """Parse the GPU delegate's messages (op placement, refusals, selected adapter) from stderr."""
    log = DelegateLog()
    seen: set[tuple[str, str]] = set()
    in_unsupported = False
    for raw in stderr.splitlines():
        line = raw.strip()
        if _UNSUPPORTED_HEADER in line:
            in_unsupported = True
            continue
        if match := _SUMMARY_SPLIT.search(line):
            log.gpu_ops, log.cpu_ops = int(match[1]), int(match[2])
            in_unsupported = False
            continue
        if match := _SUMMARY_NONE.search(line):
            log.gpu_ops, log.cpu_ops = 0, int(match[1])
            in_unsupported = False
            continue
        if in_unsupported:
            if match := _OP_LINE.match(line):
                key = (match[1], match[2].strip())
                if key not in seen:
                    seen.add(key)
                    log.unsupported.append(UnsupportedOp(op=key[0], reason=key[1]))
                continue
            if line:  # the list ended without a summary line
                in_unsupported = False
        if match := _ADAPTER.search(line):
            log.adapter, log.adapter_arch = match["name"].strip(), match["arch"].strip()
            log.backend, log.adapter_type = match["backend"].strip(), match["type"].strip()
        elif "Initializing WebGPU-based API from graph" in line:
            log.gpu_partitions += 1
        elif "No adapters found" in line or "Couldn't load Vulkan" in line:
            log.no_adapter = True
    return log


class LiteRtGpuResult(BaseModel):
    """Outcome of one .tflite on LiteRT's GPU accelerator, checked against the CPU interpreter."""

    model: str
    ok: bool
    mode: Mode
    gpu_ops: int | None = None
    cpu_ops: int | None = None
    total_ops: int | None = None
    gpu_partitions: int = 0
    unsupported: list[UnsupportedOp] = Field(default_factory=list)
    max_abs_diff: float | None = None
    output_max_abs_diff: dict[str, float] = Field(default_factory=dict)
    reference_max_abs: float | None = Field(None, description="largest |value| of the CPU output, for scale")
    input_layouts: dict[str, str] = Field(default_factory=dict)
    emulated: bool = True
    driver: str | None = None
    driver_backend: str | None = None
    driver_version: str | None = None
    litert_version: str | None = None
    enforce_f32: bool = False
    load_ms: float | None = None
    first_run_ms: float | None = None
    run_ms: list[float] = Field(default_factory=list)
    stage: str | None = None
    error: str | None = None
    log_excerpt: str = ""

    @property
    def fully_on_gpu(self) -> bool:
        """True when the model ran and the delegate left no op on the CPU."""
        return self.ok and self.cpu_ops == 0 and self.gpu_partitions > 0


def _litert_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ai-edge-litert")
    except PackageNotFoundError:
        return None


def _excerpt(stderr: str, limit: int = 4000) -> str:
    """The non-INFO part of the worker's stderr: refusals, warnings, errors, tracebacks."""
    keep = [
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(("INFO:", "I0000", "└", "WARNING: [compiler_plugin"))
    ]
    return "\n".join(keep)[-limit:]


def _explain_failure(returncode: int, stage: str, worker: dict, log: DelegateLog, mode: Mode, stderr: str) -> str:
    if log.no_adapter:
        return (
            "no Vulkan adapter was found: LiteRT's GPU accelerator could not load SwiftShader; "
            f"reinstall it with `bash {SETUP_SCRIPT}`"
        )
    if stage == "start" and "exception" in worker:
        return f"could not load SwiftShader's Vulkan loader ({worker['exception']}); reinstall with `bash {SETUP_SCRIPT}`"
    if stage == "compile" and log.unsupported and mode == "gpu":
        ops = "; ".join(f"{u.op}: {u.reason}" for u in log.unsupported)
        placement = ""
        if log.cpu_ops is not None:
            placement = f" ({log.cpu_ops} of {log.cpu_ops + (log.gpu_ops or 0)} ops would run on the CPU)"
        return f"GPU-only compilation refused{placement}: {ops}"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"worker process died with {name} during stage {stage!r}"
    detail = worker.get("exception") or f"exit code {returncode}"
    # LiteRT's exception text is only a source location; the runtime's last ERROR line says why.
    errors = [line.strip() for line in stderr.splitlines() if line.startswith(("ERROR", "E0000"))]
    if errors:
        detail = f"{detail} ({errors[-1]})"
    return f"failed during stage {stage!r}: {detail}"


def run_litert_gpu(
    model_path: str | Path,
    inputs: np.ndarray | list[np.ndarray] | None = None,
    *,
    mode: Mode = "gpu",
    seed: int = 0,
    runs: int = 0,
    enforce_f32: bool = False,
    timeout_s: float = 600.0,
    tools_root: Path | None = None,
    save_outputs: Path | None = None,
) -> LiteRtGpuResult:
    """Compile and run `model_path` on LiteRT's GPU accelerator over SwiftShader, in a subprocess.

    `inputs`: one array per signature input, in the model's declared shape or its NCHW/NHWC
    transpose (converted to what the model declares); None draws seeded standard-normal inputs.
    `mode`: "gpu" refuses any model with an op left on the CPU; "gpu+cpu" lets ops fall back and
    reports which and why. `runs`: timed runs after the first one (emulated timings).
    `save_outputs`: write the GPU and CPU outputs there (.npz, keys "gpu.NAME" / "cpu.NAME").
    Raises SwiftShaderMissingError when the driver is not installed; every failure of the model
    itself (refusal, crash, timeout) comes back as `ok=False` with `error` set.
    """
    if mode not in ("gpu", "gpu+cpu"):
        raise ValueError(f"mode must be 'gpu' or 'gpu+cpu', not {mode!r}")
    driver = swiftshader_dir(tools_root)
    model_path = Path(model_path).resolve()
    if not model_path.is_file():
        raise FileNotFoundError(f"no such .tflite file: {model_path}")
    if isinstance(inputs, np.ndarray):
        inputs = [inputs]

    driver_version = _driver_version(driver)

    with tempfile.TemporaryDirectory(prefix="litert-gpu-") as tmp:
        tmp_dir = Path(tmp)
        input_files = []
        for i, array in enumerate(inputs or []):
            path = tmp_dir / f"input_{i}.npy"
            np.save(path, np.asarray(array))
            input_files.append(str(path))
        request = {
            "model": str(model_path),
            "mode": mode,
            "inputs": input_files,
            "seed": seed,
            "runs": runs,
            "enforce_f32": enforce_f32,
            "out_dir": str(tmp_dir),
            "swiftshader_dir": str(driver),
        }
        request_file = tmp_dir / "request.json"
        request_file.write_text(json.dumps(request))
        try:
            proc = subprocess.run(
                # the child sets SwiftShader up itself (export.checks.swiftshader), like the timing worker
                [sys.executable, "-m", _WORKER, str(request_file)],
                capture_output=True,
                text=True,
                errors="replace",
                timeout=timeout_s,
            )
            returncode, stderr = proc.returncode, proc.stderr
            timed_out = False
        except subprocess.TimeoutExpired as exc:
            returncode = -signal.SIGKILL
            stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
            timed_out = True
        result_file = tmp_dir / "result.json"
        worker = json.loads(result_file.read_text()) if result_file.is_file() else {}
        outputs_file = tmp_dir / "outputs.npz"
        if save_outputs is not None and outputs_file.is_file():
            Path(save_outputs).write_bytes(outputs_file.read_bytes())

    log = parse_delegate_log(stderr)
    stage = worker.get("stage", "not started")
    ok = returncode == 0 and stage == "done"
    gpu_ops, cpu_ops = log.gpu_ops, log.cpu_ops
    if gpu_ops is None and ok and log.gpu_partitions:
        # The delegate only prints a placement summary when something stays on the CPU.
        gpu_ops, cpu_ops = worker.get("total_ops"), 0
    if ok and log.gpu_partitions == 0:
        ok = mode == "gpu+cpu"  # nothing reached the GPU; only acceptable when fallback was allowed
        gpu_ops, cpu_ops = 0, worker.get("total_ops")
    error = None
    if timed_out:
        error = f"timed out after {timeout_s:.0f} s (stage {stage!r})"
    elif not ok:
        error = _explain_failure(returncode, stage, worker, log, mode, stderr)
        if stage == "done" and log.gpu_partitions == 0:
            error = "the model ran, but no partition was delegated to the GPU"
    emulated = log.adapter_type is None or "Software" in log.adapter_type or log.adapter_arch == "swiftshader"
    return LiteRtGpuResult(
        model=str(model_path),
        ok=ok,
        mode=mode,
        gpu_ops=gpu_ops,
        cpu_ops=cpu_ops,
        total_ops=worker.get("total_ops"),
        gpu_partitions=log.gpu_partitions,
        unsupported=log.unsupported,
        max_abs_diff=worker.get("max_abs_diff"),
        output_max_abs_diff=worker.get("output_max_abs_diff", {}),
        reference_max_abs=worker.get("reference_max_abs"),
        input_layouts=worker.get("input_layouts", {}),
        emulated=emulated,
        driver=log.adapter,
        driver_backend=log.backend,
        driver_version=driver_version,
        litert_version=_litert_version(),
        enforce_f32=enforce_f32,
        load_ms=worker.get("load_ms"),
        first_run_ms=worker.get("first_run_ms"),
        run_ms=worker.get("run_ms", []),
        stage=stage,
        error=error,
        log_excerpt=_excerpt(stderr),
    )


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Run a .tflite on LiteRT's GPU accelerator (SwiftShader).")
    parser.add_argument("model", type=Path)
    parser.add_argument("--mode", choices=["gpu", "gpu+cpu"], default="gpu")
    parser.add_argument("--runs", type=int, default=0, help="timed runs after the first (emulated)")
    parser.add_argument("--enforce-f32", action="store_true")
    args = parser.parse_args(argv)
    result = run_litert_gpu(args.model, mode=args.mode, runs=args.runs, enforce_f32=args.enforce_f32)
    print(result.model_dump_json(indent=2, exclude={"log_excerpt"}))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(_main())
