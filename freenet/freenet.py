"""The FreeNet network, its variants as data, and their registration in timm's model registry.

Layout (our interpretation, docs/freenet.md): StarNet-like 3x3 stride-2 stem to 32 channels, four
stages each opened by a 3x3 stride-2 conv + BN and followed by N FreeNet blocks, widths base*2^i,
head BN -> global average pool -> Linear. A variant is a `FreeNetCfg`; `@register_model` functions
only name one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .layers import FreeNetBlock, fit_dilation, make_act

__all__ = ["FreeNet", "FreeNetCfg", "VARIANTS", "EQUIMO_OVERRIDES"]

# Default per-branch (kernel, dilation) before the per-stage fit; the two pairs FREENET.md names.
DEFAULT_BRANCHES: tuple[tuple[int, int], ...] = ((5, 2), (7, 3))


@dataclass(frozen=True)
class FreeNetCfg:
    """Everything that defines a FreeNet architecture (hashable into a config hash)."""

    depths: tuple[int, ...]
    base_width: int
    stem_width: int = 32
    branches: tuple[tuple[int, int], ...] = DEFAULT_BRANCHES
    # "fit": shrink each stage's dilations so the receptive extent fits that stage's feature map at
    # `reference_size` input (dynamic receptive fields); "fixed": use `branches` everywhere.
    dilation_schedule: str = "fit"
    reference_size: int = 224
    mix_ratio: float = 0.125
    groups: int = 4
    mixer_mode: str = "dense"
    norm: str = "batchnorm"
    act: str = "relu6"
    expansion: int = 2
    neck_reduction: int = 8

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.base_width * 2**i for i in range(len(self.depths)))

    def stage_branches(self) -> list[tuple[tuple[int, int], ...]]:
        """The (kernel, dilation) pairs each stage uses."""
        if self.dilation_schedule == "fixed":
            return [self.branches] * len(self.depths)
        if self.dilation_schedule != "fit":
            raise ValueError(f"dilation_schedule must be 'fit' or 'fixed', got {self.dilation_schedule!r}")
        out = []
        for i in range(len(self.depths)):
            size = max(1, self.reference_size // 2 ** (i + 2))  # stage i runs at stride 4 * 2^i
            out.append(tuple((k, fit_dilation(k, d, size)) for k, d in self.branches))
        return out

    def config_hash(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# The Equimo reading, applied on top of any variant with `mixer_mode="equimo"` or `equimo=True`.
# Its activation is jax.nn.gelu, whose default is the tanh approximation (../shared/docs/FREENET.md).
EQUIMO_OVERRIDES = dict(
    mixer_mode="equimo",
    branches=((5, 2), (7, 2)),
    dilation_schedule="fixed",
    mix_ratio=0.125,
    norm="groupnorm",
    act="gelu_tanh",
)

VARIANTS: dict[str, FreeNetCfg] = {
    # tiny: for tests and CPU training demos only
    "freenet_tiny": FreeNetCfg(depths=(1, 1, 1, 1), base_width=16, stem_width=16),
    "freenet_s1": FreeNetCfg(depths=(2, 2, 6, 2), base_width=32),
    "freenet_s2": FreeNetCfg(depths=(2, 2, 9, 3), base_width=48),
    "freenet_s3": FreeNetCfg(depths=(2, 3, 10, 3), base_width=56),
    "freenet_s4": FreeNetCfg(depths=(3, 3, 12, 4), base_width=64),
}
# FreeNet-S2's widths and depths with Equimo's blocks: the other published reading, side by side
# with ours in the comparison suite. Much cheaper (depthwise mixer): outside StarNet-S4's ±15%.
VARIANTS["freenet_s2_equimo"] = replace(VARIANTS["freenet_s2"], **EQUIMO_OVERRIDES)


class ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 2, act: str | None = None) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act:
            layers.append(make_act(act))
        super().__init__(*layers)


class FreeNet(nn.Module):
    """FreeNet backbone + classifier, timm-style interface."""

    def __init__(
        self,
        cfg: FreeNetCfg,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        global_pool: str = "avg",
    ) -> None:
        super().__init__()
        if global_pool not in ("avg", ""):
            raise ValueError(f"global_pool must be 'avg' or '', got {global_pool!r}")
        if in_chans < 1 or num_classes < 0:
            raise ValueError(f"invalid in_chans={in_chans} / num_classes={num_classes}")
        self.cfg = cfg
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.global_pool = global_pool
        self.stem = ConvBN(in_chans, cfg.stem_width, act=cfg.act)
        total = sum(cfg.depths)
        dpr = torch.linspace(0, drop_path_rate, total).tolist() if total else []
        stages, self.feature_info, prev, i = [], [], cfg.stem_width, 0
        for s, (depth, width, branches) in enumerate(zip(cfg.depths, cfg.widths, cfg.stage_branches())):
            blocks = [
                FreeNetBlock(
                    width,
                    branches=branches,
                    mix_ratio=cfg.mix_ratio,
                    groups=cfg.groups,
                    mixer_mode=cfg.mixer_mode,
                    norm=cfg.norm,
                    act=cfg.act,
                    expansion=cfg.expansion,
                    neck_reduction=cfg.neck_reduction,
                    drop_path=dpr[i + b],
                )
                for b in range(depth)
            ]
            i += depth
            stages.append(nn.Sequential(ConvBN(prev, width), *blocks))
            self.feature_info.append(dict(num_chs=width, reduction=2 ** (s + 2), module=f"stages.{s}"))
            prev = width
        self.stages = nn.Sequential(*stages)
        self.num_features = self.head_hidden_size = prev
        self.norm = nn.BatchNorm2d(prev)
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(prev, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    # --- timm interface -------------------------------------------------------------------
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        if global_pool is not None:
            self.global_pool = global_pool
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a ValueError naming the expected shape (static shapes only: export-safe)."""
        if x.dim() != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"{type(self).__name__} expects input of shape (N, {self.in_chans}, H, W) with H, W >= 32; "
                f"got {tuple(x.shape)}"
            )
        if x.shape[2] < 32 or x.shape[3] < 32:
            raise ValueError(
                f"input spatial size {tuple(x.shape[2:])} is too small: the network downsamples by 32, "
                f"expected (N, {self.in_chans}, H, W) with H, W >= 32"
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.norm(self.stages(self.stem(x)))

    def forward_intermediates(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after each stage (strides 4, 8, 16, 32), as declared in `feature_info`."""
        self.check_input(x)
        feats, x = [], self.stem(x)
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if self.global_pool == "avg":
            x = x.mean(dim=(2, 3))
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    # --- deployment reparameterisation (like timm's fuse()/reparameterize()) ---------------
    def contiguous_layout_refusal(self) -> str | None:
        """Why `to_contiguous_layout()` cannot apply to this model, or None when it can."""
        for stage_index, stage in enumerate(self.stages):
            blocks = [b for b in stage if isinstance(b, FreeNetBlock)]
            grouped = [b for b in blocks if b.mixer.layout == "grouped" and b.mixer.groups > 1]
            if any(isinstance(b.norm, nn.GroupNorm) for b in grouped):
                return "GroupNorm normalises contiguous channel groups; a channel permutation would change it"
            if grouped and (len(grouped) != len(blocks) or len({tuple(b.mixer.contiguous_permutation()) for b in grouped}) != 1):
                return f"stage {stage_index} mixes sampling patterns; one permutation cannot serve it"
        return None

    @torch.no_grad()
    def to_contiguous_layout(self) -> int:
        """Rewrite every grouped-layout stage to the contiguous layout in place, exactly; returns the
        number of mixers rewritten (0 when already contiguous).

        Every block of a stage samples the same channel positions, so one permutation per stage moves
        each branch's segments next to each other. It is folded into the neighbouring weights: the
        output rows of the stage's downsample conv+BN, each block's norm, the input columns of each
        ShiftFFN's first 1x1 conv and the output rows of its last, and the input columns of whatever
        reads the stage (the next downsample conv, or the head norm and classifier). The residual
        stream then lives in permuted channel order, which nothing outside the network observes
        (logits are unchanged; intermediate feature maps are permuted).
        """
        reason = self.contiguous_layout_refusal()
        if reason:
            raise ValueError(f"to_contiguous_layout: {reason}")
        rewritten = 0
        stages = list(self.stages)
        for si, stage in enumerate(stages):
            blocks = [b for b in stage if isinstance(b, FreeNetBlock)]
            if not any(b.mixer.layout == "grouped" and b.mixer.groups > 1 for b in blocks):
                continue
            perm = torch.tensor(blocks[0].mixer.contiguous_permutation())
            down = stage[0]  # ConvBN: conv then BN
            _permute_rows(down[0], perm)
            _permute_channels(down[1], perm)
            for b in blocks:
                _permute_channels(b.norm, perm)
                _permute_columns(b.ffn.fc1, perm)
                _permute_rows(b.ffn.fc2, perm)
                b.mixer.layout = "contiguous"
                rewritten += 1
            if si + 1 < len(stages):
                _permute_columns(stages[si + 1][0][0], perm)
            else:
                _permute_channels(self.norm, perm)
                if isinstance(self.head, nn.Linear):
                    _permute_columns(self.head, perm)
        return rewritten


def _permute_rows(layer: nn.Conv2d, perm: torch.Tensor) -> None:
    layer.weight.copy_(layer.weight[perm])
    if layer.bias is not None:
        layer.bias.copy_(layer.bias[perm])


def _permute_columns(layer: nn.Conv2d | nn.Linear, perm: torch.Tensor) -> None:
    layer.weight.copy_(layer.weight[:, perm])


def _permute_channels(norm: nn.Module, perm: torch.Tensor) -> None:
    if isinstance(norm, nn.Identity):
        return
    if not isinstance(norm, nn.BatchNorm2d):
        raise ValueError(f"cannot permute the channels of {type(norm).__name__}")
    for t in (norm.weight, norm.bias, norm.running_mean, norm.running_var):
        if t is not None:
            t.copy_(t[perm])


def _cfg(**kwargs) -> dict:
    return dict(
        url="",  # no weights are published; nothing is ever downloaded
        num_classes=1000,
        input_size=(3, 224, 224),
        pool_size=(7, 7),
        crop_pct=0.875,
        interpolation="bicubic",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        first_conv="stem.0",
        classifier="head",
        **kwargs,
    )


# timm's register_model reads this module attribute for each variant's pretrained_cfg (input size,
# mean/std, classifier name); `url` is empty because nothing is published or downloaded.
default_cfgs = generate_default_cfgs({name: _cfg() for name in VARIANTS})


def build_freenet(variant: str, pretrained: bool = False, **kwargs) -> FreeNet:
    """Build a registered variant; FreeNetCfg fields may be overridden by keyword
    (e.g. `mixer_mode="equimo"`, `act="gelu"`), and `equimo=True` applies the Equimo reading."""
    if pretrained:
        raise ValueError("FreeNet has no published weights; load a local file with checkpoint=PATH")
    if variant not in VARIANTS:
        raise ValueError(f"unknown FreeNet variant {variant!r}; known: {sorted(VARIANTS)}")
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in FreeNetCfg.__dataclass_fields__}
    if kwargs.pop("equimo", False):
        overrides = {**EQUIMO_OVERRIDES, **overrides}
    for key in ("branches",):
        if key in overrides:
            overrides[key] = tuple(tuple(p) for p in overrides[key])
    if "depths" in overrides:
        overrides["depths"] = tuple(overrides["depths"])
    cfg = replace(VARIANTS[variant], **overrides)
    return build_model_with_cfg(
        FreeNet,
        variant,
        pretrained=False,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        cfg=cfg,
        **kwargs,
    )


@register_model
def freenet_tiny(pretrained: bool = False, **kwargs) -> FreeNet:
    return build_freenet("freenet_tiny", pretrained, **kwargs)


@register_model
def freenet_s1(pretrained: bool = False, **kwargs) -> FreeNet:
    return build_freenet("freenet_s1", pretrained, **kwargs)


@register_model
def freenet_s2(pretrained: bool = False, **kwargs) -> FreeNet:
    return build_freenet("freenet_s2", pretrained, **kwargs)


@register_model
def freenet_s3(pretrained: bool = False, **kwargs) -> FreeNet:
    return build_freenet("freenet_s3", pretrained, **kwargs)


@register_model
def freenet_s4(pretrained: bool = False, **kwargs) -> FreeNet:
    return build_freenet("freenet_s4", pretrained, **kwargs)


@register_model
def freenet_s2_equimo(pretrained: bool = False, **kwargs) -> FreeNet:
    return build_freenet("freenet_s2_equimo", pretrained, **kwargs)
