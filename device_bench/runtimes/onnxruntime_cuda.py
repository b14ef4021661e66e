"""ONNX Runtime's CUDA execution provider with exhaustive cuDNN algorithm search: StarNet's GPU
latency protocol (the numbers FreeNet's desktop-GPU claim is compared against). Needs the
`onnxruntime-gpu` build and a CUDA GPU; never measured by default."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .base import HostRuntime


class OnnxRuntimeCuda(HostRuntime):
    name = "onnxruntime-cuda"
    report_name = "onnxruntime"
    package = "onnxruntime-gpu"
    accelerator = "cuda"
    format = "onnx"
    format_accelerator = "cuda"
    delegate = "CUDAExecutionProvider (cudnn_conv_algo_search=EXHAUSTIVE)"
    default = False
    preimport = ("onnxruntime",)

    def version(self) -> str:
        for dist in ("onnxruntime-gpu", "onnxruntime"):  # the GPU build may be installed under either name
            try:
                return version(dist)
            except PackageNotFoundError:
                continue
        return "unknown"

    def check_available(self) -> None:
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RuntimeError("onnxruntime-cuda needs the onnxruntime-gpu build and a CUDA GPU; this machine's "
                               f"onnxruntime offers {', '.join(ort.get_available_providers())}")


RUNTIME = OnnxRuntimeCuda()
