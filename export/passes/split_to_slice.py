"""split / split_with_sizes / chunk + getitem -> one aten.slice per used output.

Delegates break graphs at split (ExecuTorch's XNNPACK partitioner does not take it); slices with
static bounds are taken by every mobile delegate and convert to SLICE / StridedSlice.
"""

from __future__ import annotations

from torch import fx

from ._graph import aten, finish, is_getitem, nodes_calling, shape_of

NAME = "split_to_slice"
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


def run(gm: fx.GraphModule) -> int:
    count = 0
    for node in nodes_calling(gm, TARGETS):
        x = node.args[0]
        shape = shape_of(x)
        if shape is None or not all(is_getitem(u) for u in node.users):
            continue
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


