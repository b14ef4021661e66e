"""Shared pytest set-up: import freenet first (it makes torchvision importable before timm)."""

import freenet  # noqa: F401
import torch

torch.manual_seed(0)
