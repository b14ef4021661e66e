"""Small helpers shared by the graph rewrite passes (ATen graphs of `torch.export(...).module()`)."""

from __future__ import annotations

import operator
from collections.abc import Iterable

import torch
from torch import fx

aten = torch.ops.aten


def nodes_calling(gm: fx.GraphModule, targets: Iterable) -> list[fx.Node]:
    targets = set(targets)
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target in targets]


def shape_of(node: fx.Node) -> tuple[int, ...] | None:
    val = node.meta.get("val")
    return tuple(int(s) for s in val.shape) if isinstance(val, torch.Tensor) else None


def getattr_tensor(gm: fx.GraphModule, node: fx.Node | None) -> torch.Tensor | None:
    """The parameter/buffer behind a get_attr node (None for a missing optional argument)."""
    if node is None:
        return None
    if not isinstance(node, fx.Node) or node.op != "get_attr":
        raise TypeError("not a constant tensor")
    obj = gm
    for part in str(node.target).split("."):
        obj = getattr(obj, part)
    return obj


def add_constant(gm: fx.GraphModule, base: str, value: torch.Tensor, before: fx.Node) -> fx.Node:
    """Register `value` as a new parameter on gm and return a get_attr node for it."""
    name, i = base.replace(".", "_"), 0
    while hasattr(gm, f"{name}_{i}"):
        i += 1
    name = f"{name}_{i}"
    gm.register_parameter(name, torch.nn.Parameter(value.detach().clone(), requires_grad=False))
    with gm.graph.inserting_before(before):
        return gm.graph.get_attr(name)


def finish(gm: fx.GraphModule) -> None:
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()


def is_getitem(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target is operator.getitem
