"""The LiteRT interpreter with its default XNNPACK delegate."""

from __future__ import annotations

from .base import HostRuntime


class LiteRtXnnpack(HostRuntime):
    name = report_name = "litert"
    package = "ai-edge-litert"
    accelerator = "xnnpack"
    format = "tflite"
    format_accelerator = "cpu"
    preimport = ("ai_edge_litert.interpreter",)


RUNTIME = LiteRtXnnpack()
