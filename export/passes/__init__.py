"""Rewrite passes that make models delegate-friendly before conversion; one module per pass.

Every pass module satisfies one contract, `RewritePass` below: NAME, KIND, BEFORE (`before ->
after`), `check(obj) -> str | None` (why it does not match, None when it will) and `run(obj) -> int`
(sites rewritten; a second run rewrites 0). Two kinds, applied in this explicit order:
- module passes rewrite the `nn.Module` in place (they need the model's structure):
  fold_channel_permutation (the model's own `FreeNet.to_contiguous_layout()`), merge_branch_convs;
- graph passes rewrite the ATen graph of `torch.export.export(model).module()` in place:
  split_to_slice, mean_keepdim, decompose_hardswish, decompose_gelu_tanh, decompose_group_norm,
  fold_batchnorm.
`prepare()` runs a selection and reports what each did, and why a pass that rewrote nothing did not
match.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import torch
from torch import fx, nn

from . import decompose_gelu_tanh, decompose_group_norm, decompose_hardswish, fold_batchnorm, fold_channel_permutation, mean_keepdim, merge_branch_convs, split_to_slice



@runtime_checkable
class RewritePass(Protocol):
    """The contract of a rewrite pass (each pass module satisfies it)."""

    NAME: str
    KIND: Literal["module", "graph"]  # rewrites an nn.Module, or the exported ATen GraphModule
    BEFORE: str  # `before -> after`

    def check(self, obj: nn.Module | fx.GraphModule) -> str | None:
        """Why the pass does not rewrite `obj`; None when it will."""

    def run(self, obj: nn.Module | fx.GraphModule) -> int:
        """Rewrite `obj` in place; the number of sites rewritten (0 on a second run)."""


MODULE_PASSES: list[RewritePass] = [fold_channel_permutation, merge_branch_convs]
GRAPH_PASSES: list[RewritePass] = [split_to_slice, mean_keepdim, decompose_hardswish, decompose_gelu_tanh, decompose_group_norm, fold_batchnorm]
ALL_PASSES = {p.NAME: p for p in MODULE_PASSES + GRAPH_PASSES}
# merge_branch_convs stays off unless the benchmark shows it is not slower (bench_passes.py);
# decompose_gelu_tanh and decompose_group_norm are ExecuTorch workarounds that the ExecuTorch backend
# applies itself, per target (other formats run these ops as one op, correctly)
DEFAULT_PASSES: tuple[str, ...] = ("fold_channel_permutation", "split_to_slice", "mean_keepdim", "decompose_hardswish", "fold_batchnorm")


@dataclass
class PassResult:
    name: str
    rewrites: int
    before: str
    reason: str | None = None  # why it did not match, when it rewrote nothing


def validate(names: list[str] | tuple[str, ...]) -> list[str]:
    unknown = [n for n in names if n not in ALL_PASSES]
    if unknown:
        raise ValueError(f"unknown pass(es) {unknown}; available: {list(ALL_PASSES)}")
    return list(names)


def prepare(model: nn.Module, example_input: torch.Tensor, passes: list[str] | tuple[str, ...] = DEFAULT_PASSES) -> tuple[fx.GraphModule, list[PassResult]]:
    """Copy `model`, run the selected passes in the fixed order, return the exported graph module."""
    selected = set(validate(passes))
    model = copy.deepcopy(model).eval()
    results = [_apply(p, model) for p in MODULE_PASSES if p.NAME in selected]
    with torch.no_grad():
        gm = torch.export.export(model, (example_input,)).module()
    # ExportedProgram.module() builds a new GraphModule whose `training` flag is nn.Module's default,
    # True, and replaces its train()/eval() with methods that raise: the graph is the eval one, but
    # every converter that reads the flag (litert-torch: "converted in training mode", torch.onnx:
    # "Exporting a model while it is in training mode") took it for a training model. Set the flag.
    for m in gm.modules():
        m.training = False
    results += [_apply(p, gm) for p in GRAPH_PASSES if p.NAME in selected]
    return gm, results


def _apply(p: RewritePass, obj) -> PassResult:
    n = p.run(obj)
    # a run that rewrote nothing left `obj` as it was, so check() explains exactly that graph
    return PassResult(p.NAME, n, p.BEFORE, p.check(obj) if n == 0 else None)
