"""The host-runtime registry: one `HostRuntime` object per module (see `base.py`), collected here.

The runner's validation, job planning and reports, the worker's imports and the CLI's help all read
these objects. Adding a runtime means adding one module with a `RUNTIME` object and naming it below
(or, for a runtime that lives elsewhere, calling `register`).
"""

from __future__ import annotations

from .base import HostRuntime, ProcessWorker
from .executorch import RUNTIME as _EXECUTORCH
from .litert import RUNTIME as _LITERT
from .litert_gpu_emulated import RUNTIME as _LITERT_GPU_EMULATED
from .onnxruntime import RUNTIME as _ONNXRUNTIME
from .onnxruntime_cuda import RUNTIME as _ONNXRUNTIME_CUDA
from .pytorch import RUNTIME as _PYTORCH

RUNTIMES: dict[str, HostRuntime] = {}


def register(runtime: HostRuntime) -> HostRuntime:
    if runtime.name in RUNTIMES and RUNTIMES[runtime.name] is not runtime:
        raise ValueError(f"a runtime named {runtime.name!r} is already registered")
    RUNTIMES[runtime.name] = runtime
    return runtime


for _rt in (_ONNXRUNTIME, _LITERT, _EXECUTORCH, _PYTORCH, _LITERT_GPU_EMULATED, _ONNXRUNTIME_CUDA):
    register(_rt)


def get_runtime(name: str) -> HostRuntime:
    try:
        return RUNTIMES[name]
    except KeyError:
        raise ValueError(f"unknown runtime {name!r}; valid: {list(RUNTIMES)}") from None


def default_runtimes() -> tuple[str, ...]:
    return tuple(name for name, rt in RUNTIMES.items() if rt.default)


__all__ = ["HostRuntime", "ProcessWorker", "RUNTIMES", "register", "get_runtime", "default_runtimes"]
