"""Shared fixtures for the backend tests: a tiny network made of the ops FreeNet uses."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv-BN-ReLU6, dilated depthwise conv, channel slices + cat, global mean, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU6())
        self.dw = nn.Conv2d(8, 8, 3, 1, 2, dilation=2, groups=8)
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = torch.cat([self.dw(x[:, :8]), x[:, 8:]], dim=1)
        return self.head(x.mean((2, 3), keepdim=True).flatten(1))


@pytest.fixture(scope="module")
def tiny_net() -> tuple[nn.Module, torch.Tensor, np.ndarray]:
    """(model, input, eager output) with non-trivial BatchNorm statistics, so folding is exercised."""
    torch.manual_seed(0)
    model = TinyNet().eval()
    with torch.no_grad():
        model.stem[1].running_mean.uniform_(-0.5, 0.5)
        model.stem[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        ref = model(x).numpy()
    return model, x, ref
