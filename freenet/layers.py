"""FreeNet building blocks: S2-Mixer, shift neck, ShiftFFN and the FreeNet block.

Only the paper's abstract is public, so every structural choice that the abstract does not state is
an interpretation, labelled in docs/freenet.md and selectable here by a constructor option:

- `S2Mixer(mode="dense")` (our reading, the default): the channels are cut into `groups` equal
  groups; for each branch, every group contributes one contiguous segment of channels at the same
  offset ("multiple segments of partially continuous signals across the channel dimension"). The
  segments of a branch are processed together by one DENSE (groups=1) dilated convolution (sparse
  sampling in space) and written back to where they came from; all other channels pass through.
- `S2Mixer(mode="equimo")`: the only other published reading (the JAX library Equimo): one
  contiguous prefix of channels per branch, depthwise convolutions.

`layout="contiguous"` describes the same dense mixer after an exact channel permutation has moved
every branch's segments next to each other (`FreeNet.to_contiguous_layout()` does this and folds the
permutation into the neighbouring weights; the export pass `fold_channel_permutation` calls it);
eager PyTorch code never needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from timm.layers import DropPath

ActFactory = Callable[[], nn.Module]

ACTIVATIONS: dict[str, ActFactory] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "hardswish": nn.Hardswish,
}


def make_act(name: str) -> nn.Module:
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


def _largest_pow2_divisor(channels: int, limit: int = 32) -> int:
    g = 1
    while g * 2 <= limit and channels % (g * 2) == 0:
        g *= 2
    return g


def make_norm(name: str, channels: int) -> nn.Module:
    """BatchNorm (foldable into the next 1x1 conv) or GroupNorm (Equimo: power-of-two groups <= 32)."""
    if name == "batchnorm":
        return nn.BatchNorm2d(channels)
    if name == "groupnorm":
        return nn.GroupNorm(_largest_pow2_divisor(channels), channels)
    if name == "identity":
        return nn.Identity()
    raise ValueError(f"unknown norm {name!r}; choose 'batchnorm', 'groupnorm' or 'identity'")


def same_padding(kernel: int, dilation: int) -> int:
    """Padding that keeps the spatial size of a stride-1 convolution, or ValueError."""
    if kernel < 1 or dilation < 1:
        raise ValueError(f"kernel and dilation must be >= 1, got k={kernel}, d={dilation}")
    span = dilation * (kernel - 1)
    if span % 2:
        raise ValueError(
            f"kernel {kernel} with dilation {dilation} spans {span + 1} pixels: an even span cannot "
            "keep the spatial size with symmetric padding; use an odd kernel or an even dilation"
        )
    return span // 2


def fit_dilation(kernel: int, dilation: int, feature_size: int) -> int:
    """Largest dilation <= `dilation` whose receptive extent fits the feature map ("dynamic receptive
    fields"): a dilated tap that always lands in the zero padding only costs time."""
    d = dilation
    while d > 1 and (kernel - 1) * d + 1 > feature_size:
        d -= 1
    return d


class S2Mixer(nn.Module):
    """Sparse-sampling token mixer.

    Args:
        dim: channels in and out.
        branches: one (kernel, dilation) pair per branch.
        mix_ratio: fraction of `dim` that each branch samples.
        groups: channel groups; each branch takes one contiguous segment from every group
            (dense mode). Equimo mode ignores it (one prefix).
        mode: "dense" (our reading, groups=1 convolutions) or "equimo" (depthwise branches).
        layout: "grouped" (segments spread over the groups, as sampled) or "contiguous" (each
            branch's channels adjacent, after the exact permutation of the export pass).
    """

    def __init__(
        self,
        dim: int,
        branches: Sequence[tuple[int, int]] = ((5, 2), (7, 3)),
        mix_ratio: float = 0.125,
        groups: int = 4,
        mode: str = "dense",
        layout: str = "grouped",
    ) -> None:
        super().__init__()
        if mode not in ("dense", "equimo"):
            raise ValueError(f"S2Mixer mode must be 'dense' or 'equimo', got {mode!r}")
        if layout not in ("grouped", "contiguous"):
            raise ValueError(f"S2Mixer layout must be 'grouped' or 'contiguous', got {layout!r}")
        if not branches:
            raise ValueError("S2Mixer needs at least one (kernel, dilation) branch")
        if not 0 < mix_ratio <= 1:
            raise ValueError(f"mix_ratio must be in (0, 1], got {mix_ratio}")
        if mode == "equimo":
            groups = 1
        if groups < 1 or dim % groups:
            raise ValueError(f"groups={groups} must divide the {dim} channels")
        group_dim = dim // groups
        # channels each branch takes from one group (at least one)
        segment = max(1, round(dim * mix_ratio / groups))
        if segment * len(branches) > group_dim:
            raise ValueError(
                f"{len(branches)} branches x {segment}-channel segments do not fit in a group of "
                f"{group_dim} channels (dim={dim}, groups={groups}, mix_ratio={mix_ratio})"
            )
        self.dim, self.groups, self.segment, self.mode, self.layout = dim, groups, segment, mode, layout
        self.branch_specs = tuple((int(k), int(d)) for k, d in branches)
        width = segment * groups  # channels per branch
        self.convs = nn.ModuleList(
            nn.Conv2d(
                width,
                width,
                k,
                padding=same_padding(k, d),
                dilation=d,
                groups=width if mode == "equimo" else 1,
                bias=False,
            )
            for k, d in self.branch_specs
        )

    @property
    def branch_width(self) -> int:
        return self.segment * self.groups

    def sampled_channels(self) -> list[list[int]]:
        """Channel indices (in the grouped layout) that each branch samples, in branch order."""
        gd = self.dim // self.groups
        return [
            [g * gd + j * self.segment + t for g in range(self.groups) for t in range(self.segment)]
            for j in range(len(self.convs))
        ]

    def contiguous_permutation(self) -> list[int]:
        """perm such that x[:, perm] puts branch 0's channels first, then branch 1's, ..., then the
        pass-through channels in their original order."""
        sampled = [c for branch in self.sampled_channels() for c in branch]
        taken = set(sampled)
        return sampled + [c for c in range(self.dim) if c not in taken]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nb, w = len(self.convs), self.branch_width
        if self.layout == "contiguous" or self.groups == 1:
            # Plain 4-D channel slices: what mobile delegates run natively.
            outs = [conv(x[:, j * w : (j + 1) * w]) for j, conv in enumerate(self.convs)]
            return torch.cat([*outs, x[:, nb * w :]], dim=1)
        # Grouped layout: view channels as (groups, group_dim) and take one segment per group.
        b, c, h, wd = x.shape
        s = self.segment
        x5 = x.reshape(b, self.groups, c // self.groups, h, wd)
        outs = []
        for j, conv in enumerate(self.convs):
            seg = x5[:, :, j * s : (j + 1) * s].reshape(b, w, h, wd)
            outs.append(conv(seg).reshape(b, self.groups, s, h, wd))
        outs.append(x5[:, :, nb * s :])
        return torch.cat(outs, dim=2).reshape(b, c, h, wd)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, mode={self.mode}, layout={self.layout}, groups={self.groups}, "
            f"segment={self.segment}, branches={self.branch_specs}"
        )


class ShiftNeck(nn.Module):
    """x + Expand(act(Reduce(GAP(x)))): a global-context bias that shifts every pixel's features.

    The pooling is written as mean over (H, W) with keepdim, which every mobile delegate runs.
    """

    def __init__(self, dim: int, reduction: int = 8, act: str = "relu6") -> None:
        super().__init__()
        hidden = max(1, dim // reduction)
        self.reduce = nn.Conv2d(dim, hidden, 1)
        self.act = make_act(act)
        self.expand = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.expand(self.act(self.reduce(x.mean(dim=(2, 3), keepdim=True))))


class ShiftFFN(nn.Module):
    """a = 1x1 conv c->2c; b = ShiftNeck(a); out = 1x1 conv 4c->c of act(concat[a, b])."""

    def __init__(self, dim: int, expansion: int = 2, neck_reduction: int = 8, act: str = "relu6") -> None:
        super().__init__()
        hidden = dim * expansion
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.neck = ShiftNeck(hidden, neck_reduction, act)
        self.act = make_act(act)
        self.fc2 = nn.Conv2d(2 * hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.fc1(x)
        return self.fc2(self.act(torch.cat([a, self.neck(a)], dim=1)))


class FreeNetBlock(nn.Module):
    """x + DropPath(ShiftFFN(Norm(S2Mixer(x)))): one shortcut per block."""

    def __init__(
        self,
        dim: int,
        branches: Sequence[tuple[int, int]] = ((5, 2), (7, 3)),
        mix_ratio: float = 0.125,
        groups: int = 4,
        mixer_mode: str = "dense",
        norm: str = "batchnorm",
        act: str = "relu6",
        expansion: int = 2,
        neck_reduction: int = 8,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.mixer = S2Mixer(dim, branches, mix_ratio, groups, mixer_mode)
        self.norm = make_norm(norm, dim)
        self.ffn = ShiftFFN(dim, expansion, neck_reduction, act)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.drop_path(self.ffn(self.norm(self.mixer(x))))
