"""One measurement process of the host runner: loads ONE artifact in ONE runtime and times it.

The runner (runner.py) starts one worker per artifact and talks to it over JSON lines on
stdin/stdout, so that every runtime lives in its own process (no cross-runtime interference,
TOOLCHAIN.md) while the runner interleaves timed rounds across models. Commands:

    {"cmd": "load"}            -> {"load_ms", "first_inference_ms", "runtime_version", "placement"[, "cpus", ...]}
    {"cmd": "warmup", "n": W}  -> {"ok": true}
    {"cmd": "run", "n": N}     -> {"samples_ms": [...]}
    {"cmd": "parity"}          -> {"max_abs_diff": float, "reference_max_abs": float}
    {"cmd": "quit"}

The runtime object (device_bench/runtimes) opens the session, through the artifact's format object
(the same `open` the export's parity check used). The worker imports only that runtime. Latency is
wall time around one synchronous `Session.run` on the artifact's own input layout (output read back
included, which is what an app sees); layout conversion happens once, outside the timer.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time

import numpy as np

# Native runtimes (LiteRT's GPU accelerator, XNNPACK) print to file descriptor 1: the protocol gets
# a private duplicate of stdout and fd 1 is pointed at stderr (the worker's log file), so nothing
# else lands in the pipe.
_PROTO = None


def _reply(obj: dict) -> None:
    _PROTO.write(json.dumps(obj) + "\n")
    _PROTO.flush()


def _pin(cpus: list[int] | None) -> list[int] | None:
    """Pin this process to `cpus` (the runner's spec["cpus"]) before any runtime starts its
    threads: threads created later inherit the mask, and the ones already running (numpy's BLAS
    pool, started at import) are moved too. Returns the cores actually held, None when not pinned
    (no request, or the OS refused)."""
    if not cpus:
        return None
    try:
        os.sched_setaffinity(0, cpus)
    except (AttributeError, OSError, ValueError):
        return None
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        tids = []
    for tid in tids:
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (OSError, ValueError):
            pass
    return sorted(os.sched_getaffinity(0))


def main() -> int:
    global _PROTO
    _PROTO = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    spec = json.loads(sys.argv[1])
    cpus = _pin(spec.get("cpus"))  # before the runtime is imported: its thread pools inherit the mask
    from device_bench.runtimes import get_runtime

    runtime = get_runtime(spec["runtime"])
    for mod in runtime.preimport:  # before the load timer: load_ms is the model load, not imports
        importlib.import_module(mod)
    x_nchw = np.fromfile(spec["input_file"], dtype="<f4").reshape(spec["input_shape_nchw"])
    ref = np.fromfile(spec["output_file"], dtype="<f4")
    session = x = None
    for line in sys.stdin:
        cmd = json.loads(line)
        try:
            if cmd["cmd"] == "load":
                t0 = time.perf_counter()
                session = runtime.open(spec)
                t1 = time.perf_counter()
                x = session.prepare(x_nchw)
                t2 = time.perf_counter()
                session.run(x)
                t3 = time.perf_counter()
                _reply({"load_ms": (t1 - t0) * 1e3, "first_inference_ms": (t3 - t2) * 1e3, "runtime_version": runtime.version(),
                        "placement": session.placement, **({"cpus": cpus} if cpus else {}), **runtime.load_info(session)})
            elif cmd["cmd"] == "warmup":
                for _ in range(cmd["n"]):
                    session.run(x)
                _reply({"ok": True})
            elif cmd["cmd"] == "run":
                samples = []
                for _ in range(cmd["n"]):
                    t0 = time.perf_counter()
                    session.run(x)
                    samples.append((time.perf_counter() - t0) * 1e3)
                _reply({"samples_ms": samples})
            elif cmd["cmd"] == "parity":
                out = np.asarray(session.finish(session.run(x)), dtype=np.float32).reshape(-1)
                _reply({"max_abs_diff": float(np.abs(out - ref).max()), "reference_max_abs": float(np.abs(ref).max())})
            elif cmd["cmd"] == "quit":
                return 0
        except Exception as e:  # noqa: BLE001 - reported to the runner as an error report
            _reply({"error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
