"""The export orchestrator end to end: real converters, bundles, manifests, bad input, atomicity,
reuse, int8 on real images, passes that visibly matter, and every FreeNet variant mobile-GPU clean."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest

import freenet  # noqa: F401
from export import api
from export.api import ExportError, ExportPlan, export_bundle
from export.backends import onnx as onnx_backend
from export.manifest import Manifest, sha256_file

SIZE = 64  # every op of the 224 graph, at a fraction of the cost


def plan(tmp_path: Path, **kw) -> ExportPlan:
    base = dict(models=["freenet_tiny"], formats=["onnx"], precisions=["fp32"], out_dir=tmp_path / "bundle", input_size=SIZE)
    return ExportPlan(**{**base, **kw})


@pytest.fixture(scope="session")
def every_format(run_once) -> Path:
    """FreeNet-tiny in every format, default target and precision (10 artifacts), exported once per
    run (run_once: shared by the xdist workers); the tests below only read it."""

    def build(out: Path) -> None:
        m = export_bundle(plan(out, formats=["onnx", "tflite", "executorch", "coreml"], precisions=["fp32", "fp16"], out_dir=out))
        assert Manifest.load(out / "manifest.json") == m  # the manifest on disk is the one returned

    return run_once("tiny_every_format", build)


# The tests reading `every_format` run on one pytest-xdist worker, one after another: spread over
# two, the second waited idle (~60 s under `make test`) on the first one's single-threaded export.
shares_every_format = pytest.mark.xdist_group("tiny_every_format")


@shares_every_format
def test_bundle_is_complete_and_verified(every_format):
    bundle = every_format
    m = Manifest.load(bundle / "manifest.json")
    by = {(a.format, a.target, a.precision): a for a in m.artifacts}
    assert len(by) == 10  # 5 targets x 2 precisions
    for a in m.artifacts:
        assert a.status == "ok", (a.id, a.error)
        path = bundle / a.file
        assert path.exists()
        if path.is_file():
            assert sha256_file(path) == a.sha256 and path.stat().st_size == a.size_bytes
        assert a.inputs[0].shape[-1] == SIZE or a.inputs[0].shape[2] == SIZE
        assert a.inputs[0].mean and a.inputs[0].std
        assert [p.name for p in a.passes][:1] == ["fold_channel_permutation"] and a.passes[0].rewrites == 4
        assert a.tool_versions["torch"].startswith("2.13")
        assert a.params and a.macs
        ref = bundle / a.reference.input_file
        assert sha256_file(ref) == a.reference.input_sha256
        if a.parity.checked:
            assert a.parity.passed, (a.id, a.parity)
    # Core ML cannot predict on Linux: parity says so instead of pretending
    assert not by[("coreml", "coreml-cpu-gpu", "fp16")].parity.checked
    assert "macOS" in by[("coreml", "coreml-cpu-gpu", "fp16")].parity.note
    # metadata embedded natively in ONNX
    props = {p.key: p.value for p in onnx.load(bundle / by[("onnx", "onnxruntime-nnapi", "fp32")].file).metadata_props}
    assert props["freenet.model"] == "freenet_tiny" and json.loads(props["freenet.passes"])[0][0] == "fold_channel_permutation"
    # the reference output reproduces from the reference input
    out = np.fromfile(bundle / a.reference.output_file, dtype="<f4")
    assert out.shape == (1000,) and np.isfinite(out).all()


@shares_every_format
def test_passes_visibly_matter_for_the_mobile_gpu(tmp_path, every_format):
    """The same fp32 TFLite export with the default passes (from the shared bundle) and without any."""
    on = next(a for a in Manifest.load(every_format / "manifest.json").artifacts if a.format == "tflite" and a.precision == "fp32")
    assert [p.name for p in on.passes][:1] == ["fold_channel_permutation"]
    (off,) = export_bundle(plan(tmp_path, formats=["tflite"], passes=[], out_dir=tmp_path / "off")).artifacts
    assert (off.target, off.precision) == (on.target, "fp32") and "fold_channel_permutation" not in [p.name for p in off.passes]
    gpu = lambda a: next(c for c in a.coverage if "gpu" in c.delegate.lower() and c.partitions is not None)  # noqa: E731
    assert gpu(on).full is True
    assert gpu(off).full is False
    assert any("rank" in u.lower() or "dimensions" in u.lower() or "RESHAPE" in u for u in gpu(off).unsupported + [json.dumps(gpu(off).detail)])


@pytest.mark.parametrize(
    "kw, fragment",
    [
        (dict(formats=["onnx", "caffe"]), "valid: "),
        (dict(precisions=["fp8"]), "valid: "),
        (dict(targets=["tpu-v9"]), "valid: "),
        (dict(targets=["litert-gpu"], formats=["onnx", "tflite"], models=["nope"]), "unknown model"),
        (dict(formats=["onnx"], targets=["litert-gpu"]), "nothing to export|belong to none"),
        (dict(passes=["magic"]), "available"),
    ],
)
def test_bad_requests_name_the_valid_choices(tmp_path, kw, fragment):
    with pytest.raises((ExportError, ValueError), match=fragment):
        export_bundle(plan(tmp_path, **kw))


def test_existing_bundle_unwritable_dir_and_force(tmp_path):
    export_bundle(plan(tmp_path))
    with pytest.raises(ExportError, match="--force"):
        export_bundle(plan(tmp_path))
    m = export_bundle(plan(tmp_path, on_existing="overwrite"))
    assert m.artifacts[0].status == "ok"
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    try:
        if os.geteuid() == 0:  # root ignores permissions: use a path below a file instead
            (tmp_path / "afile").write_text("x")
            target = tmp_path / "afile" / "bundle"
        else:
            target = ro / "bundle"
        with pytest.raises(ExportError, match="cannot write|not a directory"):
            export_bundle(plan(tmp_path, out_dir=target))
    finally:
        os.chmod(ro, 0o700)


def test_one_failing_format_never_hides_the_others(tmp_path, monkeypatch):
    def broken(req):
        raise RuntimeError("converter exploded: op FancyOp is not supported")

    monkeypatch.setattr("export.backends.tflite.export", broken)
    m = export_bundle(plan(tmp_path, formats=["tflite", "onnx"]))
    status = {a.format: a for a in m.artifacts}
    assert status["tflite"].status == "failed" and "FancyOp" in status["tflite"].error
    assert status["onnx"].status == "ok"
    rows = api.summarize(m.artifacts)
    assert [r["reason"] for r in rows if r["format"] == "tflite"][0].startswith("RuntimeError")
    assert all(r["size_mb"] is None for r in rows if r["status"] == "failed")  # never 0 for a missing value


def test_interrupted_conversion_leaves_no_half_written_artifact(tmp_path, monkeypatch):
    real = onnx_backend.export

    def half_then_interrupt(req):
        req.out_path.write_bytes(b"\x08\x07half an onnx file")
        raise KeyboardInterrupt

    monkeypatch.setattr(onnx_backend, "export", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        export_bundle(plan(tmp_path))
    bundle = tmp_path / "bundle"
    assert not list(bundle.rglob("*.onnx"))
    assert not (bundle / ".staging").exists()
    monkeypatch.setattr(onnx_backend, "export", real)
    assert export_bundle(plan(tmp_path, on_existing="reuse")).artifacts[0].status == "ok"


def test_reuse_keeps_up_to_date_artifacts(tmp_path, monkeypatch):
    first = export_bundle(plan(tmp_path))
    calls = []
    monkeypatch.setattr(onnx_backend, "export", lambda req: calls.append(req) or (_ for _ in ()).throw(AssertionError("re-exported")))
    again = export_bundle(plan(tmp_path, on_existing="reuse"))
    assert not calls and again.artifacts == first.artifacts
    # a changed pass selection is not up to date
    monkeypatch.undo()
    changed = export_bundle(plan(tmp_path, on_existing="reuse", passes=["fold_channel_permutation"]))
    assert [p.name for p in changed.artifacts[0].passes] == ["fold_channel_permutation"]


def test_missing_converter_names_the_package(monkeypatch, tmp_path):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "coremltools" else real(name, *a))
    m = export_bundle(plan(tmp_path, formats=["coreml"], precisions=["fp16"]))
    assert m.artifacts[0].status == "failed"
    assert "pip install coremltools==9.0" in m.artifacts[0].error


@pytest.mark.slow
def test_int8_top1_agreement_on_real_images_with_a_trained_checkpoint(tmp_path):
    from freenet.train import TrainConfig, train

    res = train(TrainConfig("freenet_tiny", out_dir=tmp_path / "ck", epochs=2))
    m = export_bundle(plan(tmp_path, formats=["onnx", "tflite"], precisions=["int8"], checkpoint=res.checkpoint, input_size=None))
    for a in m.artifacts:
        assert a.status == "ok", a.error
        assert a.weights.startswith("checkpoint:")
        assert a.inputs[0].mean == [0.5, 0.5, 0.5]
        assert a.parity.images == 32 and a.parity.top1_agreement >= 0.8, (a.id, a.parity)
        assert a.parity.min_top1_agreement == 0.8 and a.parity.passed is True


def _graph_census(gm) -> tuple[dict[tuple[int, int], list], list]:
    """The exported graph (after the rewrite passes, as every converter receives it) split into
    {(stage, position): that FreeNet block's nodes} and the other nodes (stem, downsamples, head),
    each node as (op, target, args, kwargs, output shape/dtype) with the nodes it reads named by
    position inside its block, or by shape (weights, the block's input): two blocks with equal
    entries are the same ops on the same shapes, wired the same way."""
    import functools
    import re

    import torch
    from torch import fx

    owner = {}
    for n in gm.graph.nodes:
        stack = n.meta.get("nn_module_stack")
        m = re.match(r"stages\.(\d+)\.(\d+)(\.|$)", list(stack.values())[-1][0]) if stack else None
        if m and m.group(2) != "0":  # stages.s.0 is the stride-2 downsample, blocks follow
            owner[n] = (int(m.group(1)), int(m.group(2)))
    position = {n: i for key in set(owner.values()) for i, n in enumerate(k for k in owner if owner[k] == key)}

    def shape(n):
        v = n.meta.get("val")
        return (tuple(v.shape), str(v.dtype)) if isinstance(v, torch.Tensor) else None

    blocks: dict[tuple[int, int], list] = {}
    rest: list = []
    for n in gm.graph.nodes:
        key = owner.get(n)

        def ref(a, key=key):
            if not isinstance(a, fx.Node):
                return a
            if key is not None and owner.get(a) == key:
                return ("local", position[a])
            if a.op == "get_attr":
                return ("weight", tuple(functools.reduce(getattr, a.target.split("."), gm).shape))
            return ("reads", shape(a))

        entry = (n.op, str(n.target), fx.node.map_aggregate(n.args, ref), fx.node.map_aggregate(n.kwargs, ref), shape(n))
        if key is not None:
            blocks.setdefault(key, []).append(entry)
        elif n.op != "get_attr":
            rest.append(entry)
    return blocks, rest


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["freenet_s1", "freenet_s2", "freenet_s3", "freenet_s4"])
def test_every_freenet_variant_is_mobile_gpu_clean(tmp_path, variant):
    """TFLite runs GPU-only on the real delegate, ONNX is one NNAPI and one CoreML partition,
    ExecuTorch is one XNNPACK subgraph, Vulkan lowers fully (64x64 input: the same graph as 224).

    Each variant is exported with every stage cut to its first two blocks (its widths, branches and
    every other option unchanged). That is the full variant's graph with copies of one block left
    out, checked first below on the graph the converters receive: inside a stage every block is the
    same ops on the same shapes wired the same way, the kept blocks are those of the full graph, and
    everything around them (stem, downsamples, head) is identical. Two blocks keep every neighbour
    pair the full graph has (downsample -> block, block -> block, block -> downsample or head), and
    delegation is decided per op and per edge, so the verdicts carry over to the full depth; the
    four variants take 167 s instead of 270 s (one process, quiet machine)."""
    import torch

    from export.passes import prepare
    from freenet import VARIANTS, create_model

    depths = VARIANTS[variant].depths
    capped = tuple(min(d, 2) for d in depths)
    assert capped != depths and min(depths) >= 2
    x = torch.randn(1, 3, SIZE, SIZE)
    full_blocks, full_rest = _graph_census(prepare(create_model(variant).eval(), x)[0])
    cut_blocks, cut_rest = _graph_census(prepare(create_model(variant, depths=capped).eval(), x)[0])
    assert sorted(full_blocks) == [(s, b) for s, d in enumerate(depths) for b in range(1, d + 1)]
    for (s, b), nodes in full_blocks.items():
        assert nodes == full_blocks[(s, 1)], f"stage {s}: block {b} differs from the stage's first block"
    assert {k: full_blocks[k] for k in cut_blocks} == cut_blocks and len(cut_blocks) == 2 * len(depths)
    assert cut_rest == full_rest
    assert len({str(full_blocks[(s, 1)]) for s in range(len(depths))}) == len(depths)  # the census sees widths

    m = export_bundle(plan(tmp_path, models=[variant], formats=["tflite", "onnx", "executorch"], model_kwargs={"depths": capped},
                           targets=["litert-gpu", "onnxruntime-nnapi", "executorch-xnnpack", "executorch-vulkan"]))
    for a in m.artifacts:
        assert a.status == "ok", (a.id, a.error)
        assert a.model_options == {"depths": capped} or a.model_options == {"depths": list(capped)}, a.model_options
        assert a.coverage, a.id
        relevant = [c for c in a.coverage if c.delegate != "CoreML NeuralNetwork"]  # legacy format, recorded only
        for c in relevant:
            assert c.full, (a.id, c.delegate, c.unsupported, c.partitions)
            if c.partitions is not None:
                assert c.partitions == 1, (a.id, c.delegate, c.partitions)


def test_committed_manifest_json_schema_is_current():
    from export.manifest import json_schema

    committed = json.loads((Path(__file__).parents[2] / "export" / "schema" / "manifest.schema.json").read_text())
    assert committed == json_schema(), "regenerate: python -m export.manifest > export/schema/manifest.schema.json"


@shares_every_format
def test_coreml_package_ships_as_one_stored_zip(every_format):
    import zipfile

    (a,) = [a for a in Manifest.load(every_format / "manifest.json").artifacts if a.format == "coreml" and a.precision == "fp16"]
    assert a.status == "ok", a.error
    assert a.file.endswith(".mlpackage.zip")
    path = every_format / a.file
    assert sha256_file(path) == a.sha256
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
    assert any(n.endswith("Manifest.json") for n in names)


def test_equimo_reading_needs_the_documented_options_for_nnapi(tmp_path):
    """GELU (Erf) and GroupNorm (InstanceNormalization) split NNAPI; act=gelu_tanh + norm=batchnorm
    make the Equimo reading one NNAPI partition, at a measured, small numeric cost."""
    import torch

    from freenet import create_model

    def nnapi(kw, name):
        m = export_bundle(plan(tmp_path, out_dir=tmp_path / name, model_kwargs=kw))
        assert m.artifacts[0].status == "ok", m.artifacts[0].error
        return next(c for c in m.artifacts[0].coverage if c.delegate == "NNAPI")

    raw = nnapi({"equimo": True, "act": "gelu"}, "raw")  # the exact GELU, as the reading stood before
    assert not raw.full and {"ai.onnx:Erf", "ai.onnx:InstanceNormalization"} <= set(raw.unsupported)
    assert "ai.onnx:Erf" not in nnapi({"equimo": True}, "equimo").unsupported  # Equimo's own GELU is the tanh form
    fixed = nnapi({"equimo": True, "norm": "batchnorm"}, "fixed")
    assert fixed.full and fixed.partitions == 1
    # numeric cost of the tanh approximation, same weights
    exact, approx = create_model("freenet_tiny", equimo=True, act="gelu"), create_model("freenet_tiny", equimo=True)
    approx.load_state_dict(exact.state_dict())
    x = torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = exact(x), approx(x)
    assert ((a - b).abs().max() / a.abs().max()).item() < 2e-3


def test_any_timm_model_goes_through_the_same_pipeline(tmp_path):
    m = export_bundle(plan(tmp_path, models=["timm:resnet18"], formats=["onnx"]))
    a = m.artifacts[0]
    assert a.status == "ok", a.error
    assert a.model == "timm:resnet18" and a.parity.passed
    assert a.file.startswith("timm_resnet18/") and ":" not in a.reference.input_file
    assert any(p.name == "fold_batchnorm" and p.rewrites > 0 for p in a.passes)


def test_disk_full_is_reported_with_what_to_do(tmp_path, monkeypatch):
    import errno

    def full(req):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(onnx_backend, "export", full)
    a = export_bundle(plan(tmp_path)).artifacts[0]
    assert a.status == "failed" and "disk full" in a.error and "--reuse" in a.error


def test_fp16_parity_is_inconclusive_when_the_reference_underflows(tmp_path):
    """torchvision's MobileNetV2 at random init gives logits ~1e-9: fp16 cannot represent them, so
    the check must say 'inconclusive', not pass and not blame the artifact."""
    m = export_bundle(plan(tmp_path, models=["mobilenet_v2"], formats=["onnx"], precisions=["fp16"]))
    a = m.artifacts[0]
    assert a.status == "ok" and a.parity.checked and a.parity.passed is None
    assert "inconclusive" in a.parity.note and "--checkpoint" in a.parity.note
    assert "inconclusive" in api.summarize(m.artifacts)[0]["parity"]


def test_wrong_numerics_fail_the_artifact(tmp_path, monkeypatch):
    """An artifact whose output drifts beyond the tolerance is failed, not shipped as ok."""
    real_run = onnx_backend.OnnxSession.run
    monkeypatch.setattr(onnx_backend.OnnxSession, "run", lambda self, x: real_run(self, x) * 1.01)
    a = export_bundle(plan(tmp_path)).artifacts[0]
    assert a.status == "failed" and a.parity.passed is False
    assert "exceeds tolerance" in a.error
    assert 5e-3 < a.parity.rel_diff < 2e-2


def test_int8_artifact_that_disagrees_with_eager_is_failed(tmp_path, monkeypatch):
    """Top-1 agreement below the manifest's rule fails the artifact (it used to be recorded and
    ignored: an int8 artifact agreeing on 0% of images shipped as ok)."""
    real_run = onnx_backend.OnnxSession.run
    monkeypatch.setattr(onnx_backend.OnnxSession, "run", lambda self, x: -real_run(self, x))  # argmax -> argmin
    a = export_bundle(plan(tmp_path, precisions=["int8"], agreement_images=8)).artifacts[0]
    assert a.parity.top1_agreement < a.parity.min_top1_agreement == 0.8
    assert a.status == "failed" and a.parity.passed is False
    assert "below the required 80%" in a.error and "--checkpoint" in a.error
    row = api.summarize([a])[0]
    assert row["status"] == "failed" and row["parity"].endswith("FAIL")
