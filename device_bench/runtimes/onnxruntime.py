"""ONNX Runtime, CPU execution provider: every .onnx target runs on it here."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from ..anomaly import conv_label
from .base import HostRuntime

if TYPE_CHECKING:
    import numpy as np


def _ort_label(args: dict) -> str:
    """Label a profiled ORT kernel from its input shapes: layout transforms rename and fuse nodes
    (conv2d_2_nchwc, FusedConv), but a Conv's weight [O, I/group, kh, kw] says what it is."""
    op = args.get("op_name", "?")
    shapes = [next(iter(t.values())) for t in args.get("input_type_shape", [])]
    if op in ("Conv", "FusedConv") and len(shapes) >= 2 and len(shapes[1]) == 4:
        w, c_in = shapes[1], shapes[0][1] if len(shapes[0]) > 1 else None
        return conv_label(w[1] == 1 and w[0] == c_in and c_in > 1, w[2:])
    return op


class OnnxRuntimeCpu(HostRuntime):
    name = report_name = "onnxruntime"
    package = "onnxruntime"
    accelerator = "cpu"
    format = "onnx"
    preimport = ("onnxruntime",)
    op_profiler = "ONNX Runtime profiler"

    def profile_ops(self, path: Path, x: np.ndarray, runs: int = 20, *, onnx_file: Path | None = None) -> dict[str, float]:
        """ONNX Runtime's profiler (SessionOptions.enable_profiling): kernel time per node, labelled."""
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.enable_profiling = True
        with tempfile.TemporaryDirectory() as tmp:
            so.profile_file_prefix = str(Path(tmp) / "ort")
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            name = sess.get_inputs()[0].name
            for _ in range(runs):
                sess.run(None, {name: x})
            events = json.loads(Path(sess.end_profiling()).read_text())
        out: dict[str, float] = defaultdict(float)
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                out[_ort_label(e["args"])] += e["dur"] / runs / 1e3
        return dict(out)


RUNTIME = OnnxRuntimeCpu()
