"""The ExecuTorch pip runtime with XNNPACK (the one backend it registers)."""

from __future__ import annotations

from .base import HostRuntime


class ExecuTorchXnnpack(HostRuntime):
    name = report_name = "executorch"
    package = "executorch"
    accelerator = "xnnpack"
    format = "executorch"
    preimport = ("torch", "executorch.runtime")


RUNTIME = ExecuTorchXnnpack()
