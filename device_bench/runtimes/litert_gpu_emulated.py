"""LiteRT's GPU accelerator on SwiftShader (software Vulkan): proves the GPU code path on a machine
without a GPU. Its timings are emulation (reports say so and never enter speed comparisons)."""

from __future__ import annotations

from .base import HostRuntime


class LiteRtGpuEmulated(HostRuntime):
    name = "litert-gpu-emulated"
    report_name = "litert"
    package = "ai-edge-litert"
    accelerator = "gpu"
    format = "tflite"
    targets = ("litert-gpu",)
    format_accelerator = "gpu"
    delegate = "swiftshader-vulkan"
    emulated = True
    default = False
    # nothing pre-imported: SwiftShader must be set up before LiteRT loads (tflite's GpuSession does)

    def check_available(self) -> None:
        from export.checks.swiftshader import swiftshader_dir

        swiftshader_dir()  # raises with the install command when missing


RUNTIME = LiteRtGpuEmulated()
