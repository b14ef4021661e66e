"""ONNX Runtime, CPU execution provider: every .onnx target runs on it here."""

from __future__ import annotations

from .base import HostRuntime


class OnnxRuntimeCpu(HostRuntime):
    name = report_name = "onnxruntime"
    package = "onnxruntime"
    accelerator = "cpu"
    format = "onnx"
    preimport = ("onnxruntime",)


RUNTIME = OnnxRuntimeCpu()
