"""Every rewrite pass: op counts before/after, a no-match case, exact numerics, a valid graph that
re-exports, and idempotence (STYLE.md rule 4)."""

from __future__ import annotations

import collections
import copy

import pytest
import torch
from torch import nn

import freenet  # noqa: F401
from export.passes import (
    ALL_PASSES,
    RewritePass,
    decompose_gelu_tanh,
    decompose_group_norm,
    decompose_hardswish,
    fold_batchnorm,
    fold_channel_permutation,
    mean_keepdim,
    merge_branch_convs,
    prepare,
    split_to_slice,
)
from freenet import create_model
from freenet.layers import S2Mixer

X = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def ops(gm) -> collections.Counter:
    return collections.Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function")


def exported(model: nn.Module, x: torch.Tensor = X):
    with torch.no_grad():
        return torch.export.export(model.eval(), (x,)).module()


def assert_parity_and_valid(gm, ref: torch.Tensor, x: torch.Tensor = X, tol: float = 1e-5):
    gm.graph.lint()
    with torch.no_grad():
        out = gm(x)
        torch.testing.assert_close(out, ref, rtol=0, atol=tol * ref.abs().max().item())
        torch.export.export(gm, (x,))  # still a valid, exportable graph


class Splitter(nn.Module):
    def forward(self, x):
        a, b = torch.split(x, [1, 2], dim=1)
        c, d = x.chunk(2, dim=2)
        return torch.cat([a * 2, b], 1).sum() + (c - d).sum()


class Pools(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        return self.pool(x).flatten(1) + x.mean((2, 3))


class ConvBNs(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.b2, self.c2 = nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)
        for bn in (self.b1, self.b2):  # non-trivial statistics
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.data.uniform_(0.5, 2)
            bn.bias.data.uniform_(-1, 1)

    def forward(self, x):
        return self.c2(self.b2(torch.relu(self.b1(self.c1(x)))))


class BNHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.bn, self.drop, self.fc = nn.BatchNorm2d(3), nn.Dropout(0.1), nn.Linear(3, 5)
        self.bn.running_mean.uniform_(-1, 1)
        self.bn.running_var.uniform_(0.5, 2)

    def forward(self, x):
        return self.fc(self.drop(self.bn(x).mean((2, 3))))


GRAPH_CASES = [
    # pass, model, ops that must disappear, op that must appear
    (split_to_slice, Splitter, {"aten.split_with_sizes.default", "aten.chunk.default"}, "aten.slice.Tensor"),
    (mean_keepdim, Pools, {"aten.adaptive_avg_pool2d.default"}, "aten.mean.dim"),
    (decompose_hardswish, lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.Hardswish(), nn.Hardsigmoid()), {"aten.hardswish.default", "aten.hardsigmoid.default"}, "aten.clamp.default"),
    (decompose_gelu_tanh, lambda: nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU(approximate="tanh")), {"aten.gelu.default"}, "aten.tanh.default"),
    (decompose_group_norm, lambda: nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(1, 8), nn.Conv2d(8, 8, 1), nn.GroupNorm(4, 8)), {"aten.group_norm.default"}, "aten.rsqrt.default"),
    (fold_batchnorm, ConvBNs, {"aten.batch_norm.default"}, "aten.conv2d.default"),
    (fold_batchnorm, BNHead, {"aten.batch_norm.default"}, "aten.linear.default"),
]


@pytest.mark.parametrize("pass_, make, gone, present", GRAPH_CASES, ids=[f"{c[0].NAME}-{i}" for i, c in enumerate(GRAPH_CASES)])
def test_graph_pass(pass_, make, gone, present):
    torch.manual_seed(0)
    model = make().eval()
    with torch.no_grad():
        ref = model(X)
    gm = exported(model)
    before = ops(gm)
    assert gone & set(before), f"test model lacks the pattern: {before}"
    assert pass_.check(gm) is None  # it says it will match...
    n = pass_.run(gm)
    after = ops(gm)
    assert n > 0
    assert not (gone & set(after)), after
    assert after[present] >= 1
    assert_parity_and_valid(gm, ref)
    assert pass_.run(gm) == 0  # idempotent
    assert isinstance(pass_.check(gm), str)  # ...and, once applied, says why it no longer does
    assert pass_.BEFORE and "->" in pass_.BEFORE


NO_MATCH_REASONS = {
    split_to_slice: "no split",
    mean_keepdim: "no adaptive_avg_pool2d",
    decompose_hardswish: "no hardswish",
    decompose_gelu_tanh: "no gelu",
    decompose_group_norm: "no group_norm",
    fold_batchnorm: "no batch_norm",
}


@pytest.mark.parametrize("pass_", [split_to_slice, mean_keepdim, decompose_hardswish, decompose_gelu_tanh, decompose_group_norm, fold_batchnorm], ids=lambda p: p.NAME)
def test_graph_pass_no_match(pass_):
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU())
    gm = exported(model)
    before = ops(gm)
    assert NO_MATCH_REASONS[pass_] in pass_.check(gm)
    assert pass_.run(gm) == 0
    assert ops(gm) == before


def test_decompose_gelu_tanh_leaves_the_erf_gelu_alone():
    # the erf GELU is a different function: spelling it with tanh would change the model
    gm = exported(nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU(), nn.GELU(approximate="tanh")))
    assert decompose_gelu_tanh.run(gm) == 1
    assert ops(gm)["aten.gelu.default"] == 1
    assert "only the erf gelu" in decompose_gelu_tanh.check(gm)


def test_decompose_gelu_tanh_is_exact_where_the_two_gelus_differ_most():
    # |gelu_erf - gelu_tanh| peaks at 4.7e-4 near |x| = 2.7: the rewrite must match the tanh GELU there
    x = torch.linspace(-6, 6, 4802).reshape(1, 1, 49, 98)
    model = nn.GELU(approximate="tanh")
    gm = exported(nn.Sequential(model), x)
    decompose_gelu_tanh.run(gm)
    with torch.no_grad():
        torch.testing.assert_close(gm(x), model(x), rtol=0, atol=1e-6)


def test_every_pass_follows_the_one_contract():
    for p in ALL_PASSES.values():
        assert isinstance(p, RewritePass), p.NAME
        assert p.KIND in ("module", "graph") and "->" in p.BEFORE


def _freenet(name="freenet_tiny", **kw):
    torch.manual_seed(0)
    m = create_model(name, **kw)
    for mod in m.modules():  # random BN statistics so permutation mistakes show numerically
        if isinstance(mod, nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def test_fold_channel_permutation():
    model = _freenet()
    with torch.no_grad():
        ref = model(X)
    before = ops(exported(model))
    m = copy.deepcopy(model)
    n = fold_channel_permutation.run(m)
    assert n == sum(m.cfg.depths)
    assert all(s.layout == "contiguous" for s in m.modules() if isinstance(s, S2Mixer))
    after = ops(exported(m))
    # the 5-D reshapes around every mixer are gone
    assert after["aten.reshape.default"] + after["aten.view.default"] < before["aten.reshape.default"] + before["aten.view.default"]
    assert all(n.meta["val"].dim() <= 4 for n in exported(m).graph.nodes if n.op == "call_function" and hasattr(n.meta.get("val"), "dim"))
    assert_parity_and_valid(exported(m), ref)
    assert fold_channel_permutation.run(m) == 0


def test_fold_channel_permutation_no_match_and_refusal():
    starnet = create_model("starnet_s050")
    assert "no FreeNet" in fold_channel_permutation.check(starnet)
    assert fold_channel_permutation.run(starnet) == 0
    dense_gn = create_model("freenet_tiny", norm="groupnorm")
    assert "GroupNorm" in fold_channel_permutation.check(dense_gn)
    with pytest.raises(ValueError, match="GroupNorm"):
        fold_channel_permutation.run(dense_gn)


@pytest.mark.parametrize("kw", [{}, {"equimo": True}], ids=["dense", "equimo"])
def test_to_contiguous_layout_is_the_models_own_exact_rewrite(kw):
    """The permutation is a method of the model (like timm's fuse()): exact logits, every mixer
    contiguous, nothing left to do on a second call; the pass merely delegates to it."""
    model = _freenet(**kw)
    with torch.no_grad():
        ref = model(X)
    m = copy.deepcopy(model)
    grouped = sum(1 for s in m.modules() if isinstance(s, S2Mixer) and s.layout == "grouped" and s.groups > 1)
    assert m.contiguous_layout_refusal() is None
    assert m.to_contiguous_layout() == grouped
    with torch.no_grad():
        torch.testing.assert_close(m(X), ref, rtol=0, atol=1e-5 * ref.abs().max().item())
    assert m.to_contiguous_layout() == 0
    assert "already" in fold_channel_permutation.check(m) or grouped == 0


def test_prepare_records_why_a_pass_did_not_match():
    _, results = prepare(create_model("starnet_s050"), X[:1], ["fold_channel_permutation", "decompose_hardswish"])
    by = {r.name: r for r in results}
    assert by["fold_channel_permutation"].rewrites == 0 and "no FreeNet" in by["fold_channel_permutation"].reason
    assert "no hardswish" in by["decompose_hardswish"].reason


def test_prepared_graph_is_in_eval_mode():
    """ExportedProgram.module() returns training=True; converters then warned 'converted in training
    mode' for every artifact. prepare() must hand over a graph that says it is in eval mode."""
    gm, _ = prepare(create_model("freenet_tiny"), X[:1], [])
    assert not any(m.training for m in gm.modules())


@pytest.mark.parametrize("kw", [{}, {"equimo": True}], ids=["dense", "equimo"])
def test_merge_branch_convs(kw):
    model = _freenet("freenet_s1", **kw)
    with torch.no_grad():
        ref = model(X)
    m = copy.deepcopy(model)
    fold_channel_permutation.run(m)
    convs_before = ops(exported(m))["aten.conv2d.default"]
    n = merge_branch_convs.run(m)
    assert n > 0
    assert ops(exported(m))["aten.conv2d.default"] == convs_before - n
    assert_parity_and_valid(exported(m), ref)
    assert merge_branch_convs.run(m) == 0


def test_merge_branch_convs_no_match_on_grouped_layout():
    assert merge_branch_convs.run(_freenet()) == 0  # grouped layout: not merged


@pytest.mark.parametrize("name", ["freenet_s2", "mobilenet_v3_small", "starnet_s1"])
def test_prepare_all_passes_exact(name):
    model = _freenet(name) if name.startswith("freenet") else create_model(name)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
    gm, results = prepare(model, x, list(ALL_PASSES))
    assert [r.name for r in results] == list(ALL_PASSES)
    assert_parity_and_valid(gm, ref, x)


def test_prepare_rejects_unknown_pass():
    with pytest.raises(ValueError, match="available"):
        prepare(create_model("freenet_tiny"), X, ["fold_everything"])
