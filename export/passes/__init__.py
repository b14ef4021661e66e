"""Rewrite passes that make models delegate-friendly before conversion; one module per pass.

Two kinds, applied in this explicit order:
- module passes rewrite the `nn.Module` in place (they need the model's structure):
  fold_channel_permutation, merge_branch_convs;
- graph passes rewrite the ATen graph of `torch.export.export(model).module()` in place:
  split_to_slice, mean_keepdim, decompose_hardswish, fold_batchnorm.
Each pass module has NAME, BEFORE (`before -> after`), `run(obj) -> int` (sites rewritten; a second
run rewrites 0) and is switchable by name. `prepare()` runs a selection and reports what each did.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import fx, nn

from . import decompose_hardswish, fold_batchnorm, fold_channel_permutation, mean_keepdim, merge_branch_convs, split_to_slice

MODULE_PASSES: list[ModuleType] = [fold_channel_permutation, merge_branch_convs]
GRAPH_PASSES: list[ModuleType] = [split_to_slice, mean_keepdim, decompose_hardswish, fold_batchnorm]
ALL_PASSES = {p.NAME: p for p in MODULE_PASSES + GRAPH_PASSES}
# merge_branch_convs stays off unless the benchmark shows it is not slower (bench_passes.py)
DEFAULT_PASSES: tuple[str, ...] = ("fold_channel_permutation", "split_to_slice", "mean_keepdim", "decompose_hardswish", "fold_batchnorm")


@dataclass
class PassResult:
    name: str
    rewrites: int
    before: str


def validate(names: list[str] | tuple[str, ...]) -> list[str]:
    unknown = [n for n in names if n not in ALL_PASSES]
    if unknown:
        raise ValueError(f"unknown pass(es) {unknown}; available: {list(ALL_PASSES)}")
    return list(names)


def prepare(model: nn.Module, example_input: torch.Tensor, passes: list[str] | tuple[str, ...] = DEFAULT_PASSES) -> tuple[fx.GraphModule, list[PassResult]]:
    """Copy `model`, run the selected passes in the fixed order, return the exported graph module."""
    selected = set(validate(passes))
    model = copy.deepcopy(model).eval()
    results = []
    for p in MODULE_PASSES:
        if p.NAME in selected:
            results.append(PassResult(p.NAME, p.run(model), p.BEFORE))
    with torch.no_grad():
        gm = torch.export.export(model, (example_input,)).module()
    for p in GRAPH_PASSES:
        if p.NAME in selected:
            results.append(PassResult(p.NAME, p.run(gm), p.BEFORE))
    return gm, results
