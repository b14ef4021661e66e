"""Subprocess body of `export.checks.litert_gpu`: one .tflite on LiteRT's GPU accelerator.

Runs as its own process (`python -m export.checks._litert_gpu_worker REQUEST.json`) so that the
Vulkan loader is loaded before LiteRT and a crash inside the driver only kills this process. From
the project it imports only export.checks.swiftshader (standard library only). It runs the CPU interpreter first (the reference), then compiles the model for
the GPU accelerator, runs it and writes outputs and timings. The result file names the stage
in progress ("reference", "compile", "run", then "done"), so the parent learns where it stopped
if the process dies.
The delegate's own explanations (which ops stay on the CPU and why) go to stderr, which the
parent parses.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def _save(path: Path, result: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)


def _declared_layout(shape: list[int]) -> str:
    """Best guess of a 4-D image tensor's layout from its declared shape (channels are 1 or 3)."""
    if len(shape) != 4:
        return "other"
    if shape[1] in (1, 3) and shape[3] not in (1, 3):
        return "NCHW"
    if shape[3] in (1, 3) and shape[1] not in (1, 3):
        return "NHWC"
    return "unknown"


def _fit_to_declared(name: str, array, declared: list[int], layouts: dict[str, str]):
    """Return `array` in the model's declared shape, transposing NCHW<->NHWC when that is what differs."""
    declared_t = tuple(declared)
    if tuple(array.shape) == declared_t:
        layouts[name] = f"as given ({_declared_layout(declared)})"
        return array
    if array.ndim == 4:
        if tuple(array.transpose(0, 2, 3, 1).shape) == declared_t:
            layouts[name] = "NCHW given, transposed to the model's NHWC"
            return array.transpose(0, 2, 3, 1).copy()
        if tuple(array.transpose(0, 3, 1, 2).shape) == declared_t:
            layouts[name] = "NHWC given, transposed to the model's NCHW"
            return array.transpose(0, 3, 1, 2).copy()
    raise ValueError(
        f"input {name!r} has shape {list(array.shape)} but the model declares {declared}; "
        "pass an array of the declared shape (NCHW and NHWC versions of it are accepted)"
    )


def main(request_path: str) -> int:
    request = json.loads(Path(request_path).read_text())
    out_dir = Path(request["out_dir"])
    result_path = out_dir / "result.json"
    result: dict = {"stage": "start"}
    _save(result_path, result)

    # Before LiteRT's WebGPU accelerator (Dawn) looks for a Vulkan driver.
    from export.checks.swiftshader import use_swiftshader

    use_swiftshader(Path(request["swiftshader_dir"]))

    import numpy as np
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.options import GpuOptions, Options

    model_path = request["model"]
    result["stage"] = "reference"
    _save(result_path, result)

    # --- CPU reference: the plain interpreter through the model's signature.
    interpreter = Interpreter(model_path=model_path)
    result["total_ops"] = len(interpreter._get_ops_details())
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise ValueError(f"{model_path} has no signature; LiteRT's CompiledModel needs one")
    signature_key = request.get("signature") or next(iter(signatures))
    runner = interpreter.get_signature_runner(signature_key)
    input_details = runner.get_input_details()
    input_names = list(signatures[signature_key]["inputs"])

    given = request.get("inputs") or []
    if given and len(given) != len(input_names):
        raise ValueError(f"model has inputs {input_names} but {len(given)} arrays were given")
    rng = np.random.default_rng(request.get("seed", 0))
    layouts: dict[str, str] = {}
    inputs: dict[str, np.ndarray] = {}
    for i, name in enumerate(input_names):
        details = input_details[name]
        declared = [int(d) for d in details["shape"]]
        if given:
            array = np.load(given[i]).astype(details["dtype"], copy=False)
            inputs[name] = np.ascontiguousarray(_fit_to_declared(name, array, declared, layouts))
        else:
            inputs[name] = rng.standard_normal(declared).astype(details["dtype"])
            layouts[name] = f"random ({_declared_layout(declared)})"
    result["input_layouts"] = layouts
    reference = runner(**inputs)
    result["stage"] = "compile"
    _save(result_path, result)

    # --- GPU: compile (the delegate decides op placement here), then run.
    accelerators = HardwareAccelerator.GPU
    if request["mode"] == "gpu+cpu":
        accelerators = HardwareAccelerator.GPU | HardwareAccelerator.CPU
    options = Options(
        hardware_accelerators=accelerators,
        gpu_options=GpuOptions(enforce_f32=bool(request.get("enforce_f32", False))),
    )
    start = time.perf_counter()
    model = CompiledModel.from_file(model_path, options=options)
    result["load_ms"] = (time.perf_counter() - start) * 1e3
    result["stage"] = "run"
    _save(result_path, result)

    in_buffers = {n: model.create_input_buffer_by_name(signature_key, n) for n in input_names}
    output_details = model.get_output_tensor_details(signature_key)
    out_buffers = {n: model.create_output_buffer_by_name(signature_key, n) for n in output_details}
    for name, buffer in in_buffers.items():
        buffer.write(inputs[name])

    def run_once() -> tuple[float, dict[str, np.ndarray]]:
        # run_by_name may return before the GPU finishes; read() waits, so time both.
        t0 = time.perf_counter()
        model.run_by_name(signature_key, in_buffers, out_buffers)
        outs = {}
        for name, details in output_details.items():
            shape = [int(d) for d in details["shape"]]
            count = int(np.prod(shape)) if shape else 1
            outs[name] = out_buffers[name].read(count, np.dtype(details["dtype"])).reshape(shape)
        return (time.perf_counter() - t0) * 1e3, outs

    first_ms, outputs = run_once()
    result["first_run_ms"] = first_ms
    result["run_ms"] = [run_once()[0] for _ in range(int(request.get("runs", 0)))]

    diffs, scales = {}, {}
    for name, value in outputs.items():
        ref = np.asarray(reference[name], dtype=np.float64)
        got = np.asarray(value, dtype=np.float64).reshape(ref.shape)
        diffs[name] = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        scales[name] = float(np.max(np.abs(ref))) if ref.size else 0.0
        if not np.all(np.isfinite(got)):
            diffs[name] = float("inf")
    result["output_max_abs_diff"] = diffs
    result["reference_max_abs"] = max(scales.values()) if scales else None
    result["max_abs_diff"] = max(diffs.values()) if diffs else None
    out_file = out_dir / "outputs.npz"
    arrays = {f"gpu.{k}": v for k, v in outputs.items()}
    arrays.update({f"cpu.{k}": np.asarray(v) for k, v in reference.items()})
    np.savez(out_file, **arrays)
    result["stage"] = "done"
    _save(result_path, result)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except Exception as exc:  # reported to the parent through the result file and the exit code
        request = json.loads(Path(sys.argv[1]).read_text())
        result_path = Path(request["out_dir"]) / "result.json"
        partial = json.loads(result_path.read_text()) if result_path.exists() else {}
        partial["exception"] = f"{type(exc).__name__}: {exc}"
        _save(result_path, partial)
        print(f"worker failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(3)
