"""One registry for every model the project measures.

FreeNet variants live in timm's registry (so `timm.create_model("freenet_s2")` works after
`import freenet`); StarNet and MobileNetV4 come from timm, MobileNetV2/V3 from torchvision, and any
other timm architecture is reachable as `timm:<name>`. Everything is randomly initialised unless a
local checkpoint file is given: nothing is downloaded, ever.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()

import timm  # noqa: E402  (needs the torchvision workaround first)
import torchvision  # noqa: E402

from . import freenet as _freenet  # noqa: E402,F401  (registers the FreeNet variants in timm)
from .freenet import VARIANTS  # noqa: E402

__all__ = ["ModelInfo", "create_model", "list_models", "model_info", "load_checkpoint"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    source: str  # "ours" | "timm" | "torchvision"
    family: str  # "freenet" | "starnet" | "mobilenet" | other
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    builder: Callable[..., nn.Module] | None = field(default=None, compare=False, repr=False)


def _timm_builder(name: str) -> Callable[..., nn.Module]:
    def build(**kwargs) -> nn.Module:
        return timm.create_model(name, pretrained=False, **kwargs)

    return build


def _tv_builder(name: str) -> Callable[..., nn.Module]:
    def build(**kwargs) -> nn.Module:
        return torchvision.models.get_model(name, weights=None, **kwargs)

    return build


def _build_registry() -> dict[str, ModelInfo]:
    reg: dict[str, ModelInfo] = {}
    for name in VARIANTS:
        reg[name] = ModelInfo(name, "ours", "freenet", builder=_timm_builder(name))
    for name in ("starnet_s050", "starnet_s100", "starnet_s150", "starnet_s1", "starnet_s2", "starnet_s3", "starnet_s4"):
        reg[name] = ModelInfo(name, "timm", "starnet", builder=_timm_builder(name))
    for name in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"):
        reg[name] = ModelInfo(name, "torchvision", "mobilenet", builder=_tv_builder(name))
    reg["mobilenetv4_conv_small"] = ModelInfo(
        "mobilenetv4_conv_small", "timm", "mobilenet", builder=_timm_builder("mobilenetv4_conv_small")
    )
    return reg


_REGISTRY = _build_registry()


def list_models() -> list[str]:
    """Registered names (without the open-ended `timm:<name>` namespace)."""
    return list(_REGISTRY)


def model_info(name: str) -> ModelInfo:
    """Metadata of a registered name or of `timm:<name>`; ValueError with close matches otherwise."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith("timm:"):
        arch = name[len("timm:") :]
        if arch not in timm.list_models():
            close = difflib.get_close_matches(arch, timm.list_models(), n=5)
            raise ValueError(f"timm has no model {arch!r}" + (f"; did you mean: {', '.join(close)}" if close else ""))
        cfg = timm.models.get_pretrained_cfg(arch)
        size = tuple(cfg.input_size) if cfg is not None else (3, 224, 224)
        mean = tuple(cfg.mean) if cfg is not None else IMAGENET_MEAN
        std = tuple(cfg.std) if cfg is not None else IMAGENET_STD
        return ModelInfo(name, "timm", arch.split("_")[0], size, mean, std, builder=_timm_builder(arch))
    close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"unknown model {name!r}.{hint} Registered: {', '.join(_REGISTRY)}; any timm architecture works as 'timm:<name>'."
    )


def load_checkpoint(model: nn.Module, path: str | Path) -> dict:
    """Load a local state dict (plain, or a `freenet train` checkpoint with a 'model' key)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    state = blob.get("model", blob) if isinstance(blob, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state dict")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"checkpoint {path} does not fit the model: missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}"
        )
    return blob if isinstance(blob, dict) else {}


def read_checkpoint_meta(path: str | Path) -> dict:
    blob = torch.load(Path(path), map_location="cpu", weights_only=True)
    return dict(blob.get("meta", {})) if isinstance(blob, dict) else {}


def create_model(name: str, checkpoint: str | Path | None = None, **kwargs) -> nn.Module:
    """Build a model by registry name (random weights), optionally loading a local checkpoint.

    A checkpoint written by `freenet train` records the constructor arguments it was trained with
    (e.g. num_classes), which are applied unless overridden here.
    """
    info = model_info(name)
    if checkpoint is not None:
        meta = read_checkpoint_meta(checkpoint)
        if meta.get("model") not in (None, name):
            raise ValueError(f"checkpoint {checkpoint} was trained for {meta['model']!r}, not {name!r}")
        kwargs = {**meta.get("model_kwargs", {}), **kwargs}
    assert info.builder is not None
    model = info.builder(**kwargs)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint)
    return model.eval()
