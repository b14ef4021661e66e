"""gelu(x, approximate="tanh") -> 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x * x * x))).

Exact: the right-hand side is PyTorch's own definition of the tanh approximation. ExecuTorch 1.5's
delegates both mishandle the `approximate` keyword of `aten.gelu`: XNNPACK's GeluVisitor drops it
and runs the erf GELU (FreeNet-S2-Equimo's logits off by 2e-4 of their range instead of 1e-6), and
Vulkan's SqueezeUnsqueezeInputs pass forwards it to `view_copy` ("expected at most 2 argument(s)")
for a gelu on a [1, C, 1, 1] tensor. Mul, add and tanh are taken by both delegates. The erf GELU
(`approximate="none"`) is left alone.
"""

from __future__ import annotations

import math

from torch import fx

from ._graph import aten, finish, nodes_calling, replace_by

NAME = "decompose_gelu_tanh"
KIND = "graph"
BEFORE = "gelu(x, approximate='tanh') -> mul(mul(x, 0.5), add(tanh(mul(add(x, mul(x*x*x, 0.044715)), sqrt(2/pi))), 1))"
GELU = (aten.gelu.default, aten.gelu_.default)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def _sites(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in nodes_calling(gm, GELU) if n.kwargs.get("approximate", "none") == "tanh"]


def check(gm: fx.GraphModule) -> str | None:
    """Why the pass does not rewrite `gm` (None: it will)."""
    if _sites(gm):
        return None
    return "only the erf gelu (approximate='none') in the graph" if nodes_calling(gm, GELU) else "no gelu in the graph"


def run(gm: fx.GraphModule) -> int:
    sites = _sites(gm)
    for node in sites:
        x = node.args[0]

        def build(op) -> fx.Node:
            x3 = op(aten.mul.Tensor, op(aten.mul.Tensor, x, x), x)
            inner = op(aten.add.Tensor, x, op(aten.mul.Tensor, x3, 0.044715))
            t = op(aten.tanh.default, op(aten.mul.Tensor, inner, SQRT_2_OVER_PI))
            return op(aten.mul.Tensor, op(aten.mul.Tensor, x, 0.5), op(aten.add.Tensor, t, 1.0))

        replace_by(gm, node, build)
    if sites:
        finish(gm)
    return len(sites)
