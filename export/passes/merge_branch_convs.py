"""S2Mixer branches with equal dilation: N slices + N convs + cat -> 1 slice + 1 conv + cat.

A k x k kernel embeds exactly in the centre of a larger K x K kernel with the same dilation (the
outer taps are zero), so branches (5, d) and (7, d) become one 7x7 conv over both branches'
channels with a block-diagonal weight. Dense branches become one dense conv (more MACs, fewer ops);
depthwise (Equimo) branches stay depthwise (fewer ops, nearly the same MACs). It only applies to
contiguous-layout mixers (run fold_channel_permutation first). Off by default: it is kept only
where the benchmark shows it is not slower (benchmarks/bench_passes.py).
"""

from __future__ import annotations

import torch
from torch import nn

from freenet.layers import S2Mixer, same_padding

NAME = "merge_branch_convs"
KIND = "module"
BEFORE = "slice_j -> conv(k_j, d) -> cat (one per branch) -> slice -> conv(max k, d, block-diagonal) -> cat"


class MergedS2Mixer(nn.Module):
    """What merge_branch_convs puts in place of a contiguous S2Mixer."""

    def __init__(self, mixed: int, conv: nn.Conv2d) -> None:
        super().__init__()
        self.mixed, self.conv = mixed, conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x[:, : self.mixed]), x[:, self.mixed :]], dim=1)


@torch.no_grad()
def _merge(m: S2Mixer) -> MergedS2Mixer:
    w, nb = m.branch_width, len(m.convs)
    k = max(c.kernel_size[0] for c in m.convs)
    d = m.convs[0].dilation[0]
    depthwise = m.mode == "equimo"
    conv = nn.Conv2d(nb * w, nb * w, k, padding=same_padding(k, d), dilation=d, groups=nb * w if depthwise else 1, bias=False)
    conv.weight.zero_()
    for j, c in enumerate(m.convs):
        kj = c.kernel_size[0]
        o = (k - kj) // 2
        rows = slice(j * w, (j + 1) * w)
        if depthwise:
            conv.weight[rows, :, o : o + kj, o : o + kj] = c.weight
        else:
            conv.weight[rows, j * w : (j + 1) * w, o : o + kj, o : o + kj] = c.weight
    return MergedS2Mixer(nb * w, conv)


def mergeable(m: nn.Module) -> bool:
    return (
        isinstance(m, S2Mixer)
        and (m.layout == "contiguous" or m.groups == 1)
        and len(m.convs) > 1
        and len({c.dilation for c in m.convs}) == 1
        and all(c.kernel_size[0] % 2 == 1 for c in m.convs)
    )


def check(model: nn.Module) -> str | None:
    """Why the pass does not rewrite `model` (None: it will)."""
    mixers = [m for m in model.modules() if isinstance(m, S2Mixer)]
    if not mixers:
        return f"no S2Mixer in {type(model).__name__}"
    if not any(mergeable(m) for m in mixers):
        return ("no S2Mixer in the contiguous layout (run fold_channel_permutation first) with several "
                "odd-kernel branches of one dilation")
    return None


def run(model: nn.Module) -> int:
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if mergeable(child):
                setattr(parent, name, _merge(child))
                count += 1
    return count
