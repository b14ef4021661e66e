"""The format objects are the one source of format facts: the planner refuses what a backend
refuses, parity opens one session per artifact, the docs' table is theirs, converter chatter goes
to a per-artifact log, and no other module repeats a target's name."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

import freenet  # noqa: F401
from export.api import ExportError, ExportPlan, export_bundle
from export.backends import FORMATS, format_table
from export.backends import onnx as onnx_backend
from export.backends.base import Format, Session

ROOT = Path(__file__).parents[2]


def plan(tmp_path: Path, **kw) -> ExportPlan:
    base = dict(models=["freenet_tiny"], formats=["onnx"], precisions=["fp32"], out_dir=tmp_path / "bundle", input_size=64)
    return ExportPlan(**{**base, **kw})


def test_registry_holds_one_object_per_format():
    assert list(FORMATS) == ["onnx", "coreml", "tflite", "executorch"]
    for name, fmt in FORMATS.items():
        assert isinstance(fmt, Format) and fmt.name == name and fmt.extension.startswith(".")
        assert set(fmt.default_targets) <= set(fmt.target_names) and fmt.requires and "torch" in fmt.tool_packages


def test_planner_refuses_what_the_backend_refuses(tmp_path):
    """ExecuTorch's Vulkan target offers no int8 (its backend raises); the planner used to accept it."""
    with pytest.raises(ValueError, match="does not offer"):
        FORMATS["executorch"].check("executorch-vulkan", "int8")
    with pytest.raises(ExportError, match="executorch-vulkan does not offer"):
        plan(tmp_path, formats=["executorch"], targets=["executorch-vulkan"], precisions=["int8"]).jobs()
    # from the defaults, the combination is left out rather than failing the plan
    jobs = plan(tmp_path, formats=["executorch"], precisions=["fp32", "int8"]).jobs()
    assert ("freenet_tiny", "executorch", "executorch-vulkan", "fp32") in jobs
    assert ("freenet_tiny", "executorch", "executorch-vulkan", "int8") not in jobs
    assert ("freenet_tiny", "executorch", "executorch-xnnpack", "int8") in jobs


def test_int8_parity_opens_one_session(tmp_path, monkeypatch):
    """The 32-image agreement loop used to load the artifact once per image."""
    opened: list[str] = []
    real_open = onnx_backend.OnnxFormat.open

    def counting_open(self, path, target, threads=1, accelerator=None) -> Session:
        opened.append(str(path))
        return real_open(self, path, target, threads, accelerator)

    monkeypatch.setattr(onnx_backend.OnnxFormat, "open", counting_open)
    (a,) = export_bundle(plan(tmp_path, precisions=["int8"], agreement_images=8)).artifacts
    assert a.parity.checked and a.parity.images == 8
    assert len(opened) == 1


def test_docs_format_table_is_the_objects():
    doc = (ROOT / "docs" / "export-onnx-tflite.md").read_text()
    block = re.search(r"<!-- format-table:begin -->\n(.*?)\n<!-- format-table:end -->", doc, re.S)
    assert block, "docs/export-onnx-tflite.md lost its generated format table"
    assert block.group(1) == format_table(), "regenerate the table: python -c 'from export.backends import format_table; print(format_table())'"


def test_each_target_is_named_in_one_module():
    """grep finds a target's facts in its format module only (runtimes may name the one target
    they take); the report's delegate cell reads each target's `delegate_label`."""
    allowed = {"litert-gpu": {"device_bench/runtimes/litert_gpu_emulated.py"}}
    skip: set[str] = set()
    sources = [p for d in ("export", "device_bench", "freenet") for p in (ROOT / d).rglob("*.py")]
    for fmt in FORMATS.values():
        home = f"export/backends/{fmt.name}.py"
        for t in fmt.target_names:
            found = {str(p.relative_to(ROOT)) for p in sources if f'"{t}"' in p.read_text()} - skip
            assert found <= {home} | allowed.get(t, set()), (t, found)


def test_the_parallel_export_asks_the_format_objects():
    """The pool's longest-first order and its one-worker units come from each format object's
    `export_cost` and `memoises`; export/parallel.py names no format."""
    from export.parallel import Job, job_cost

    text = (ROOT / "export" / "parallel.py").read_text()
    assert not [f for f in FORMATS if f'"{f}"' in text]
    for fmt in FORMATS.values():
        assert set(fmt.export_cost) == set(fmt.precisions), fmt.name
        for p, cost in fmt.export_cost.items():
            assert job_cost(Job("m", fmt.name, fmt.default_targets[0], p, None, "b", None, None, None)) == cost
    assert {f.name for f in FORMATS.values() if f.memoises} == {"onnx", "tflite"}


def test_converter_output_goes_to_the_artifacts_log(tmp_path, monkeypatch, capfd):
    """Native writes (fd 1/2), Python prints, warnings and logging of a converter land in
    BUNDLE/logs/<artifact>.log, not on the console; a failure's status row names that file."""
    import logging
    import os

    from export import api

    real = onnx_backend.export

    def chatty(req):
        os.write(1, b"native stdout chatter\n")
        os.write(2, b"native stderr chatter\n")
        print("python print chatter")
        warnings.warn("converted in training mode (test)", UserWarning, stacklevel=1)
        logging.getLogger("some.converter").warning("logging chatter")
        return real(req)

    monkeypatch.setattr(onnx_backend, "export", chatty)
    (a,) = export_bundle(plan(tmp_path)).artifacts
    assert a.status == "ok" and a.log_file == "logs/freenet_tiny.onnx.onnxruntime-nnapi.fp32.log"
    console = capfd.readouterr()
    assert "chatter" not in console.out + console.err
    log = (tmp_path / "bundle" / a.log_file).read_text()
    for line in ("native stdout", "native stderr", "python print", "converted in training mode (test)", "logging chatter"):
        assert line in log, (line, log[-2000:])

    def broken(req):
        os.write(2, b"the converter's last words\n")
        raise RuntimeError("converter exploded")

    monkeypatch.setattr(onnx_backend, "export", broken)
    (a,) = export_bundle(plan(tmp_path, on_existing="overwrite")).artifacts
    assert a.status == "failed" and "the converter's last words" in (tmp_path / "bundle" / a.log_file).read_text()
    assert api.summarize([a])[0]["reason"].endswith(f"(log: {a.log_file})")


def test_litert_torch_converts_an_eval_model(tmp_path):
    """litert-torch warned 'converted in training mode' for every artifact: ExportedProgram.module()
    and the to_channel_last_io wrapper are new modules with training=True (and the exported graph
    refuses .eval()). The converter's log must show the conversion but no such warning."""
    (a,) = export_bundle(plan(tmp_path, formats=["tflite"], targets=["litert-cpu"])).artifacts
    assert a.status == "ok", a.error
    log = (tmp_path / "bundle" / a.log_file).read_text()
    assert "LiteRT-Torch Convert" in log  # the converter's own output did land here
    assert "training mode" not in log
