"""One module per export format, all with the same signature (see `base.py`).

The table below is data: the orchestrator (export/api.py) looks formats up here and imports the
module lazily, so a missing converter only fails its own format.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from .base import BackendSpec

BACKENDS: dict[str, BackendSpec] = {
    "onnx": BackendSpec(
        "onnx",
        module="export.backends.onnx",
        targets=("onnxruntime-cpu", "onnxruntime-nnapi", "onnxruntime-coreml"),
        precisions=("fp32", "fp16", "int8"),
        requires=("onnx", "onnxruntime", "onnxscript"),
    ),
    "coreml": BackendSpec(
        "coreml",
        module="export.backends.coreml",
        targets=("coreml-all", "coreml-cpu-gpu"),
        precisions=("fp32", "fp16", "int8"),
        requires=("coremltools",),
    ),
    "tflite": BackendSpec(
        "tflite",
        module="export.backends.tflite",
        targets=("litert-gpu", "litert-cpu"),
        precisions=("fp32", "fp16", "int8"),
        requires=("litert_torch", "ai_edge_litert", "ai_edge_quantizer"),
    ),
    "executorch": BackendSpec(
        "executorch",
        module="export.backends.executorch",
        targets=("executorch-xnnpack", "executorch-vulkan", "executorch-coreml"),
        precisions=("fp32", "fp16", "int8"),
        requires=("executorch",),
    ),
}


def load_backend(fmt: str) -> ModuleType:
    """Import a backend module, or raise with the package to install."""
    spec = BACKENDS[fmt]
    missing = [p for p in spec.requires if importlib.util.find_spec(p) is None]
    if missing:
        raise ImportError(
            f"the {fmt} exporter needs {', '.join(missing)}: install it with "
            f"`pip install {' '.join(spec.pip_names[p] for p in missing)}` (or `pip install -e .`)"
        )
    return importlib.import_module(spec.module)
