"""Static op census of a .tflite against the LiteRT GPU delegate's rules and the project's rules.

This module owns the prediction side of TFLite GPU delegation: it lists a model's ops (with
counts) and tensor ranks through the LiteRT interpreter (`_get_ops_details`,
`get_tensor_details`, no delegate applied) and the flatbuffer's op options, then checks them
against `export/data/litert_gpu_ops.json` (the GPU delegate's operators and constraints, taken
from the upstream source named in that file) and the project rules kept there: no GATHER /
GATHER_ND / SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, no tensor of rank > 4, and no TRANSPOSE
inside the backbone (only at the input/output boundary). Every violation is named with its op
index, so a refusal by the real delegate (`export.checks.litert_gpu`) is explained before it
happens; `unexplained_refusals` checks that claim against a real run. TensorFlow's and
ai-edge-litert's `gpu_compatibility` analyzers are deliberately not used: they report
"compatible" for anything (tensorflow/tensorflow#77042).
"""

from __future__ import annotations

import json
from collections import Counter
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

Rule = Literal["unsupported_op", "rank", "tensor_type", "constraint", "project_op", "project_transpose"]
DELEGATE_RULES: frozenset[str] = frozenset({"unsupported_op", "rank", "tensor_type", "constraint"})


@cache
def gpu_rules() -> dict[str, Any]:
    """The GPU delegate's operator table and the project rules (export/data/litert_gpu_ops.json)."""
    text = resources.files("export").joinpath("data/litert_gpu_ops.json").read_text()
    return json.loads(text)


class Violation(BaseModel):
    """One reason the GPU delegate (or a project rule) rejects an op."""

    rule: Rule
    op: str
    op_index: int | None = None
    detail: str

    def __str__(self) -> str:
        where = f"#{self.op_index} " if self.op_index is not None else ""
        return f"{where}{self.op} [{self.rule}]: {self.detail}"


class TfliteCensus(BaseModel):
    """Ops, tensor ranks and rule violations of one .tflite (subgraph 0)."""

    model: str
    num_ops: int
    op_counts: dict[str, int]
    rank_counts: dict[int, int] = Field(description="op-connected tensors per rank")
    max_rank: int
    transposes: dict[str, int] = Field(description="TRANSPOSE ops at the boundary vs inside the backbone")
    violations: list[Violation]
    rules_source: dict[str, Any]

    @property
    def delegate_violations(self) -> list[Violation]:
        """Violations of the GPU delegate's own rules (each one makes GPU-only mode refuse the model)."""
        return [v for v in self.violations if v.rule in DELEGATE_RULES]

    @property
    def project_violations(self) -> list[Violation]:
        return [v for v in self.violations if v.rule not in DELEGATE_RULES]

    @property
    def predicts_gpu_only(self) -> bool:
        """True when no delegate rule is violated, i.e. GPU-only compilation is expected to succeed."""
        return not self.delegate_violations

    @property
    def clean(self) -> bool:
        """True when neither the delegate's rules nor the project's rules are violated."""
        return not self.violations

    def flagged_ops(self) -> set[str]:
        """Op names with a delegate-rule violation."""
        return {v.op for v in self.delegate_violations}

    def summary(self) -> str:
        lines = [f"{self.model}: {self.num_ops} ops, max tensor rank {self.max_rank}"]
        lines.append("  " + ", ".join(f"{op} x{n}" for op, n in sorted(self.op_counts.items())))
        lines += [f"  {v}" for v in self.violations] or ["  no violations"]
        return "\n".join(lines)


def _op_options(model_path: Path) -> dict[int, Any]:
    """Operator index -> flatbuffer operator of subgraph 0, for the few checks that need options."""
    from ai_edge_litert import schema_py_generated as fb

    buf = model_path.read_bytes()
    subgraph = fb.Model.GetRootAs(buf, 0).Subgraphs(0)
    return {i: subgraph.Operators(i) for i in range(subgraph.OperatorsLength())}


def _read_options(operator: Any, options_name: str) -> Any | None:
    from ai_edge_litert import schema_py_generated as fb

    if operator is None or operator.BuiltinOptionsType() != getattr(fb.BuiltinOptions, options_name):
        return None
    table = operator.BuiltinOptions()
    options = getattr(fb, options_name)()
    options.Init(table.Bytes, table.Pos)
    return options


def _tensor_type(details: dict[str, Any]) -> str:
    import numpy as np

    return {
        np.float32: "FLOAT32",
        np.float16: "FLOAT16",
        np.int32: "INT32",
        np.int64: "INT64",
        np.int8: "INT8",
        np.uint8: "UINT8",
        np.int16: "INT16",
        np.bool_: "BOOL",
    }.get(details["dtype"], str(details["dtype"]))


def census(model_path: str | Path, *, allow_quant_ops: bool = False) -> TfliteCensus:
    """Census of `model_path` checked against the GPU delegate's table and the project rules.

    `allow_quant_ops`: judge as the delegate does for quantized models (int8/uint8 runtime
    tensors, QUANTIZE/DEQUANTIZE accepted).
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no such .tflite file: {model_path}")
    # No default delegate: the node list must be the model's own operators, not XNNPACK partitions.
    interpreter = Interpreter(
        model_path=str(model_path),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    ops = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    graph_inputs = {d["index"] for d in interpreter.get_input_details()}
    fb_ops = _op_options(model_path)

    produced = {int(t) for op in ops for t in op["outputs"]}

    def is_const(index: int) -> bool:
        # Weights, biases, axes, shapes: tensors no op produces and the caller does not feed.
        return index not in produced and index not in graph_inputs

    def rank(index: int) -> int:
        return len(tensors[index]["shape"]) if index in tensors else 0

    rules = gpu_rules()
    table: dict[str, Any] = rules["ops"]
    tensor_rules = rules["tensor_rules"]
    allowed_types = set(tensor_rules["runtime_types"]) | ({"INT8", "UINT8"} if allow_quant_ops else set())
    violations: list[Violation] = []

    def flag(rule: Rule, op: dict[str, Any], detail: str) -> None:
        violations.append(Violation(rule=rule, op=op["op_name"], op_index=op["index"], detail=detail))

    rank_counts: Counter[int] = Counter()
    seen_tensors: set[int] = set()
    for op in ops:
        name = op["op_name"]
        ins = [int(t) for t in op["inputs"]]
        outs = [int(t) for t in op["outputs"]]
        present = [t for t in ins if t >= 0]  # -1 marks an omitted optional input
        for t in present + outs:
            if t not in seen_tensors:
                seen_tensors.add(t)
                rank_counts[rank(t)] += 1

        high = sorted({rank(t) for t in present + outs if rank(t) > tensor_rules["max_rank"]})
        if high:
            flag("rank", op, f"tensor of rank {high[-1]} (max {tensor_rules['max_rank']}): "
                 f"{tensor_rules['max_rank_message']}")

        entry = table.get(name)
        if entry is None:
            flag("unsupported_op", op, "no GPU delegate parser: Operation is not supported.")
            continue

        extra_types: set[str] = set()
        for c in entry["constraints"]:
            if c["kind"] == "extra_runtime_types":
                extra_types |= set(c["types"])
        runtime_ins = [t for t in present if not is_const(t)]
        bad_types = sorted(
            {_tensor_type(tensors[t]) for t in runtime_ins + outs if t in tensors}
            - allowed_types
            - extra_types
        )
        if bad_types:
            flag("tensor_type", op, f"runtime tensor type {', '.join(bad_types)}: "
                 f"{tensor_rules['runtime_types_message']}")

        for c in entry["constraints"]:
            message = _check_constraint(c, ins, present, outs, is_const, rank, tensors, fb_ops.get(op["index"]),
                                        allow_quant_ops)
            if message:
                flag("constraint", op, message)

    for op in ops:
        reason = rules["project_rules"]["forbidden_ops"].get(op["op_name"])
        if reason:
            flag("project_op", op, f"forbidden by the project: {reason}")
    transposes = _transpose_positions(ops, rules["project_rules"]["transpose"])
    for index in transposes["inside"]:
        op = ops[index]
        flag("project_transpose", op, "TRANSPOSE inside the backbone (backbone ops upstream and downstream); "
             "only input/output boundary transposes are allowed")

    violations.sort(key=lambda v: (v.op_index if v.op_index is not None else -1, v.rule))
    return TfliteCensus(
        model=str(model_path),
        num_ops=len(ops),
        op_counts=dict(sorted(Counter(op["op_name"] for op in ops).items())),
        rank_counts=dict(sorted(rank_counts.items())),
        max_rank=max(rank_counts, default=0),
        transposes={"boundary": len(transposes["boundary"]), "inside": len(transposes["inside"])},
        violations=violations,
        rules_source=rules["source"],
    )


def _check_constraint(
    c: dict[str, Any],
    ins: list[int],
    present: list[int],
    outs: list[int],
    is_const: Any,
    rank: Any,
    tensors: dict[int, dict[str, Any]],
    fb_op: Any,
    allow_quant_ops: bool,
) -> str | None:
    """Return the violated constraint's message, or None when `c` holds."""
    kind = c["kind"]
    if kind == "io":
        runtime = sum(1 for t in present if not is_const(t))
        const = sum(1 for t in present if is_const(t))
        if "runtime_const" in c and [runtime, const] not in c["runtime_const"]:
            return f"{c['message']} (has {runtime} runtime, {const} constant inputs)"
        if "runtime" in c and runtime not in c["runtime"]:
            return f"{c['message']} (has {runtime} runtime inputs)"
        if "outputs" in c and len(outs) != c["outputs"]:
            return f"{c['message']} (has {len(outs)} outputs)"
    elif kind == "num_inputs":
        if len(present) not in c["count"]:
            return f"{c['message']} (has {len(present)})"
    elif kind == "const_input":
        if c["input"] >= len(ins) or ins[c["input"]] < 0:
            return f"{c['message']} (input {c['input']} missing)"
        t = ins[c["input"]]
        if allow_quant_ops and c.get("dtype") == "FLOAT16":
            return None  # a quantized-mode delegate accepts any DEQUANTIZE
        if not is_const(t) or (c.get("dtype") and _tensor_type(tensors[t]) != c["dtype"]):
            return f"{c['message']} (input {c['input']} is {'constant' if is_const(t) else 'runtime'} " \
                   f"{_tensor_type(tensors[t])})"
    elif kind == "input_rank":
        if c["input"] < len(ins) and ins[c["input"]] >= 0:
            t = ins[c["input"]]
            if rank(t) not in c["allowed"]:
                return f"{c['message']} (input {c['input']} has rank {rank(t)})"
            if c.get("dtype") and _tensor_type(tensors[t]) != c["dtype"]:
                return f"{c['message']} (input {c['input']} is {_tensor_type(tensors[t])})"
    elif kind == "options_zero":
        options = _read_options(fb_op, c["options"])
        if options is not None:
            set_fields = [f for f in c["fields"] if getattr(options, f)()]
            if set_fields:
                return f"{c['message']} (set: {', '.join(set_fields)})"
    elif kind == "option_equals":
        options = _read_options(fb_op, c["options"])
        if options is not None and getattr(options, c["field"])() != c["value"]:
            return f"{c['message']} ({c['field']} = {getattr(options, c['field'])()})"
    elif kind == "quantized_only":
        if not allow_quant_ops:
            return c["message"]
    elif kind == "extra_runtime_types":
        return None
    else:
        raise ValueError(f"unknown constraint kind {kind!r} in litert_gpu_ops.json")
    return None


def _transpose_positions(ops: list[dict[str, Any]], rule: dict[str, Any]) -> dict[str, list[int]]:
    """Split TRANSPOSE ops into boundary ones and ones with backbone ops both upstream and downstream."""
    producer = {int(t): op["index"] for op in ops for t in op["outputs"]}
    consumers: dict[int, list[int]] = {}
    for op in ops:
        for t in op["inputs"]:
            consumers.setdefault(int(t), []).append(op["index"])
    backbone = set(rule["backbone_ops"])
    by_index = {op["index"]: op for op in ops}

    def reaches_backbone(start: int, upstream: bool) -> bool:
        stack, seen = [start], {start}
        while stack:
            current = by_index[stack.pop()]
            if current["index"] != start and current["op_name"] in backbone:
                return True
            if upstream:
                nxt = [producer[int(t)] for t in current["inputs"] if int(t) in producer]
            else:
                nxt = [c for t in current["outputs"] for c in consumers.get(int(t), [])]
            for n in nxt:
                if n not in seen:
                    seen.add(n)
                    stack.append(n)
        return False

    result: dict[str, list[int]] = {"boundary": [], "inside": []}
    for op in ops:
        if op["op_name"] != rule["op"]:
            continue
        inside = reaches_backbone(op["index"], upstream=True) and reaches_backbone(op["index"], upstream=False)
        result["inside" if inside else "boundary"].append(op["index"])
    return result


def unexplained_refusals(result_unsupported: list[Any], the_census: TfliteCensus) -> list[str]:
    """Ops the real GPU delegate refused that the census did not flag (empty when it explained all).

    `result_unsupported`: `LiteRtGpuResult.unsupported` (objects with `.op` and `.reason`).
    """
    flagged = the_census.flagged_ops()
    return [f"{u.op}: {u.reason}" for u in result_unsupported if u.op not in flagged]


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Census a .tflite against the LiteRT GPU delegate's rules.")
    parser.add_argument("model", type=Path)
    parser.add_argument("--json", action="store_true", help="print the census as JSON")
    args = parser.parse_args(argv)
    result = census(args.model)
    print(result.model_dump_json(indent=2) if args.json else result.summary())
    return 0 if result.clean else 1


if __name__ == "__main__":
    raise SystemExit(_main())
