"""hardswish(x) -> x * clamp(x + 3, 0, 6) / 6 and hardsigmoid(x) -> clamp(x + 3, 0, 6) / 6.

Exact. ONNX Runtime's NNAPI EP has no HardSwish (MobileNetV3 falls apart into dozens of
partitions); Add, Clip and Mul are taken by every mobile delegate.
"""

from __future__ import annotations

from torch import fx

from ._graph import aten, finish, nodes_calling

NAME = "decompose_hardswish"
KIND = "graph"
BEFORE = "hardswish(x) / hardsigmoid(x) -> mul(x, mul(clamp(add(x, 3), 0, 6), 1/6))"
SWISH = (aten.hardswish.default, aten.hardswish_.default)
SIGMOID = (aten.hardsigmoid.default, aten.hardsigmoid_.default)


def check(gm: fx.GraphModule) -> str | None:
    """Why the pass does not rewrite `gm` (None: it will)."""
    return None if nodes_calling(gm, SWISH + SIGMOID) else "no hardswish / hardsigmoid in the graph"


def run(gm: fx.GraphModule) -> int:
    count = 0
    for node in nodes_calling(gm, SWISH + SIGMOID):
        x = node.args[0]
        with gm.graph.inserting_before(node):
            shifted = gm.graph.call_function(aten.add.Tensor, (x, 3.0))
            clipped = gm.graph.call_function(aten.clamp.default, (shifted, 0.0, 6.0))
            out = gm.graph.call_function(aten.mul.Tensor, (clipped, 1.0 / 6.0))
            if node.target in SWISH:
                out = gm.graph.call_function(aten.mul.Tensor, (x, out))
        for n in (shifted, clipped, out):
            n.meta = dict(node.meta)
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        count += 1
    if count:
        finish(gm)
    return count
