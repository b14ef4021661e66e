"""FreeNet S2-Mixer grouped sampling (5-D view + per-group slices) -> contiguous 4-D channel slices.

Every block of a FreeNet stage samples the same channel positions, so one permutation per stage
moves each branch's segments next to each other. The permutation is folded EXACTLY into the
neighbouring weights: the output rows of the stage's downsample conv+BN, the per-channel
parameters of each block's norm, the input columns of each ShiftFFN's first 1x1 conv, the output
rows of its last 1x1 conv, and the input columns of whatever reads the stage (next downsample conv,
or the head BN and classifier). The residual stream then lives in permuted channel order, which
nothing outside the network can observe (logits are unchanged; intermediate feature maps are
permuted).
"""

from __future__ import annotations

import torch
from torch import nn

from freenet.freenet import FreeNet
from freenet.layers import FreeNetBlock, S2Mixer

NAME = "fold_channel_permutation"
BEFORE = "S2Mixer(layout=grouped): reshape 5-D + slice + cat -> S2Mixer(layout=contiguous): 4-D channel slices"


def check(model: nn.Module) -> str | None:
    """Why the pass cannot apply, or None."""
    for m in model.modules():
        if isinstance(m, FreeNetBlock) and isinstance(m.norm, nn.GroupNorm) and m.mixer.groups > 1:
            return "GroupNorm normalises contiguous channel groups; a channel permutation would change it"
    return None


@torch.no_grad()
def _permute_out(conv: nn.Conv2d, perm: torch.Tensor) -> None:
    conv.weight.copy_(conv.weight[perm])
    if conv.bias is not None:
        conv.bias.copy_(conv.bias[perm])


@torch.no_grad()
def _permute_in(layer: nn.Conv2d | nn.Linear, perm: torch.Tensor) -> None:
    layer.weight.copy_(layer.weight[:, perm])


@torch.no_grad()
def _permute_channels(norm: nn.Module, perm: torch.Tensor) -> None:
    if isinstance(norm, nn.Identity):
        return
    if not isinstance(norm, nn.BatchNorm2d):
        raise ValueError(f"cannot permute the channels of {type(norm).__name__}")
    for t in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
        if t is not None:
            t.copy_(t[perm])


def run(model: nn.Module) -> int:
    """Rewrite every grouped-layout FreeNet stage in place; returns the number of mixers rewritten."""
    nets = [m for m in model.modules() if isinstance(m, FreeNet)]
    if not nets:
        return 0
    reason = check(model)
    if reason:
        raise ValueError(f"{NAME}: {reason}")
    rewritten = 0
    for net in nets:
        stages = list(net.stages)
        for si, stage in enumerate(stages):
            blocks = [b for b in stage if isinstance(b, FreeNetBlock)]
            mixers = [b.mixer for b in blocks if b.mixer.layout == "grouped" and b.mixer.groups > 1]
            if not mixers:
                continue
            patterns = {tuple(m.contiguous_permutation()) for m in mixers}
            if len(patterns) != 1 or len(mixers) != len(blocks):
                raise ValueError(f"{NAME}: stage {si} mixes sampling patterns; one permutation cannot serve it")
            perm = torch.tensor(patterns.pop())
            down = stage[0]  # ConvBN: conv then BN
            _permute_out(down[0], perm)
            _permute_channels(down[1], perm)
            for b in blocks:
                _permute_channels(b.norm, perm)
                _permute_in(b.ffn.fc1, perm)
                _permute_out(b.ffn.fc2, perm)
                b.mixer.layout = "contiguous"
                rewritten += 1
            if si + 1 < len(stages):
                _permute_in(stages[si + 1][0][0], perm)
            else:
                _permute_channels(net.norm, perm)
                if isinstance(net.head, nn.Linear):
                    _permute_in(net.head, perm)
    return rewritten


def is_contiguous(mixer: S2Mixer) -> bool:
    return mixer.layout == "contiguous" or mixer.groups == 1
