"""Where ONNX Runtime spends its time: per-op-type totals for two bundle artifacts, side by side.

    python benchmarks/profile_onnx.py freenet-data/bundle freenet_s2 starnet_s4 [--runs 50]

Uses onnxruntime's own profiler (SessionOptions.enable_profiling), 1 thread, on the fp32 ONNX
artifacts of a bundle made by `freenet export` / `freenet compare`.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import onnxruntime as ort

from export.manifest import Manifest


def profile(path: Path, x: np.ndarray, runs: int) -> dict[str, float]:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    so.enable_profiling = True
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    for _ in range(runs):
        sess.run(None, {name: x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"] / runs / 1e3  # ms per inference
    return dict(per_op)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("models", nargs="+")
    ap.add_argument("--runs", type=int, default=50)
    args = ap.parse_args()
    m = Manifest.load(args.bundle / "manifest.json")
    results = {}
    for model in args.models:
        a = next(a for a in m.artifacts if a.model == model and a.format == "onnx" and a.precision == "fp32" and a.status == "ok")
        x = np.fromfile(args.bundle / a.reference.input_file, dtype="<f4").reshape(a.inputs[0].shape)
        results[model] = profile(args.bundle / a.file, x, args.runs)
    ops = sorted({o for r in results.values() for o in r}, key=lambda o: -max(r.get(o, 0) for r in results.values()))
    print(f"ms per inference by op type (onnxruntime {ort.__version__}, CPU, 1 thread, {args.runs} runs)")
    print(f"{'op':24s}" + "".join(f"{mm:>14s}" for mm in args.models))
    for o in ops:
        print(f"{o:24s}" + "".join(f"{results[mm].get(o, 0):14.2f}" for mm in args.models))
    print(f"{'total':24s}" + "".join(f"{sum(results[mm].values()):14.2f}" for mm in args.models))


if __name__ == "__main__":
    main()
