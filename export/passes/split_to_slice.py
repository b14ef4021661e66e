"""split / split_with_sizes / chunk + getitem -> one aten.slice per used output.

Delegates break graphs at split (ExecuTorch's XNNPACK partitioner does not take it); slices with
static bounds are taken by every mobile delegate and convert to SLICE / StridedSlice.
"""

from __future__ import annotations

from torch import fx

from ._graph import aten, finish, is_getitem, nodes_calling, shape_of

NAME = "split_to_slice"
KIND = "graph"
BEFORE = "split/chunk(x) + getitem(i) -> slice(x, dim, start_i, end_i)"
TARGETS = (aten.split.Tensor, aten.split_with_sizes.default, aten.chunk.default)


def _bounds(node: fx.Node, length: int) -> list[tuple[int, int]]:
    arg = node.args[1]
    if node.target is aten.split_with_sizes.default:
        sizes = list(arg)
    elif node.target is aten.split.Tensor:
        sizes = [min(arg, length - s) for s in range(0, length, arg)]
    else:  # chunk: ceil-sized pieces
        step = -(-length // arg)
        sizes = [min(step, length - s) for s in range(0, length, step)]
    out, start = [], 0
    for s in sizes:
        out.append((start, start + s))
        start += s
    return out


def _sites(gm: fx.GraphModule) -> list[fx.Node]:
    return [n for n in nodes_calling(gm, TARGETS) if shape_of(n.args[0]) is not None and all(is_getitem(u) for u in n.users)]


def check(gm: fx.GraphModule) -> str | None:
    """Why the pass does not rewrite `gm` (None: it will)."""
    if not nodes_calling(gm, TARGETS):
        return "no split / split_with_sizes / chunk in the graph"
    if not _sites(gm):
        return "every split's output list is used whole (not only through getitem) or has no static shape"
    return None


def run(gm: fx.GraphModule) -> int:
    count = 0
    for node in _sites(gm):
        x = node.args[0]
        shape = shape_of(x)
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        dim = dim % len(shape)
        bounds = _bounds(node, shape[dim])
        for user in list(node.users):
            start, end = bounds[user.args[1]]
            with gm.graph.inserting_before(user):
                sl = gm.graph.call_function(aten.slice.Tensor, (x, dim, start, end))
            sl.meta = dict(user.meta)
            user.replace_all_uses_with(sl)
            gm.graph.erase_node(user)
        gm.graph.erase_node(node)
        count += 1
    if count:
        finish(gm)
    return count


