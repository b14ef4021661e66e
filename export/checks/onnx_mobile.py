"""ONNX Runtime's mobile usability checker, run on an .onnx and parsed into per-EP results.

This module owns the ONNX side of the mobile-delegate checks: it runs
`python -m onnxruntime.tools.check_onnx_model_mobile_usability MODEL` in a subprocess (the tool
prints its analysis through `logging`, which is its only stable interface) and turns each
execution-provider section (NNAPI, CoreML NeuralNetwork, CoreML MLProgram) into supported nodes
out of total, the number of partitions, the unsupported op types and the tool's verdict.
A model is fully covered by an EP when every node is supported in one partition.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

Suitability = Literal["YES", "MAYBE", "NO"]
EP_NAMES = ("NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram")


class EpUsability(BaseModel):
    """One execution provider's section of the checker's report (shapes as given, not fixed)."""

    ep: str
    supported_nodes: int
    total_nodes: int
    partitions: int
    partition_sizes: list[int] = Field(default_factory=list)
    unsupported_ops: list[str] = Field(default_factory=list, description="domain:op, e.g. ai.onnx:Erf")
    nodes_unsupported_due_to_op: int = 0
    nodes_unsupported_due_to_dynamic_shape: int = 0
    nodes_unsupported_due_to_rank: int = 0
    ops_with_unsupported_rank: list[str] = Field(default_factory=list)
    caveats: list[str] = Field(default_factory=list, description="conditions the tool did not check")
    suitability: Suitability
    fixed_shape_suitability: Suitability | None = None

    @property
    def fully_supported(self) -> bool:
        """Every node runs on this EP, in a single partition."""
        return self.total_nodes > 0 and self.supported_nodes == self.total_nodes and self.partitions == 1

    @property
    def unsupported_op_types(self) -> set[str]:
        """Unsupported op types without their domain (e.g. {"Erf"})."""
        return {op.rsplit(":", 1)[-1] for op in self.unsupported_ops + self.ops_with_unsupported_rank}


class OnnxMobileReport(BaseModel):
    """The checker's verdict for one model, per execution provider."""

    model: str
    eps: dict[str, EpUsability]
    recommends_trying_eps: bool

    @property
    def nnapi(self) -> EpUsability:
        return self.eps["NNAPI"]

    @property
    def coreml_mlprogram(self) -> EpUsability:
        return self.eps["CoreML MLProgram"]

    @property
    def coreml_neuralnetwork(self) -> EpUsability:
        return self.eps["CoreML NeuralNetwork"]


_CHECKING = re.compile(r"^Checking (?P<ep>.+)$")
_TOTALS = re.compile(r"^(\d+) partitions with a total of (\d+)/(\d+) nodes can be handled by the (.+) EP\.$")
_SIZES = re.compile(r"^Partition sizes: \[(.*)\]$")
_BY_OP = re.compile(r"^Unsupported nodes due to operator=(\d+)$")
_OPS = re.compile(r"^Unsupported ops: (.*)$")
_DYNAMIC = re.compile(r"^Unsupported nodes due to input having a dynamic shape=(\d+)$")
_BY_RANK = re.compile(r"^Unsupported nodes due to rank of input data=(\d+)$")
_RANK_OPS = re.compile(r"^Ops with unsupported rank: (.*)$")
_VERDICT = re.compile(r"^Model should perform well with (?P<ep>.+) as is: (?P<v>YES|MAYBE|NO)$")
_FIXED_VERDICT = re.compile(
    r"^Model should perform well with (?P<ep>.+) if modified to have fixed input shapes: (?P<v>YES|MAYBE|NO)$"
)
_CAVEATS = "Caveats that have not been checked"
_FIXED_BLOCK = "Partition information if the model was updated to make the shapes fixed:"
_RECOMMEND = "As NNAPI or CoreML may provide benefits with this model"


def _split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_usability_log(text: str, model: str = "") -> OnnxMobileReport:
    """Parse the checker's log (its INFO lines, "INFO:  " prefixes optional) into per-EP results."""
    sections: dict[str, dict] = {}
    current: dict | None = None
    in_caveats = in_fixed = False
    for raw in text.splitlines():
        prefixed = raw.startswith("INFO:")
        line = raw.split(":", 1)[1].strip() if prefixed else raw.strip()
        if not line:
            continue
        if in_caveats and not prefixed:
            # The caveat list continues on un-prefixed, indented lines ("ai.onnx:Conv:Only 2D ...").
            if current is not None and not in_fixed:
                current["caveats"].append(line)
            continue
        in_caveats = False
        if match := _CHECKING.match(line):
            if match["ep"] in EP_NAMES:
                current = sections.setdefault(match["ep"], {"ep": match["ep"], "caveats": []})
                in_fixed = False
            continue
        if current is None:
            continue
        if line == _FIXED_BLOCK:
            in_fixed = True  # a second, hypothetical analysis follows; keep the as-is numbers
            continue
        if line.startswith(_CAVEATS):
            in_caveats = True
            continue
        if match := _FIXED_VERDICT.match(line):
            current["fixed_shape_suitability"] = match["v"]
            continue
        if match := _VERDICT.match(line):
            current["suitability"] = match["v"]
            continue
        if in_fixed:
            continue
        if match := _TOTALS.match(line):
            current.update(partitions=int(match[1]), supported_nodes=int(match[2]), total_nodes=int(match[3]))
        elif match := _SIZES.match(line):
            current["partition_sizes"] = [int(s) for s in _split_list(match[1])]
        elif match := _BY_OP.match(line):
            current["nodes_unsupported_due_to_op"] = int(match[1])
        elif match := _OPS.match(line):
            current["unsupported_ops"] = _split_list(match[1])
        elif match := _DYNAMIC.match(line):
            current["nodes_unsupported_due_to_dynamic_shape"] = int(match[1])
        elif match := _BY_RANK.match(line):
            current["nodes_unsupported_due_to_rank"] = int(match[1])
        elif match := _RANK_OPS.match(line):
            current["ops_with_unsupported_rank"] = _split_list(match[1])

    missing = [ep for ep in EP_NAMES if ep not in sections or "suitability" not in sections[ep]
               or "total_nodes" not in sections[ep]]
    if missing:
        raise ValueError(
            f"could not find the {', '.join(missing)} section(s) in the mobile usability checker's output "
            f"(has onnxruntime's log format changed?):\n{text[-2000:]}"
        )
    return OnnxMobileReport(
        model=model,
        eps={ep: EpUsability(**sections[ep]) for ep in EP_NAMES},
        recommends_trying_eps=_RECOMMEND in text,
    )


def check_mobile_usability(model_path: str | Path, *, timeout_s: float = 300.0) -> OnnxMobileReport:
    """Run onnxruntime's mobile usability checker on `model_path` and parse its NNAPI/CoreML sections."""
    model_path = Path(model_path)
    if not model_path.is_file():
        raise FileNotFoundError(f"no such .onnx file: {model_path}")
    proc = subprocess.run(
        [sys.executable, "-m", "onnxruntime.tools.check_onnx_model_mobile_usability", str(model_path)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    # The tool logs to stderr; stdout is normally empty but is kept in case that changes.
    text = proc.stderr + "\n" + proc.stdout
    if proc.returncode != 0:
        raise RuntimeError(
            f"onnxruntime's mobile usability checker failed on {model_path} (exit {proc.returncode}):\n"
            f"{text[-2000:]}"
        )
    return parse_usability_log(text, model=str(model_path))


def _main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="NNAPI / Core ML coverage of an .onnx (onnxruntime checker).")
    parser.add_argument("model", type=Path)
    args = parser.parse_args(argv)
    report = check_mobile_usability(args.model)
    print(report.model_dump_json(indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
