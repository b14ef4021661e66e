"""Tests of export.backends.coreml: conversion per precision/target, the static spec check, failures.

Prediction needs macOS, so on Linux the evidence is the saved spec read back without loading it:
an ML program of the iOS16 opset, every op registered for that opset, fp16 values throughout an
fp16 program (only the output cast is fp32), the manifest's I/O names and the embedded metadata.
On macOS the same tests also predict and check parity against eager PyTorch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from export.backends import coreml
from export.backends.base import ExportRequest, NotRunnableHere
from export.passes import prepare
from freenet import create_model

TOL = {"fp32": 1e-4, "fp16": 1e-2, "int8": 5e-2}  # max abs diff relative to the output scale


@pytest.fixture(scope="module")
def tiny() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(1, 3, 64, 64)
    gm, _ = prepare(create_model("freenet_tiny"), x)
    return gm, x


class SmallNet(nn.Module):
    """conv-bn-relu6 + a 4096-weight 1x1 conv (big enough for linear_quantize_weights) + pooled head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU6(), nn.Conv2d(64, 64, 1))
        self.head = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


def _export(model, x, tmp_path: Path, target: str, precision: str):
    meta = {"model": "test-model", "bundle_id": "b-test", "precision": precision}
    req = ExportRequest(model, x, tmp_path / f"{target}-{precision}.mlpackage", target, precision, metadata=meta)
    return coreml.export(req)


def _check_parity_or_not_runnable(res, model, x, target, precision):
    if sys.platform == "darwin":
        y = coreml.FORMAT.open(res.path, target).infer(x.numpy())
        ref = model(x).detach().numpy()
        assert np.abs(y - ref).max() / np.abs(ref).max() < TOL[precision]
    else:
        with pytest.raises(NotRunnableHere, match="needs macOS"):
            coreml.FORMAT.open(res.path, target).infer(x.numpy())


def test_freenet_tiny_fp16_is_a_valid_fp16_program(tiny, tmp_path):
    model, x = tiny
    res = _export(model, x, tmp_path, "coreml-all", "fp16")
    assert res.path.is_dir() and (res.path / "Manifest.json").is_file()  # an .mlpackage directory
    cov = res.coverage[0]
    assert cov.tool == "coremltools-spec" and cov.full is True and cov.unsupported == []
    d = cov.detail
    assert d["opset"] == "CoreML6" and d["specification_version"] == 7
    assert d["op_census"]["conv"] > 20 and d["op_census"]["slice_by_index"] > 0
    # fp16 throughout: the only fp32 value is the cast that produces the float32 output
    assert d["fp16_throughout"] and d["value_dtypes"]["FLOAT32"] == 1 and d["op_census"]["cast"] == 2
    assert d["inputs"] == [{"name": "input", "shape": [1, 3, 64, 64], "dtype": "FLOAT32"}]
    assert d["outputs"] == [{"name": "output", "shape": [1, 1000], "dtype": "FLOAT32"}]
    assert d["user_defined_metadata"]["bundle_id"] == "b-test"
    assert d["user_defined_metadata"]["compute_units"] == "ALL"
    assert res.min_deployment_target == "iOS16"
    _check_parity_or_not_runnable(res, model, x, "coreml-all", "fp16")


@pytest.mark.parametrize(
    ("target", "precision"),
    [("coreml-cpu-gpu", "fp32"), ("coreml-all", "int8"), ("coreml-cpu-gpu", "fp16")],
)
def test_precisions_and_compute_units(tmp_path, target, precision):
    torch.manual_seed(0)
    model, x = SmallNet().eval(), torch.randn(1, 3, 16, 16)
    res = _export(model, x, tmp_path, target, precision)
    cov = res.coverage[0]
    assert cov.full is True, cov.unsupported
    d = cov.detail
    assert d["user_defined_metadata"]["compute_units"] == coreml.COMPUTE_UNITS[target]
    assert [(t.name, t.dtype) for t in res.inputs + res.outputs] == [("input", "float32"), ("output", "float32")]
    if precision == "fp32":
        assert "FLOAT16" not in d["value_dtypes"] and d["weight_decoders"] == 0
    elif precision == "int8":
        assert d["op_census"]["constexpr_affine_dequantize"] >= 1  # the 64x64 1x1 conv weight
        assert any("weight-only" in n for n in res.notes)
        assert d["fp16_throughout"]
    else:
        assert d["fp16_throughout"] and d["weight_decoders"] == 0
    _check_parity_or_not_runnable(res, model, x, target, precision)


def test_spec_check_rejects_an_older_deployment_target(tmp_path):
    """constexpr_affine_dequantize (int8 weights) is an iOS16 op: an iOS15 check must flag it."""
    torch.manual_seed(0)
    res = _export(SmallNet().eval(), torch.randn(1, 3, 16, 16), tmp_path, "coreml-all", "int8")
    cov = coreml.verify_spec(res.path, "iOS15", "int8")
    assert cov.full is False
    assert "constexpr_affine_dequantize x1: not in the iOS15 opset" in cov.unsupported
    assert any("specification version 7 is newer than iOS15" in u for u in cov.unsupported)


def test_converter_failure_carries_the_reason(tmp_path):
    class CumMax(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cummax(x, dim=1)[0]

    with pytest.raises(RuntimeError, match="coremltools.convert failed: NotImplementedError: .*cummax"):
        _export(CumMax(), torch.randn(1, 3, 8, 8), tmp_path, "coreml-all", "fp16")
    assert not (tmp_path / "coreml-all-fp16.mlpackage").exists()


@pytest.mark.parametrize(
    ("target", "precision", "message"),
    [("coreml-ane", "fp16", "unknown Core ML target"), ("coreml-all", "int4", "does not offer 'int4'")],
)
def test_unsupported_requests_are_refused(tmp_path, target, precision, message):
    with pytest.raises(ValueError, match=message):
        _export(nn.Conv2d(3, 3, 1), torch.randn(1, 3, 8, 8), tmp_path, target, precision)
