"""Small helpers shared by the graph rewrite passes (ATen graphs of `torch.export(...).module()`)."""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterable

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


def replace_by(gm: fx.GraphModule, node: fx.Node, build: Callable[[Callable[..., fx.Node]], fx.Node],
               drop_meta: tuple[str, ...] = ()) -> None:
    """Replace `node` by the ops `build(op)` emits just before it (`op(target, *args)` adds one
    call_function node, `build` returns the one that takes node's place); every new node carries
    node's meta except the keys in `drop_meta`."""
    new: list[fx.Node] = []

    def op(target, *args) -> fx.Node:
        new.append(gm.graph.call_function(target, args))
        return new[-1]

    with gm.graph.inserting_before(node):
        out = build(op)
    for m in new:
        m.meta = {k: v for k, v in node.meta.items() if k not in drop_meta}
    node.replace_all_uses_with(out)
    gm.graph.erase_node(node)


def finish(gm: fx.GraphModule) -> None:
    gm.graph.eliminate_dead_code()
    gm.graph.lint()
    gm.recompile()


def is_getitem(node: fx.Node) -> bool:
    return node.op == "call_function" and node.target is operator.getitem
