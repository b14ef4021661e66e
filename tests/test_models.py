"""Models and registry: shapes, gradients, export, declared features, interpretations, budgets."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

import freenet
from freenet import create_model, list_models, model_info
from freenet.freenet import VARIANTS, FreeNetCfg
from freenet.layers import FreeNetBlock, S2Mixer, fit_dilation, same_padding
from freenet.profile import count_macs, count_params

FREENETS = sorted(VARIANTS)
SMALL = (3, 64, 64)


@pytest.mark.parametrize("name", list_models())
def test_forward_shape_and_finite(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=7)
    with torch.no_grad():
        y = model(torch.randn(2, *SMALL))
    assert y.shape == (2, 7)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", FREENETS)
def test_backward_reaches_every_parameter(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5).train()
    model(torch.randn(2, *SMALL)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    zero = [n for n, p in model.named_parameters() if p.grad.abs().sum() == 0]
    assert not zero, f"parameters with identically zero gradient: {zero[:5]}"


@pytest.mark.parametrize("name", FREENETS)
def test_torch_export(name):
    model = create_model(name)
    ep = torch.export.export(model, (torch.randn(1, *SMALL),))
    out = ep.module()(torch.ones(1, *SMALL))
    with torch.no_grad():
        torch.testing.assert_close(out, model(torch.ones(1, *SMALL)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FREENETS)
def test_timm_interface_and_features(name):
    model = timm.create_model(name)  # registered in timm by `import freenet`
    assert isinstance(model, freenet.FreeNet)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        feats = model.forward_intermediates(x)
        assert [f.shape[1] for f in feats] == [fi["num_chs"] for fi in model.feature_info]
        for f, fi in zip(feats, model.feature_info):
            assert (x.shape[2] // fi["reduction"], x.shape[3] // fi["reduction"]) == tuple(f.shape[2:])
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pre.shape == (1, model.num_features)
        fo = timm.create_model(name, features_only=True)
        assert [t.shape for t in fo(x)] == [f.shape for f in feats]


def test_freenet_is_dense_by_default():
    model = create_model("freenet_s2")
    mixers = [m for m in model.modules() if isinstance(m, S2Mixer)]
    assert len(mixers) == sum(VARIANTS["freenet_s2"].depths)
    for m in mixers:
        assert m.mode == "dense" and m.groups == 4
        assert all(c.groups == 1 for c in m.convs)
    # no depthwise conv anywhere in the dense FreeNet
    assert all(c.groups == 1 for c in model.modules() if isinstance(c, nn.Conv2d))


def test_equimo_mode_matches_its_description():
    model = create_model("freenet_s1", equimo=True)
    blocks = [m for m in model.modules() if isinstance(m, FreeNetBlock)]
    assert blocks
    for b in blocks:
        dim = b.mixer.dim
        assert b.mixer.mode == "equimo" and b.mixer.groups == 1
        assert [(c.kernel_size[0], c.dilation[0]) for c in b.mixer.convs] == [(5, 2), (7, 2)]
        for c in b.mixer.convs:  # depthwise, each branch c/8 of the channels
            assert c.in_channels == c.out_channels == c.groups == dim // 8
        # GroupNorm with the largest power-of-two group count <= 32 that divides the width
        assert isinstance(b.norm, nn.GroupNorm)
        assert b.norm.num_groups == max(g for g in (1, 2, 4, 8, 16, 32) if dim % g == 0), (dim, b.norm.num_groups)
        # Equimo's activation is jax.nn.gelu, tanh-approximated by default: in the FFN and in the neck
        gelus = [m for m in b.ffn.modules() if isinstance(m, nn.GELU)]
        assert len(gelus) >= 2 and all(g.approximate == "tanh" for g in gelus)
        # padding keeps the spatial size
        x = torch.randn(1, dim, 9, 11)
        assert b.mixer(x).shape == x.shape


def test_mixer_samples_one_segment_per_group_and_passes_the_rest():
    torch.manual_seed(0)
    m = S2Mixer(32, branches=((3, 1), (3, 2)), mix_ratio=0.125, groups=4)
    assert m.segment == 1 and m.sampled_channels() == [[0, 8, 16, 24], [1, 9, 17, 25]]
    x = torch.randn(1, 32, 8, 8)
    y = m(x)
    sampled = {c for b in m.sampled_channels() for c in b}
    untouched = [c for c in range(32) if c not in sampled]
    torch.testing.assert_close(y[:, untouched], x[:, untouched])
    # branch 0 output equals its conv applied to exactly the sampled channels
    torch.testing.assert_close(y[:, [0, 8, 16, 24]], m.convs[0](x[:, [0, 8, 16, 24]]))
    torch.testing.assert_close(y[:, [1, 9, 17, 25]], m.convs[1](x[:, [1, 9, 17, 25]]))


def test_contiguous_layout_is_the_permuted_grouped_mixer():
    torch.manual_seed(0)
    m = S2Mixer(48, groups=4, mix_ratio=0.125)
    c = S2Mixer(48, groups=4, mix_ratio=0.125, layout="contiguous")
    c.load_state_dict(m.state_dict())
    perm = torch.tensor(m.contiguous_permutation())
    x = torch.randn(2, 48, 12, 12)
    torch.testing.assert_close(c(x[:, perm]), m(x)[:, perm])


def test_dilation_schedule_fits_feature_maps():
    branches = FreeNetCfg(depths=(1, 1, 1, 1), base_width=32).stage_branches()
    assert branches[0] == ((5, 2), (7, 3))  # 56x56
    assert branches[3] == ((5, 1), (7, 1))  # 7x7
    assert fit_dilation(7, 3, 14) == 2
    fixed = FreeNetCfg(depths=(1, 1, 1, 1), base_width=32, dilation_schedule="fixed").stage_branches()
    assert all(b == ((5, 2), (7, 3)) for b in fixed)


def test_freenet_s2_budget_against_starnet_s4():
    f, s = create_model("freenet_s2"), create_model("starnet_s4")
    pr = count_params(f) / count_params(s)
    mr = count_macs(f) / count_macs(s)
    assert 0.85 <= pr <= 1.15, pr
    assert 0.85 <= mr <= 1.15, mr


@pytest.mark.parametrize(
    "name, params",
    [("starnet_s1", 2.87e6), ("starnet_s2", 3.68e6), ("starnet_s3", 5.75e6), ("starnet_s4", 7.48e6)],
)
def test_starnet_param_counts(name, params):
    assert abs(count_params(create_model(name)) - params) <= 0.01e6


def test_mobilenet_v2_param_count_and_macs():
    m = create_model("mobilenet_v2")
    assert count_params(m) == 3_504_872
    assert abs(count_macs(m) / 1e6 - 300.8) < 1.0  # torchvision's metadata says 0.301 GMACs


def test_timm_namespace():
    m = create_model("timm:resnet18", num_classes=3)
    assert m(torch.randn(1, 3, 32, 32)).shape == (1, 3)
    assert model_info("timm:resnet18").source == "timm"


@pytest.mark.parametrize("bad, hint", [("freenet_s5", "freenet_s"), ("starnet_4", "starnet_s4"), ("timm:resnet_18", "resnet18")])
def test_unknown_model_lists_close_matches(bad, hint):
    with pytest.raises(ValueError, match=hint):
        create_model(bad)


@pytest.mark.parametrize("shape, fragment", [((1, 1, 64, 64), r"\(N, 3, H, W\)"), ((1, 3, 16, 16), "too small"), ((3, 64, 64), r"\(N, 3")])
def test_wrong_input_names_expected_shape(shape, fragment):
    with pytest.raises(ValueError, match=fragment):
        create_model("freenet_tiny")(torch.randn(*shape))


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(dim=30, groups=4), "must divide"),
        (dict(dim=32, groups=4, mix_ratio=0.5, branches=((3, 1), (3, 1), (3, 1))), "do not fit"),
        (dict(dim=32, branches=((4, 1),)), "even span"),
        (dict(dim=32, branches=()), "at least one"),
        (dict(dim=32, mode="sparse"), "mode"),
    ],
)
def test_invalid_mixer_options(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        S2Mixer(**kwargs)


def test_same_padding_rejects_even_span():
    assert same_padding(5, 2) == 4
    with pytest.raises(ValueError):
        same_padding(2, 1)


def test_invalid_variant_overrides():
    with pytest.raises(ValueError, match="dilation_schedule"):
        create_model("freenet_tiny", dilation_schedule="dynamic")
    with pytest.raises(ValueError, match="activation"):
        create_model("freenet_tiny", act="swish42")
    with pytest.raises(ValueError, match="norm"):
        create_model("freenet_tiny", norm="layernorm")


def test_config_hash_changes_with_config():
    """The hash identifies an architecture: the same config built another way hashes the same, and
    a change of ANY field (eager PyTorch refuses a bundle whose hash differs) changes it."""
    import dataclasses

    a = VARIANTS["freenet_s2"]
    assert create_model("freenet_s2").cfg.config_hash() == a.config_hash()
    assert create_model("freenet_s2", act="gelu").cfg.config_hash() != a.config_hash()
    changed = {"depths": (1, 2, 3, 4), "base_width": a.base_width * 2, "stem_width": a.stem_width + 8,
               "branches": ((3, 1), (5, 1)), "dilation_schedule": "fixed", "reference_size": 256, "mix_ratio": 0.25,
               "groups": a.groups * 2, "mixer_mode": "equimo", "norm": "groupnorm", "act": "gelu", "expansion": a.expansion + 1,
               "neck_reduction": a.neck_reduction * 2}
    assert set(changed) == {f.name for f in dataclasses.fields(FreeNetCfg)}  # a new field must be added here
    hashes = {name: dataclasses.replace(a, **{name: value}).config_hash() for name, value in changed.items()}
    assert not [name for name, h in hashes.items() if h == a.config_hash()], "fields the hash ignores"
    assert len(set(hashes.values())) == len(hashes), hashes


def test_checkpoint_roundtrip(tmp_path):
    m = create_model("freenet_tiny", num_classes=4)
    torch.save({"model": m.state_dict(), "meta": {"model": "freenet_tiny", "model_kwargs": {"num_classes": 4}}}, tmp_path / "c.ckpt")
    r = create_model("freenet_tiny", checkpoint=tmp_path / "c.ckpt")
    x = torch.randn(1, *SMALL)
    with torch.no_grad():
        torch.testing.assert_close(r(x), m.eval()(x))
    with pytest.raises(ValueError, match="trained for"):
        create_model("freenet_s1", checkpoint=tmp_path / "c.ckpt")
    with pytest.raises(FileNotFoundError):
        create_model("freenet_tiny", checkpoint=tmp_path / "missing.ckpt")


def test_equimo_reading_of_s2_is_registered_and_outside_the_budget():
    """freenet_s2_equimo: our S2 widths/depths with Equimo's blocks, the second reading of the
    comparison suite; its depthwise mixer makes it much cheaper than StarNet-S4 (not within ±15%)."""
    e, ours, s4 = create_model("freenet_s2_equimo"), create_model("freenet_s2"), create_model("starnet_s4")
    assert e.cfg == create_model("freenet_s2", equimo=True).cfg and e.cfg.widths == ours.cfg.widths
    assert e.cfg.depths == ours.cfg.depths and e.cfg.mixer_mode == "equimo"
    macs = count_macs(e) / count_macs(s4)
    assert not 0.85 <= macs <= 1.15, macs
