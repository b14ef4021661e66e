"""Inference BatchNorm folded into an adjacent convolution: conv -> BN and BN -> 1x1 conv.

conv(x, W, b) -> BN          => conv(x, W * s, (b - mean) * s + beta)      with s = gamma / sqrt(var + eps)
BN -> conv1x1(pad 0, groups 1) => conv(x, W * s[in], b + W @ (beta - mean * s))
BN -> global mean (-> flatten/view) -> linear  => mean -> linear with W * s[in], b + W @ shift
All are exact in eval mode. The second form covers FreeNet's Norm before ShiftFFN's first 1x1
conv, which no converter folds by itself (converters only fold BN into the conv BEFORE it); the
third covers the classifier heads of FreeNet and StarNet (BN -> pool -> Linear), whose lone
BatchNormalization ONNX Runtime's CoreML ML Program EP leaves in a partition of its own.
"""

from __future__ import annotations

import copy

import torch
from torch import fx

from ._graph import add_constant, aten, finish, getattr_tensor, nodes_calling

NAME = "fold_batchnorm"
KIND = "graph"
BEFORE = "conv -> batch_norm | batch_norm -> conv1x1 | batch_norm -> mean -> linear -> folded weight and bias"
RESHAPES = (aten.flatten.using_ints, aten.view.default, aten.reshape.default)
CONV = aten.conv2d.default
BN = aten.batch_norm.default


def _bn_params(gm: fx.GraphModule, bn: fx.Node):
    _, w, b, mean, var, training, _momentum, eps, *_ = bn.args
    if training:
        return None
    try:
        mean, var = getattr_tensor(gm, mean), getattr_tensor(gm, var)
        w, b = getattr_tensor(gm, w), getattr_tensor(gm, b)
    except TypeError:
        return None
    if mean is None or var is None:
        return None
    scale = (w if w is not None else torch.ones_like(var)) / torch.sqrt(var + eps)
    shift = (b if b is not None else torch.zeros_like(mean)) - mean * scale
    return scale, shift


def _conv_params(gm: fx.GraphModule, conv: fx.Node):
    """(args padded to at least 3, weight, bias) with conv2d's defaults for what the call omits."""
    args = list(conv.args) + [None] * max(0, 3 - len(conv.args))
    try:
        weight, bias = getattr_tensor(gm, args[1]), getattr_tensor(gm, args[2])
    except TypeError:
        return None
    return args, weight, bias


def _set_weight_bias(conv: fx.Node, args: list, w: fx.Node, b: fx.Node) -> None:
    args = list(args)
    args[1], args[2] = w, b
    conv.args = tuple(args)


def _bn_mean_linear(bn: fx.Node) -> fx.Node | None:
    """The linear node of a BN -> global-mean -> reshape* -> linear chain, else None."""
    users = list(bn.users)
    if len(users) != 1 or users[0].target is not aten.mean.dim:
        return None
    mean = users[0]
    dims = [d % 4 for d in mean.args[1]]
    if sorted(dims) != [2, 3]:
        return None
    node = mean
    while True:
        nxt = list(node.users)
        if len(nxt) != 1:
            return None
        node = nxt[0]
        if node.target in RESHAPES or (node.target is aten.dropout.default and not node.args[2]):
            continue  # shape-only, or eval-mode dropout (identity)
        if node.target is aten.linear.default and node.args[0] is not None:
            try:
                return node if getattr_tensor_ok(node) else None
            except TypeError:
                return None
        return None


def getattr_tensor_ok(linear: fx.Node) -> bool:
    w = linear.args[1]
    b = linear.args[2] if len(linear.args) > 2 else None
    return isinstance(w, fx.Node) and w.op == "get_attr" and (b is None or (isinstance(b, fx.Node) and b.op == "get_attr"))


def check(gm: fx.GraphModule) -> str | None:
    """Why the pass does not rewrite `gm` (None: it will)."""
    bns = nodes_calling(gm, [BN])
    if not bns:
        return "no batch_norm in the graph"
    if all(_bn_params(gm, bn) is None for bn in bns):
        return "every batch_norm is in training mode or has non-constant statistics"
    if run(copy.deepcopy(gm)) == 0:
        return ("no batch_norm sits after a conv that feeds only it, before a lone 1x1 ungrouped unpadded conv, "
                "or before global mean -> linear")
    return None


@torch.no_grad()
def run(gm: fx.GraphModule) -> int:
    count = 0
    for bn in nodes_calling(gm, [BN]):
        params = _bn_params(gm, bn)
        if params is None:
            continue
        scale, shift = params
        src = bn.args[0]
        users = list(bn.users)
        # conv -> BN (the conv feeds only this BN)
        if isinstance(src, fx.Node) and src.target is CONV and len(src.users) == 1:
            cp = _conv_params(gm, src)
            if cp is None:
                continue
            args, w, b = cp
            b = torch.zeros(w.shape[0]) if b is None else b
            new_w = add_constant(gm, "folded_w", w * scale.view(-1, 1, 1, 1), src)
            new_b = add_constant(gm, "folded_b", b * scale + shift, src)
            _set_weight_bias(src, args, new_w, new_b)
            bn.replace_all_uses_with(src)
            gm.graph.erase_node(bn)
            count += 1
            continue
        # BN -> 1x1 conv (the BN feeds only this conv)
        if len(users) == 1 and users[0].target is CONV:
            conv = users[0]
            cp = _conv_params(gm, conv)
            if cp is None:
                continue
            args, w, b = cp
            padding = args[4] if len(args) > 4 else [0, 0]
            groups = args[6] if len(args) > 6 else 1
            if w.shape[-2:] != (1, 1) or groups != 1 or any(p != 0 for p in (padding if isinstance(padding, (list, tuple)) else [padding])):
                continue
            b = torch.zeros(w.shape[0]) if b is None else b
            new_w = add_constant(gm, "folded_w", w * scale.view(1, -1, 1, 1), conv)
            new_b = add_constant(gm, "folded_b", b + w[:, :, 0, 0] @ shift, conv)
            args[0] = src
            _set_weight_bias(conv, args, new_w, new_b)
            gm.graph.erase_node(bn)
            count += 1
            continue
        # BN -> mean over (H, W) -> [flatten/view]* -> linear (every link has one user)
        head = _bn_mean_linear(bn)
        if head is not None:
            linear = head
            w, b = getattr_tensor(gm, linear.args[1]), getattr_tensor(gm, linear.args[2] if len(linear.args) > 2 else None)
            b = torch.zeros(w.shape[0]) if b is None else b
            new_w = add_constant(gm, "folded_w", w * scale.view(1, -1), linear)
            new_b = add_constant(gm, "folded_b", b + w @ shift, linear)
            args = list(linear.args) + [None] * max(0, 3 - len(linear.args))
            args[1], args[2] = new_w, new_b
            linear.args = tuple(args)
            bn.replace_all_uses_with(src)
            gm.graph.erase_node(bn)
            count += 1
    if count:
        finish(gm)
    return count
