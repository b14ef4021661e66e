"""The ExecuTorch pip runtime with XNNPACK (the one backend it registers)."""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..anomaly import onnx_conv_labels
from .base import HostRuntime


def _xnnpack_label(event: str) -> str:
    """ExecuTorch XNNPACK event names ("Fully Connected (NC, F32) GEMM #3") -> shared labels."""
    name = re.sub(r"\s*#\d+$", "", event)
    if name.startswith("Convolution"):
        return "depthwise Conv" if "DWConv" in name else "Conv"
    if name.startswith("Fully Connected"):
        return "Conv 1x1"  # pointwise convolutions are lowered to GEMMs (NHWC)
    return name.split(" (")[0]


class ExecuTorchXnnpack(HostRuntime):
    name = report_name = "executorch"
    package = "executorch"
    accelerator = "xnnpack"
    format = "executorch"
    preimport = ("torch", "executorch.runtime")
    op_profiler = "ExecuTorch ETDump"

    def profile_ops(self, path: Path, x: np.ndarray, runs: int = 20, *, onnx_file: Path | None = None) -> dict[str, float]:
        """ExecuTorch's ETDump (Program enable_etdump) read with devtools' Inspector: the XNNPACK
        delegate reports one event per XNNPACK operator; medians per event, summed per label.
        The convolutions of `onnx_file` (`anomaly.onnx_conv_labels`, the same model's ONNX graph)
        name the Convolution events in order when their count matches; otherwise they stay
        "Conv"/"depthwise Conv"."""
        import warnings

        import torch
        from executorch.devtools import Inspector
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        conv_labels = onnx_conv_labels(onnx_file) if onnx_file is not None else None
        portable_lib._unsafe_reset_threadpool(1)
        prog = Runtime.get().load_program(str(path), enable_etdump=True)
        method = prog.load_method("forward")
        t = torch.from_numpy(x)
        for _ in range(runs):
            method.execute([t])
        with tempfile.TemporaryDirectory() as tmp:
            etdump = Path(tmp) / "run.etdp"
            prog.write_etdump_result_to_file(str(etdump), str(Path(tmp) / "debug.bin"))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                df = Inspector(etdump_path=str(etdump)).to_dataframe()
        events = [(n, float(np.median(r))) for n, r, d in zip(df["event_name"], df["raw"], df["is_delegated_op"]) if d and len(r)
                  and n != "DELEGATE_CALL"]  # DELEGATE_CALL wraps the whole XNNPACK subgraph
        convs = [i for i, (n, _) in enumerate(events) if n.startswith("Convolution")]
        names = {i: lab for i, lab in zip(convs, conv_labels)} if conv_labels and len(conv_labels) == len(convs) else {}
        out: dict[str, float] = defaultdict(float)
        for i, (n, ms) in enumerate(events):
            out[names.get(i) or _xnnpack_label(n)] += ms
        return dict(out)


RUNTIME = ExecuTorchXnnpack()
