"""FreeNet mobile vision backbones and the one model registry (FreeNet, StarNet, MobileNets, timm:*).

Importing the package registers the FreeNet variants in timm's registry.
"""

from ._torchvision_compat import ensure_torchvision_importable

ensure_torchvision_importable()  # before anything imports timm (timm imports torchvision)

from .freenet import VARIANTS, FreeNet, FreeNetCfg  # noqa: E402
from .registry import ModelInfo, create_model, list_models, load_checkpoint, model_info  # noqa: E402

__all__ = ["FreeNet", "FreeNetCfg", "VARIANTS", "ModelInfo", "create_model", "list_models", "load_checkpoint", "model_info"]
