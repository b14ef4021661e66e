"""Parameter and MAC counts, measured with PyTorch's own flop counter.

`torch.utils.flop_counter.FlopCounterMode` counts the FLOPs of matrix and convolution ops (2 per
multiply-accumulate) and ignores element-wise work, which is the convention of the papers we compare
with; MACs are therefore reported as FLOPs / 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_macs(model: nn.Module, input_size: tuple[int, int, int] = (3, 224, 224), batch: int = 1) -> int:
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter:
        model(torch.zeros(batch, *input_size))
    model.train(was_training)
    return counter.get_total_flops() // 2
