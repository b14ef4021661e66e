"""group_norm(x, G, w, b, eps) -> two-pass mean/variance from per-channel means, then the affine.

Exact in real arithmetic (a group's mean is the mean of its channels' means, every channel having
H*W pixels). Written only with ops XNNPACK takes: `mean.dim` over (2, 3) with keepdim, 4-D views,
sub, mul, add, rsqrt. ExecuTorch 1.5's XNNPACK partitioner takes no GroupNorm, and the portable
`native_group_norm` kernel it falls back to loses precision as the input's mean grows: one
GroupNorm(1, 96) on a 56x56 input is 5e-5 of its range off eager at mean 0, 2.5e-4 at mean 10 and
1.7e-1 at mean 100, against 2e-7 / 1e-6 / 3e-6 for this form on XNNPACK (docs/export-executorch-coreml.md).
Summing per channel first keeps XNNPACK's sums short; subtracting the mean before squaring avoids
the cancellation of E[x^2] - E[x]^2.
"""

from __future__ import annotations

from torch import fx

from ._graph import aten, finish, nodes_calling, replace_by, shape_of

NAME = "decompose_group_norm"
KIND = "graph"
BEFORE = ("group_norm(x, G) -> m = mean_G(mean_hw(x)); d = view(x, [N, G, C/G, HW]) - m; "
          "view(d * rsqrt(mean_G(mean_hw(d*d)) + eps), x.shape) * w + b")
GROUP_NORM = (aten.group_norm.default,)


def _why_not(node: fx.Node) -> str | None:
    shape = shape_of(node.args[0]) if isinstance(node.args[0], fx.Node) else None
    if shape is None or len(shape) != 4:
        return f"group_norm on a {len(shape) if shape else '?'}-D input (only 4-D NCHW is rewritten)"
    return None


def _sites(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in nodes_calling(gm, GROUP_NORM) if _why_not(n) is None]


def check(gm: fx.GraphModule) -> str | None:
    """Why the pass does not rewrite `gm` (None: it will)."""
    nodes = nodes_calling(gm, GROUP_NORM)
    if not nodes:
        return "no group_norm in the graph"
    return None if _sites(gm) else _why_not(nodes[0])


def run(gm: fx.GraphModule) -> int:
    sites = _sites(gm)
    for node in sites:
        x, groups = node.args[0], int(node.args[1])
        weight = node.args[2] if len(node.args) > 2 else node.kwargs.get("weight")
        bias = node.args[3] if len(node.args) > 3 else node.kwargs.get("bias")
        eps = float(node.args[4] if len(node.args) > 4 else node.kwargs.get("eps", 1e-5))
        n, c, h, w = shape_of(x)

        def build(op) -> fx.Node:
            def group_mean(t: fx.Node) -> fx.Node:  # [N, C, H, W] -> [N, G, 1, 1], per channel first
                per_channel = op(aten.mean.dim, t, [2, 3], True)
                return op(aten.mean.dim, op(aten.view.default, per_channel, [n, groups, c // groups, 1]), [2, 3], True)

            grouped = [n, groups, c // groups, h * w]
            d = op(aten.sub.Tensor, op(aten.view.default, x, grouped), group_mean(x))
            sq = op(aten.view.default, op(aten.mul.Tensor, d, d), [n, c, h, w])
            inv = op(aten.rsqrt.default, op(aten.add.Tensor, group_mean(sq), eps))
            out = op(aten.view.default, op(aten.mul.Tensor, d, inv), [n, c, h, w])
            if weight is not None:
                out = op(aten.mul.Tensor, out, op(aten.view.default, weight, [1, c, 1, 1]))
            if bias is not None:
                out = op(aten.add.Tensor, out, op(aten.view.default, bias, [1, c, 1, 1]))
            return out

        # no "val": the shapes differ from the group_norm's output (the backend re-traces)
        replace_by(gm, node, build, drop_meta=("val", "tensor_meta"))
    if sites:
        finish(gm)
    return len(sites)
