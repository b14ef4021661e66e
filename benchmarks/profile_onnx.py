"""Where ONNX Runtime spends its time: per-op totals for two bundle artifacts, side by side.

    python benchmarks/profile_onnx.py freenet-data/bundle freenet_s2 starnet_s4 [--runs 50]

Uses the ONNX Runtime host runtime's per-op profiler (`profile_ops`: onnxruntime's own profiler,
1 thread, ops labelled as the anomaly report labels them, e.g. "depthwise Conv 7x7") on the fp32
ONNX artifacts of a bundle made by `freenet export` / `freenet compare`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnxruntime as ort

from device_bench.runtimes.onnxruntime import RUNTIME
from export.manifest import Manifest


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
        results[model] = RUNTIME.profile_ops(args.bundle / a.file, x, args.runs)
    ops = sorted({o for r in results.values() for o in r}, key=lambda o: -max(r.get(o, 0) for r in results.values()))
    print(f"ms per inference by op (onnxruntime {ort.__version__}, CPU, 1 thread, {args.runs} runs)")
    print(f"{'op':24s}" + "".join(f"{mm:>14s}" for mm in args.models))
    for o in ops:
        print(f"{o:24s}" + "".join(f"{results[mm].get(o, 0):14.2f}" for mm in args.models))
    print(f"{'total':24s}" + "".join(f"{sum(results[mm].values()):14.2f}" for mm in args.models))


if __name__ == "__main__":
    main()
