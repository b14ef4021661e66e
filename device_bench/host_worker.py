"""One measurement process of the host runner: loads ONE artifact in ONE runtime and times it.

The runner (runner.py) starts one worker per artifact and talks to it over JSON lines on
stdin/stdout, so that every runtime lives in its own process (no cross-runtime interference,
TOOLCHAIN.md) while the runner interleaves timed rounds across models. Commands:

    {"cmd": "load"}            -> {"load_ms", "first_inference_ms", "runtime_version"[, "weights_sha256"]}
    {"cmd": "warmup", "n": W}  -> {"ok": true}
    {"cmd": "run", "n": N}     -> {"samples_ms": [...]}
    {"cmd": "parity"}          -> {"max_abs_diff": float, "reference_max_abs": float}
    {"cmd": "quit"}

The worker imports only its runtime. Latency is wall time around one synchronous inference
(output read back included, which is what an app sees).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]
# Each runtime factory returns (run, runtime version, extra fields for the "load" reply).


def _onnxruntime(path: Path, threads: int, spec: dict) -> tuple[Runner, str, dict]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return (lambda x: sess.run(None, {name: x})[0]), ort.__version__, {}


def _litert(path: Path, threads: int, spec: dict) -> tuple[Runner, str, dict]:
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]

    def run(x: np.ndarray) -> np.ndarray:
        it.set_tensor(inp, x)
        it.invoke()
        return it.get_tensor(out)

    return run, version("ai-edge-litert"), {}


def _litert_gpu_emulated(path: Path, threads: int, spec: dict) -> tuple[Runner, str, dict]:
    """LiteRT's GPU accelerator on SwiftShader (software Vulkan): proves the GPU code path; the
    timings are emulation and the runner marks such reports emulated."""
    import ctypes
    from importlib.metadata import version

    driver = Path(spec["swiftshader_dir"])
    os.environ["VK_DRIVER_FILES"] = str(driver / "vk_swiftshader_icd.json")
    ctypes.CDLL(str(driver / "libvulkan.so.1"), mode=ctypes.RTLD_GLOBAL)
    from ai_edge_litert.compiled_model import CompiledModel
    from ai_edge_litert.hardware_accelerator import HardwareAccelerator

    model = CompiledModel.from_file(str(path), hardware_accel=HardwareAccelerator.GPU)
    ib, ob = model.create_input_buffers(0), model.create_output_buffers(0)
    n_out = int(np.prod(spec["output_shape"]))

    def run(x: np.ndarray) -> np.ndarray:
        ib[0].write(x)
        model.run_by_index(0, ib, ob)
        return ob[0].read(n_out, np.float32)  # read() waits for the GPU

    return run, version("ai-edge-litert"), {}


def _executorch(path: Path, threads: int, spec: dict) -> tuple[Runner, str, dict]:
    from importlib.metadata import version

    import torch
    from executorch.runtime import Runtime

    torch.set_num_threads(threads)
    # XNNPACK inside ExecuTorch has its own threadpool sized to every core; without this reset it
    # ran with 2 threads while the other runtimes had 1 (and looked twice as fast).
    from executorch.extension.pybindings import portable_lib

    portable_lib._unsafe_reset_threadpool(threads)
    if portable_lib._threadpool_get_thread_count() != threads:
        raise RuntimeError(f"ExecuTorch threadpool has {portable_lib._threadpool_get_thread_count()} threads, asked for {threads}")
    method = Runtime.get().load_program(str(path)).load_method("forward")
    return (lambda x: method.execute([torch.from_numpy(x)])[0].numpy()), version("executorch"), {}


def _pytorch(path: Path, threads: int, spec: dict) -> tuple[Runner, str, dict]:
    """Eager PyTorch runs no file: it rebuilds exactly the model the artifact was exported from
    (constructor options, seed or checkpoint, the same rewrite passes) and refuses when the
    rebuilt model is not that one (config hash or checkpoint digest differ)."""
    import torch

    import freenet
    from export.api import config_hash
    from export.manifest import sha256_file
    from export.passes import prepare

    torch.set_num_threads(threads)
    checkpoint = None
    if spec["weights"].startswith("checkpoint:"):
        want = spec["weights"].split(":", 1)[1]
        if not spec.get("checkpoint"):
            raise RuntimeError(f"the bundle's {spec['model']} has trained weights (checkpoint sha256 {want[:12]}...): eager "
                               "PyTorch needs that checkpoint file, pass it with --checkpoint")
        checkpoint = Path(spec["checkpoint"])
        got = sha256_file(checkpoint)
        if got != want:
            raise RuntimeError(f"--checkpoint {checkpoint} has sha256 {got[:12]}..., the bundle was exported from {want[:12]}...")
    elif not spec["weights"].startswith("random"):
        raise RuntimeError(f"unknown weights identity {spec['weights']!r}: cannot rebuild the model")
    torch.manual_seed(spec["seed"])
    model = freenet.create_model(spec["model"], checkpoint=checkpoint, **spec["model_options"]).eval()
    built = config_hash(spec["model"], model, spec["model_options"])
    if built != spec["config_hash"]:
        raise RuntimeError(f"the rebuilt {spec['model']} has config hash {built}, the artifact {spec['config_hash']}: "
                           "this code builds a different model than the bundle's (re-export the bundle)")
    # There is no artifact file: identify the weights by a digest of the state dict instead.
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    example = torch.from_numpy(np.fromfile(spec["input_file"], dtype="<f4").reshape(spec["input_shape_nchw"]))
    graph = prepare(model, example, spec["passes"])[0] if spec["passes"] else model

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return graph(torch.from_numpy(x)).numpy()

    return run, torch.__version__, {"weights_sha256": h.hexdigest()}


RUNTIMES = {
    "onnxruntime": _onnxruntime,
    "litert": _litert,
    "litert-gpu-emulated": _litert_gpu_emulated,
    "executorch": _executorch,
    "pytorch": _pytorch,
}


# Native runtimes (LiteRT's GPU accelerator, XNNPACK) print to file descriptor 1: the protocol gets
# a private duplicate of stdout and fd 1 is pointed at stderr, so nothing else lands in the pipe.
_PROTO = None


# Imported before the load timer starts: load_ms is the runtime's model load, not Python imports.
# (The emulated GPU path is left out: its driver environment must be set before LiteRT loads.)
PREIMPORT = {
    "onnxruntime": ["onnxruntime"],
    "litert": ["ai_edge_litert.interpreter"],
    "executorch": ["torch", "executorch.runtime"],
    "pytorch": ["torch", "freenet", "export.api", "export.passes"],
}


def _reply(obj: dict) -> None:
    _PROTO.write(json.dumps(obj) + "\n")
    _PROTO.flush()


def _pin(cpus: list[int] | None) -> list[int] | None:
    """Pin this process to `cpus` before any runtime starts its threads (they inherit the mask).
    Returns the cores actually held, None when not pinned (no request, or the OS refused)."""
    if not cpus:
        return None
    try:
        os.sched_setaffinity(0, cpus)
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError, ValueError):
        return None


def main() -> int:
    global _PROTO
    _PROTO = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    spec = json.loads(sys.argv[1])
    cpus = _pin(spec.get("cpus"))
    import importlib

    for mod in PREIMPORT.get(spec["runtime"], []):
        importlib.import_module(mod)
    x = np.fromfile(spec["input_file"], dtype="<f4").reshape(spec["input_shape_nchw"])
    if spec.get("layout") == "NHWC":
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    ref = np.fromfile(spec["output_file"], dtype="<f4")
    run: Runner | None = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "load":
                t0 = time.perf_counter()
                run, ver, extra = RUNTIMES[spec["runtime"]](Path(spec["path"]), spec["threads"], spec)
                t1 = time.perf_counter()
                run(x)
                t2 = time.perf_counter()
                _reply({"load_ms": (t1 - t0) * 1e3, "first_inference_ms": (t2 - t1) * 1e3, "runtime_version": ver,
                        **({"cpus": cpus} if cpus else {}), **extra})
            elif cmd["cmd"] == "warmup":
                for _ in range(cmd["n"]):
                    run(x)
                _reply({"ok": True})
            elif cmd["cmd"] == "run":
                samples = []
                for _ in range(cmd["n"]):
                    t0 = time.perf_counter()
                    run(x)
                    samples.append((time.perf_counter() - t0) * 1e3)
                _reply({"samples_ms": samples})
            elif cmd["cmd"] == "parity":
                out = np.asarray(run(x), dtype=np.float32).reshape(-1)
                _reply({"max_abs_diff": float(np.abs(out - ref).max()), "reference_max_abs": float(np.abs(ref).max())})
            elif cmd["cmd"] == "quit":
                return 0
        except Exception as e:  # noqa: BLE001 - reported to the runner as an error report
            _reply({"error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
