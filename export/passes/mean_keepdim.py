"""Global pooling -> mean over (H, W) with keepdim=True (+ a reshape where the rank drops).

adaptive_avg_pool2d(x, 1) and mean(x, (2, 3), keepdim=False) are delegated unevenly: ExecuTorch's
XNNPACK takes only mean with keepdim; the LiteRT GPU delegate and NNAPI take MEAN / ReduceMean.
"""

from __future__ import annotations

from torch import fx

from ._graph import aten, finish, nodes_calling, shape_of

NAME = "mean_keepdim"
KIND = "graph"
BEFORE = "adaptive_avg_pool2d(x, 1) | mean(x, (2, 3)) -> mean(x, (2, 3), keepdim=True) [-> view(N, C)]"


def _is_global_hw(dims, rank: int) -> bool:
    return rank == 4 and sorted(d % rank for d in dims) == [2, 3]


def _keepdim(node: fx.Node) -> bool | None:
    """For a rewritable global pooling node: whether it keeps the dims; None when not rewritable."""
    shape = shape_of(node.args[0])
    if shape is None or len(shape) != 4:
        return None
    if node.target is aten.adaptive_avg_pool2d.default:
        return True if tuple(node.args[1]) in ((1, 1), (1,)) else None
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return None if keep or not _is_global_hw(node.args[1], 4) else False


def _sites(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in nodes_calling(gm, (aten.adaptive_avg_pool2d.default, aten.mean.dim)) if _keepdim(n) is not None]


def check(gm: fx.GraphModule) -> str | None:
    """Why the pass does not rewrite `gm` (None: it will)."""
    if not _sites(gm):
        return "no adaptive_avg_pool2d(x, 1) and no mean over (H, W) without keepdim on a 4-D tensor"
    return None


def run(gm: fx.GraphModule) -> int:
    count = 0
    for node in _sites(gm):
        x = node.args[0]
        shape = shape_of(x)
        keep = _keepdim(node)
        with gm.graph.inserting_before(node):
            new = gm.graph.call_function(aten.mean.dim, (x, [2, 3], True))
            new.meta = dict(node.meta)
            out = new
            if not keep:
                out = gm.graph.call_function(aten.view.default, (new, [shape[0], shape[1]]))
                out.meta = dict(node.meta)
        node.replace_all_uses_with(out)
        gm.graph.erase_node(node)
        count += 1
    if count:
        finish(gm)
    return count
