"""The LiteRT interpreter with its default XNNPACK delegate."""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..anomaly import conv_label
from .base import HostRuntime


def _tflite_label(model, op) -> str:
    from ai_edge_litert.tools import flatbuffer_utils as fb

    name = fb.opcode_to_name(model, op.opcodeIndex) or "?"
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = model.subgraphs[0].tensors[op.inputs[1]].shape  # OHWI / 1HWC
        return conv_label(name == "DEPTHWISE_CONV_2D", list(w[1:3]))
    if name == "FULLY_CONNECTED":
        return "Conv 1x1"
    return name.replace("_", " ").title().replace(" ", "")


class LiteRtXnnpack(HostRuntime):
    name = report_name = "litert"
    package = "ai-edge-litert"
    accelerator = "xnnpack"
    format = "tflite"
    format_accelerator = "cpu"
    preimport = ("ai_edge_litert.interpreter",)
    op_profiler = "LiteRT one-op profile, XNNPACK delegate"

    def profile_ops(self, path: Path, x: np.ndarray | None = None, runs: int = 20, *, onnx_file: Path | None = None) -> dict[str, float]:
        """Per-op profile of a .tflite through LiteRT's interpreter and its default XNNPACK delegate:
        every op cut out into a one-op model (its own tensors and weights), timed alone (median of
        `runs`), summed per label. Isolation drops cross-op cache reuse, so the sum exceeds the
        whole-model latency somewhat; the ranking of op types is what is used."""
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_litert.tools import flatbuffer_utils as fb

        model = fb.read_model(str(path))
        sg = model.subgraphs[0]
        ops, inputs, outputs = sg.operators, sg.inputs, sg.outputs
        const = {i for i, t in enumerate(sg.tensors) if model.buffers[t.buffer].data is not None and len(model.buffers[t.buffer].data)}
        out: dict[str, float] = defaultdict(float)
        rng = np.random.default_rng(0)
        try:
            for op in ops:
                sg.operators = [op]
                sg.inputs = [int(i) for i in op.inputs if i >= 0 and int(i) not in const]
                sg.outputs = [int(i) for i in op.outputs]
                it = Interpreter(model_content=bytes(fb.convert_object_to_bytearray(model)), num_threads=1)
                it.allocate_tensors()
                for d in it.get_input_details():
                    it.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(d["dtype"]))
                it.invoke()
                times = []
                for _ in range(runs):
                    t0 = time.perf_counter()
                    it.invoke()
                    times.append(time.perf_counter() - t0)
                out[_tflite_label(model, op)] += float(np.median(times)) * 1e3
        finally:
            sg.operators, sg.inputs, sg.outputs = ops, inputs, outputs
        return dict(out)


RUNTIME = LiteRtXnnpack()
