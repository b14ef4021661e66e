"""One op alone on every host runtime, side by side: is a model's slowdown the runtime's kernel?

    python benchmarks/bench_ops.py                         # depthwise 7x7 and 3x3 on 32x56x56
    python benchmarks/bench_ops.py --op dw7 --channels 32 --size 56 --processes 5 --runs 50

The op (a depthwise conv kxk with bias, as in StarNet's blocks; `anomaly.py` names it from a
per-op profile) is built once in PyTorch and given to every runtime the way the host runner sees
a model: ONNX (ONNX Runtime CPU, written with onnx.helper: exactly one Conv node), .tflite through
litert-torch with NHWC input/output (LiteRT's built-in kernel, and its default XNNPACK delegate),
.pte lowered to ExecuTorch's XNNPACK, and eager PyTorch. Each runtime is timed in its own fresh
worker process (no cross-runtime interference), one thread, pinned to one core where allowed;
`--processes` repetitions of all runtimes in a shuffled order, and the intervals of the ratio to
ONNX Runtime come from `stats.compare_runs` (hierarchical over processes), so the table says
how reproducible each number is. Op lists of the artifacts are printed: a TRANSPOSE around the op
would be measured too.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RUNTIMES = ["onnxruntime", "litert-builtin", "litert-xnnpack", "executorch-xnnpack", "pytorch"]
OPS = {"dw7": 7, "dw3": 3}


def _module(channels: int, k: int):
    import torch

    torch.manual_seed(0)
    return torch.nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels).eval()


def build(op: str, channels: int, size: int, out: Path) -> dict[str, str]:
    """Artifacts of one op for every runtime; returns runtime -> file (pytorch: the state dict)."""
    import onnx
    import torch
    from onnx import TensorProto, helper, numpy_helper

    k = OPS[op]
    m = _module(channels, k)
    x = torch.randn(1, channels, size, size)
    files: dict[str, str] = {}
    torch.save(m.state_dict(), out / f"{op}.pt")
    files["pytorch"] = str(out / f"{op}.pt")

    w, b = (numpy_helper.from_array(t.detach().numpy(), n) for t, n in ((m.weight, "w"), (m.bias, "b")))
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=channels, pads=[k // 2] * 4, kernel_shape=[k, k])
    shape = [1, channels, size, size]
    g = helper.make_graph([node], op, [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [w, b])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, out / f"{op}.onnx")
    files["onnxruntime"] = str(out / f"{op}.onnx")

    import litert_torch

    nhwc = litert_torch.to_channel_last_io(m, args=[0], outputs=[0])
    litert_torch.convert(nhwc, (x.permute(0, 2, 3, 1).contiguous(),)).export(str(out / f"{op}.tflite"))
    files["litert-builtin"] = files["litert-xnnpack"] = str(out / f"{op}.tflite")

    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    prog = to_edge_transform_and_lower(torch.export.export(m, (x,)), partitioner=[XnnpackPartitioner()]).to_executorch()
    (out / f"{op}.pte").write_bytes(prog.buffer)
    files["executorch-xnnpack"] = str(out / f"{op}.pte")
    return files


def tflite_ops(path: str) -> list[str]:
    from ai_edge_litert.tools import flatbuffer_utils as fb

    model = fb.read_model(path)
    return [fb.opcode_to_name(model, op.opcodeIndex) for op in model.subgraphs[0].operators]


def worker(runtime: str, path: str, op: str, channels: int, size: int, warmup: int, runs: int) -> list[float]:
    """Runs in its own process: open the artifact in one runtime, time `runs` calls (ms)."""
    try:
        os.sched_setaffinity(0, [max(os.sched_getaffinity(0))])
    except (AttributeError, OSError):
        pass
    x = np.random.default_rng(0).standard_normal((1, channels, size, size)).astype(np.float32)
    if runtime == "onnxruntime":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        fn = lambda: sess.run(None, {"x": x})[0]  # noqa: E731
    elif runtime.startswith("litert"):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kind = OpResolverType.AUTO if runtime == "litert-xnnpack" else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        it = Interpreter(model_path=path, num_threads=1, experimental_op_resolver_type=kind)
        it.allocate_tensors()
        i, o = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
        xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))

        def fn():
            it.set_tensor(i, xh)
            it.invoke()
            return it.get_tensor(o)
    elif runtime == "executorch-xnnpack":
        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        portable_lib._unsafe_reset_threadpool(1)
        method = Runtime.get().load_program(path).load_method("forward")
        t = torch.from_numpy(x)
        fn = lambda: method.execute([t])[0]  # noqa: E731
    elif runtime == "pytorch":
        import torch

        torch.set_num_threads(1)
        m = _module(channels, OPS[op])
        m.load_state_dict(torch.load(path))
        t = torch.from_numpy(x)

        def fn():
            with torch.inference_mode():
                return m(t)
    else:
        raise ValueError(f"unknown runtime {runtime}")
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--op", default="dw7,dw3", help=f"comma list of {list(OPS)}")
    ap.add_argument("--channels", type=int, default=32)
    ap.add_argument("--size", type=int, default=56)
    ap.add_argument("--processes", type=int, default=3, help="fresh processes per runtime (independent repetitions)")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--runtimes", default=",".join(RUNTIMES))
    ap.add_argument("--json", type=Path, help="also write the raw samples here")
    ap.add_argument("--worker", nargs=2, metavar=("RUNTIME", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    ops = [o for o in args.op.split(",") if o]
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], ops[0], args.channels, args.size, args.warmup, args.runs)))
        return

    from device_bench.stats import compare_runs

    runtimes = [r for r in args.runtimes.split(",") if r]
    rng = random.Random(0)
    results: dict[str, dict[str, list[list[float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for op in ops:
            files = build(op, args.channels, args.size, Path(tmp))
            print(f"{op}: tflite ops {tflite_ops(files['litert-xnnpack'])}", flush=True)
            results[op] = {rt: [] for rt in runtimes}
            for _ in range(args.processes):
                order = list(runtimes)
                rng.shuffle(order)  # a different runtime order per repetition: drift hits all alike
                for rt in order:
                    cmd = [sys.executable, __file__, "--worker", rt, files[rt], "--op", op, "--channels", str(args.channels),
                           "--size", str(args.size), "--warmup", str(args.warmup), "--runs", str(args.runs)]
                    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
                    if p.returncode:
                        raise RuntimeError(f"{op} on {rt} failed: {p.stderr.strip().splitlines()[-1:]}")
                    results[op][rt].append(json.loads(p.stdout.strip().splitlines()[-1]))
    print(f"\none op alone, batch 1, 1 thread, {args.channels}x{args.size}x{args.size}; {args.processes} fresh processes x "
          f"{args.runs} runs per runtime; ms = median of all samples; x ORT = ratio of medians [95 % hierarchical interval]\n")
    print("| op | " + " | ".join(runtimes) + " |")
    print("|---|" + "---|" * len(runtimes))
    for op, by_rt in results.items():
        cells = []
        for rt in runtimes:
            med = float(np.median(np.concatenate(by_rt[rt])))
            if rt == "onnxruntime" or "onnxruntime" not in by_rt:
                cells.append(f"{med:.3f} ms")
            else:
                c = compare_runs(by_rt[rt], by_rt["onnxruntime"], paired=True)
                cells.append(f"{med:.3f} ms ({c.ratio:.1f}x ORT [{c.low:.1f}-{c.high:.1f}])")
        print(f"| depthwise Conv {OPS[op]}x{OPS[op]} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    main()
