"""Export orchestration: models -> rewrite passes -> every format -> verified model bundle.

This module owns the bundle layout and the flow; the formats live in export/backends (one module
each) and the rewrites in export/passes. For every requested model x format x target x precision it
converts in a staging directory, checks parity against eager PyTorch on a fixed reference input
(and top-1 agreement on real images for int8), records delegate coverage, and only then moves the
artifact into the bundle and the manifest (written atomically after every artifact). A failure in
one format is recorded with its reason and never stops the others.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from freenet import create_model, model_info
from freenet.registry import read_checkpoint_meta
from freenet.freenet import FreeNet
from freenet.profile import count_macs, count_params

from .backends import FORMATS, all_targets, load_format
from .console import capture_output
from .backends.base import BackendResult, ExportRequest, Format, NotRunnableHere, Session
from .manifest import (
    FP16_MIN_NORMAL,
    INT8_MIN_TOP1_AGREEMENT,
    TOLERANCE,
    Artifact,
    Manifest,
    Parity,
    PassRecord,
    Reference,
    TensorSpec,
    sha256_file,
)
from .passes import DEFAULT_PASSES, GRAPH_PASSES, MODULE_PASSES, PassResult, prepare, validate
from .steps import recording, step
from .steps import tag as steps_tag



class ExportError(Exception):
    """A problem with the request itself (bad names, unusable output directory)."""


@dataclass
class ExportPlan:
    models: list[str]
    formats: list[str] = field(default_factory=lambda: list(FORMATS))
    precisions: list[str] = field(default_factory=lambda: ["fp32", "fp16"])
    targets: list[str] | None = None  # None: each format's default_targets
    passes: list[str] = field(default_factory=lambda: list(DEFAULT_PASSES))
    out_dir: Path = Path("bundles/default")
    on_existing: str = "error"  # "error" | "overwrite" | "reuse"
    checkpoint: Path | None = None
    input_size: int | None = None
    seed: int = 0
    # TFLite NHWC input/output: removes the only TRANSPOSE of every graph checked, with unchanged GPU
    # acceptance and parity (docs/export-onnx-tflite.md), and matches Android image buffers
    channels_last_io: bool = True
    agreement_images: int = 32
    # constructor options for every model, e.g. {"equimo": True, "act": "gelu_tanh"} (docs/freenet.md)
    model_kwargs: dict = field(default_factory=dict)

    def jobs(self) -> list[tuple[str, str, str, str]]:
        """(model, format, target, precision) in execution order, after validating every name.

        A target x precision its format does not offer is refused when the user named the target,
        and left out when it came from a format's defaults (int8 asks no Vulkan .pte of ExecuTorch).
        """
        bad_formats = [f for f in self.formats if f not in FORMATS]
        if bad_formats:
            raise ExportError(f"unknown format(s) {bad_formats}; valid: {list(FORMATS)}")
        all_precisions = sorted({p for f in FORMATS.values() for p in f.precisions})
        bad_prec = [p for p in self.precisions if p not in all_precisions]
        if bad_prec:
            raise ExportError(f"unknown precision(s) {bad_prec}; valid: {all_precisions}")
        if self.on_existing not in ("error", "overwrite", "reuse"):
            raise ExportError("on_existing must be 'error', 'overwrite' or 'reuse'")
        for m in self.models:
            try:
                model_info(m)
            except ValueError as e:
                raise ExportError(str(e)) from None
        validate(self.passes)
        if self.targets:
            owners = all_targets()
            unknown = [t for t in self.targets if t not in owners]
            if unknown:
                raise ExportError(f"unknown target(s) {unknown}; valid: {sorted(owners)}")
            unused = [t for t in self.targets if owners[t].name not in self.formats]
            if unused:
                raise ExportError(
                    f"target(s) {unused} belong to none of the formats {self.formats}; "
                    + "; ".join(f"{f}: {', '.join(FORMATS[f].target_names)}" for f in self.formats)
                )
        out = []
        for name in self.formats:
            fmt = FORMATS[name]
            named = [t for t in self.targets if t in fmt.target_names] if self.targets else []
            targets = named or ([] if self.targets else list(fmt.default_targets))
            for t in targets:
                offered = fmt.target(t).precisions
                refused = [p for p in self.precisions if p not in offered]
                if refused and named:
                    raise ExportError(f"{name} target {t} does not offer precision(s) {refused}; it offers {list(offered)}")
                for m in self.models:
                    out.extend((m, name, t, p) for p in self.precisions if p in offered)
        # execution order: model-major within a format, as before
        out.sort(key=lambda j: (self.formats.index(j[1]), self.models.index(j[0])))
        if not out:
            raise ExportError("nothing to export: no model x format x target x precision combination selected")
        return out


@dataclass
class PreparedModel:
    name: str
    family: str
    config_hash: str
    weights: str
    example: torch.Tensor
    graph: torch.nn.Module
    eager: torch.nn.Module
    passes: list[PassResult]
    mean: list[float]
    std: list[float]
    params: int
    macs: int
    reference: Reference
    options: dict
    ref_in: np.ndarray
    ref_out: np.ndarray
    images: torch.Tensor  # real, normalised images for calibration and int8 agreement


def _safe(name: str) -> str:
    """A model name as a path component that survives URLs and every filesystem ('timm:x' -> 'timm_x')."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


def _check_out_dir(out: Path, on_existing: str) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if (out / "manifest.json").exists() and on_existing == "error":
        raise ExportError(f"{out} already holds a bundle; use --force to overwrite it or --reuse to keep up-to-date artifacts")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{uuid.uuid4().hex}"
        probe.write_bytes(b"x")
        probe.unlink()
    except OSError as e:
        raise ExportError(f"cannot write to {out}: {e.strerror or e}") from None
    if on_existing == "overwrite":
        for child in out.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()


def config_hash(name: str, model: torch.nn.Module, kwargs: dict) -> str:
    """The identity of a model's architecture and options (a FreeNet's cfg hash, else a digest)."""
    if isinstance(model, FreeNet):
        return model.cfg.config_hash()
    blob = json.dumps({"name": name, "kwargs": kwargs, "arch": repr(model)}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _real_images(size: tuple[int, int, int], n: int, mean: list[float], std: list[float]) -> torch.Tensor:
    """Real images from the digits that ship with scikit-learn, resized to the model's input and
    normalised with the model's own mean/std (a checkpoint trained on them uses the same)."""
    from freenet.data import DIGITS_MEAN, DIGITS_STD, digits_tensors

    x, _ = digits_tensors(size[1], limit=n)
    x = x * torch.tensor(DIGITS_STD).view(1, 3, 1, 1) + torch.tensor(DIGITS_MEAN).view(1, 3, 1, 1)  # back to [0, 1]
    if size[2] != size[1]:
        x = torch.nn.functional.interpolate(x, size=size[1:], mode="bilinear", align_corners=False)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@dataclass
class ModelRef:
    """What identifies one model's export inputs, and its reference pair: cheap to compute (the model
    built once and run once, no rewrite pass, no tracing), so the parent process decides what is up
    to date and writes the bundle's reference files before any worker starts (workers never write
    them: no race), and every artifact's parity is checked against exactly those bytes."""

    name: str
    family: str
    config_hash: str
    weights: str
    options: dict
    mean: list[float]
    std: list[float]
    size: tuple[int, int, int]
    ref_in: np.ndarray
    ref_out: np.ndarray
    pass_names: list[str]

    def reference(self, seed: int) -> Reference:
        return Reference(
            input_file=f"reference/{_safe(self.name)}.input.f32", output_file=f"reference/{_safe(self.name)}.output.f32",
            input_sha256=hashlib.sha256(self.ref_in.tobytes()).hexdigest(),
            output_sha256=hashlib.sha256(self.ref_out.tobytes()).hexdigest(), seed=seed,
        )


def _build(name: str, plan: ExportPlan) -> tuple[ModelRef, torch.nn.Module, torch.Tensor]:
    info = model_info(name)
    kwargs: dict = dict(plan.model_kwargs)
    torch.manual_seed(plan.seed)
    model = create_model(name, checkpoint=plan.checkpoint, **kwargs)
    if plan.checkpoint is not None:
        meta = read_checkpoint_meta(plan.checkpoint)
        size = tuple(meta.get("input_size", info.input_size))
        mean, std = list(meta.get("mean", info.mean)), list(meta.get("std", info.std))
        weights = f"checkpoint:{sha256_file(Path(plan.checkpoint))}"
    else:
        size, mean, std = info.input_size, list(info.mean), list(info.std)
        weights = f"random(seed={plan.seed})"
    if plan.input_size:
        size = (size[0], plan.input_size, plan.input_size)
    images = _real_images(size, max(plan.agreement_images, 8), mean, std)
    example = images[:1]
    with torch.no_grad():
        ref_out = model(example).numpy().astype("<f4")
    selected = set(plan.passes)
    pass_names = [p.NAME for p in MODULE_PASSES + GRAPH_PASSES if p.NAME in selected]
    ref = ModelRef(name, info.family, config_hash(name, model, kwargs), weights, kwargs, mean, std, tuple(size),
                   example.numpy().astype("<f4"), ref_out, pass_names)
    return ref, model, images


def model_ref(name: str, plan: ExportPlan) -> ModelRef:
    """The model's identity and reference pair (see ModelRef); about a second per model."""
    return _build(name, plan)[0]


def write_reference(bundle: Path, ref: ModelRef, seed: int) -> Reference:
    """The reference input/output files of one model, each written atomically (unique temp name)."""
    reference = ref.reference(seed)
    for rel, arr in ((reference.input_file, ref.ref_in), (reference.output_file, ref.ref_out)):
        path = bundle / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_bytes(arr.tobytes())
        tmp.replace(path)
    return reference


def prepare_model(name: str, plan: ExportPlan, bundle: Path | None = None, expect: ModelRef | None = None) -> PreparedModel:
    """Build the model and run the rewrite passes (the expensive part: tracing).

    With `bundle` the reference files are written there; without it (a worker) nothing is written
    and `expect` (the parent's ModelRef) supplies the reference pair, so that parity is judged
    against the bundle's own files whichever process or machine runs the conversion."""
    with step("prepare.model"):
        ref, model, images = _build(name, plan)
    if expect is not None:
        if expect.config_hash != ref.config_hash or expect.weights != ref.weights:
            raise RuntimeError(f"this worker built a different {name} ({ref.config_hash}, {ref.weights}) than the "
                               f"parent ({expect.config_hash}, {expect.weights}): are the package versions the same?")
        ref.ref_in, ref.ref_out = expect.ref_in, expect.ref_out
    example = torch.from_numpy(ref.ref_in.copy())
    with step("prepare.passes"):
        graph, passes = prepare(model, example, plan.passes)
    steps_tag(graph)  # its conversions may be memoised in this process (export.steps.memo)
    reference = write_reference(bundle, ref, plan.seed) if bundle is not None else ref.reference(plan.seed)
    with step("prepare.profile"):
        params, macs = count_params(model), count_macs(model, ref.size)
    return PreparedModel(
        name, ref.family, ref.config_hash, ref.weights, example, graph, model, passes, ref.mean, ref.std,
        params, macs, reference, ref.options, ref.ref_in, ref.ref_out, images,
    )


def _parity(fmt: Format, path: Path, pm: PreparedModel, target: str, precision: str, images: int) -> Parity:
    """Parity of one artifact against eager PyTorch, through ONE session of the format's own open()
    (the same one the host runner times): the reference input, then the int8 agreement images."""
    try:
        session: Session = fmt.open(path, target, threads=1)  # parity, not speed: 2 shared cores here
    except NotRunnableHere as e:
        return Parity(checked=False, note=str(e))
    out = np.asarray(session.infer(pm.ref_in), dtype=np.float32).reshape(pm.ref_out.shape)
    scale = float(np.abs(pm.ref_out).max()) or 1.0
    diff = float(np.abs(out - pm.ref_out).max())
    parity = Parity(checked=True, max_abs_diff=diff, rel_diff=diff / scale)
    if precision == "fp16" and scale < FP16_MIN_NORMAL:
        # e.g. torchvision's MobileNets at random init give logits ~1e-9: they underflow to 0 in any
        # fp16 runtime (eager PyTorch .half() too), so the comparison says nothing about the artifact
        parity.note = (f"inconclusive: the reference output's largest value {scale:.1e} is below fp16's smallest normal "
                       f"number ({FP16_MIN_NORMAL:.1e}); use trained weights (--checkpoint) to check fp16 numerics")
    elif precision in TOLERANCE:
        parity.tolerance = TOLERANCE[precision]
        parity.passed = parity.rel_diff <= parity.tolerance
    else:  # int8: top-1 agreement with eager fp32 on real images
        xs = pm.images[:images]
        with torch.no_grad():
            ref_top1 = pm.eager(xs).argmax(1).numpy()
        got = np.array([np.asarray(session.infer(x[None].numpy())).reshape(-1).argmax() for x in xs])
        parity.top1_agreement = float((got == ref_top1).mean())
        parity.images = len(xs)
        parity.min_top1_agreement = INT8_MIN_TOP1_AGREEMENT
        parity.passed = parity.top1_agreement >= INT8_MIN_TOP1_AGREEMENT
        parity.note = "top-1 agreement with eager fp32 on real digits images"
    return parity


def _tool_versions(fmt: str) -> dict[str, str]:
    return FORMATS[fmt].tool_versions()


def _reusable(old: Artifact | None, ref: ModelRef, plan: ExportPlan, bundle: Path, versions: dict) -> bool:
    """Whether `old` is up to date for this model (judged from its cheap ModelRef: no pass runs)."""
    if old is None or old.status != "ok" or old.file is None:
        return False
    path = bundle / old.file
    same = (
        old.config_hash == ref.config_hash
        and old.weights == ref.weights
        and [p.name for p in old.passes] == ref.pass_names
        and all(old.tool_versions.get(k) == v for k, v in versions.items())  # backends add their own keys
        and old.reference is not None
        and old.reference.output_sha256 == ref.reference(plan.seed).output_sha256
    )
    if not same or not path.exists():
        return False
    return old.sha256 == (sha256_file(path) if path.is_file() else _dir_sha256(path))


def _zip_dir(path: Path) -> Path:
    """A directory artifact (.mlpackage) as ONE uncompressed zip file: one download and one
    sha256 for the phone, unpacked there without a decompressor (ZIP_STORED), and byte-identical
    across runs (sorted entries, fixed timestamps)."""
    import zipfile

    out = path.with_name(path.name + ".zip")
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as z:
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(f"{path.name}/{f.relative_to(path)}", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, f.read_bytes())
    return out


def _dir_sha256(path: Path) -> str:
    """sha256 over a directory artifact (.mlpackage): relative paths and file digests, sorted."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode())
        h.update(sha256_file(f).encode())
    return h.hexdigest()


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def log_path(bundle: Path, name: str) -> Path:
    """Where third-party output for one artifact (or one model's preparation) goes."""
    return bundle / "logs" / f"{_safe(name)}.log"


def artifact_path(model: str, fmt: str, target: str, precision: str, extension: str) -> str:
    """An artifact's path inside the bundle (a directory artifact ships zipped: '.mlpackage.zip')."""
    return f"{_safe(model)}/{fmt}-{target}-{precision}{extension}"


def build_artifact(pm: PreparedModel, fmt: str, target: str, precision: str, plan: ExportPlan, staging: Path,
                   log: Path, bundle_id: str) -> tuple[Artifact, Path | None]:
    """Convert and verify one artifact inside `staging` (nothing is written to the bundle here).

    Returns the artifact (status, parity, coverage, sha256 and size of the staged file, its final
    path in `file`) and the staged file, or None when it failed. `place` moves it into the bundle.
    Its steps are timed into `step_seconds` (export/steps.py)."""
    art_id = f"{pm.name}.{fmt}.{target}.{precision}"
    versions = _tool_versions(fmt)
    art = Artifact(
        id=art_id, model=pm.name, model_family=pm.family, config_hash=pm.config_hash, weights=pm.weights, model_options=pm.options,
        format=fmt, target=target, precision=precision, status="failed",
        passes=[PassRecord(name=p.name, rewrites=p.rewrites, before=p.before, not_matched=p.reason) for p in pm.passes],
        tool_versions=versions, reference=pm.reference, params=pm.params, macs=pm.macs,
    )
    t0 = time.perf_counter()
    staged: Path | None = None
    with recording() as seconds:
        try:
            the_format = load_format(fmt)
            staging.mkdir(parents=True, exist_ok=True)
            metadata = {
                "freenet.bundle_id": bundle_id,
                "freenet.artifact_id": art_id,
                "freenet.model": pm.name,
                "freenet.config_hash": pm.config_hash,
                "freenet.weights": pm.weights,
                "freenet.target": target,
                "freenet.precision": precision,
                "freenet.passes": json.dumps([(p.name, p.rewrites) for p in pm.passes]),
                "freenet.mean": json.dumps(pm.mean),
                "freenet.std": json.dumps(pm.std),
                "freenet.tool_versions": json.dumps(versions),
            }
            req = ExportRequest(
                model=pm.graph, example_input=pm.example, out_path=staging / f"model{the_format.extension}", target=target,
                precision=precision, metadata=metadata, calibration=pm.images, channels_last_io=plan.channels_last_io,
            )
            with capture_output(log), step("convert"):  # the converters' own chatter: the artifact's log
                res: BackendResult = the_format.export(req)
            art.inputs = [TensorSpec(**{**s.model_dump(), "mean": pm.mean, "std": pm.std}) for s in res.inputs]
            art.outputs = res.outputs
            art.tool_versions = {**versions, **res.tool_versions}
            art.coverage = res.coverage
            art.notes = list(res.notes)
            art.min_deployment_target = res.min_deployment_target
            with capture_output(log), step("parity"):
                art.parity = _parity(the_format, res.path, pm, target, precision, plan.agreement_images)
            with step("package"):
                src = _zip_dir(res.path) if res.path.is_dir() else res.path
                art.file = artifact_path(pm.name, fmt, target, precision, src.name[src.name.index("."):])
                art.sha256 = sha256_file(src)
                art.size_bytes = _size(src)
            staged = src
            if art.parity.passed is False:
                art.error = art.parity.failure()
                if art.parity.min_top1_agreement is not None and pm.weights.startswith("random"):
                    art.error += " (random weights give near-tied logits: export a trained --checkpoint to judge int8)"
            else:
                art.status = "ok"
        except OSError as e:
            if e.errno == errno.ENOSPC:
                art.error = f"disk full while writing {staging}: free some space and re-run with --reuse"
            else:
                art.error = f"{type(e).__name__}: {e}"
        except Exception as e:  # noqa: BLE001 - a converter's failure is recorded, never fatal to the run
            msg = str(e).strip().splitlines()
            art.error = f"{type(e).__name__}: " + (" ".join(msg[:3])[:500] if msg else "(no message)")
    art.step_seconds = dict(seconds)
    art.export_seconds = time.perf_counter() - t0
    return art, staged


def place(art: Artifact, staged: Path | None, bundle: Path) -> Artifact:
    """Move a staged artifact into the bundle (atomic rename), after checking its sha256.

    A failed artifact whose file exists (parity failed) is kept too, as before: its file is the
    evidence. Without a staged file the artifact has no file."""
    if staged is None:
        art.file = art.sha256 = art.size_bytes = None
        return art
    t0 = time.perf_counter()
    try:
        got = sha256_file(staged)
        if got != art.sha256:
            art.status, art.error = "failed", f"sha256 mismatch after transfer: worker said {art.sha256}, received {got}"
            art.file = art.sha256 = art.size_bytes = None
            return art
        final = bundle / art.file
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_dir():
            shutil.rmtree(final)
        os.replace(staged, final)  # atomic within one filesystem
    except OSError as e:
        art.status = "failed"
        art.error = (f"disk full while writing {bundle}: free some space and re-run with --reuse" if e.errno == errno.ENOSPC
                     else f"{type(e).__name__}: {e}")
        art.file = art.sha256 = art.size_bytes = None
    art.step_seconds = {**(art.step_seconds or {}), "write": round(time.perf_counter() - t0, 3)}
    return art


def export_one(pm: PreparedModel, fmt: str, target: str, precision: str, plan: ExportPlan, bundle: Path, bundle_id: str) -> Artifact:
    """Convert, verify and move one artifact into the bundle (in this process)."""
    art_id = f"{pm.name}.{fmt}.{target}.{precision}"
    staging = bundle / ".staging" / uuid.uuid4().hex
    log = log_path(bundle, art_id)
    log.unlink(missing_ok=True)
    try:
        art, staged = build_artifact(pm, fmt, target, precision, plan, staging, log, bundle_id)
        art = place(art, staged, bundle)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    art.log_file = str(log.relative_to(bundle))
    return art


ProgressFn = Callable[[str, int, int], None]


def prep_failed(m: str, fmt: str, target: str, precision: str, error: str, log_file: str | None) -> Artifact:
    return Artifact(id=f"{m}.{fmt}.{target}.{precision}", model=m, model_family=model_info(m).family, config_hash="-",
                    format=fmt, target=target, precision=precision, status="failed", error=error, log_file=log_file)


def export_bundle(plan: ExportPlan, progress: ProgressFn | None = None, workers: int = 0, cluster: str | None = None) -> Manifest:
    """Run the plan; returns the manifest (also written to OUT/manifest.json after every artifact).

    workers=0 (the default): every artifact in this process, one after another. workers>=1: that
    many worker processes (export/parallel.py); cluster=ADDRESS: the jobs run on a Dask cluster
    (export/cluster.py). Either way this process alone writes the bundle: reference files, the
    artifacts (moved in as they finish) and the manifest (atomically, after every artifact)."""
    jobs = plan.jobs()
    if cluster:
        from .cluster import check_engine

        check_engine()  # before anything is written: the engine is an optional extra
    bundle = Path(plan.out_dir)
    existing = None
    if plan.on_existing == "reuse" and (bundle / "manifest.json").exists():
        try:
            existing = Manifest.load(bundle / "manifest.json")
        except ValueError:
            existing = None  # unreadable manifest: rebuild everything
    _check_out_dir(bundle, plan.on_existing)
    shutil.rmtree(bundle / ".staging", ignore_errors=True)  # leftovers of an interrupted run
    manifest = Manifest(bundle_id=existing.bundle_id if existing else uuid.uuid4().hex[:12])
    if existing:  # keep artifacts of models/formats this run does not touch
        keys = {(m, f, t, p) for m, f, t, p in jobs}
        manifest.artifacts = [a for a in existing.artifacts if (a.model, a.format, a.target, a.precision) not in keys]
    done = 0

    def finished(art: Artifact) -> None:
        nonlocal done
        manifest.artifacts.append(art)
        manifest.dump(bundle / "manifest.json")
        done += 1
        if progress:
            progress(f"{art.model} {art.format}/{art.target}/{art.precision}: {art.status}", done, len(jobs))

    refs: dict[str, ModelRef | None] = {}
    pool = None
    if workers >= 1 and not cluster:
        # conversions are certain when some job has no artifact in the bundle yet: start the workers
        # now, so that their imports overlap the references computed below (docs/export-scaling.md)
        def missing(old: Artifact | None) -> bool:  # a cheap look (no hashing): reuse is decided below
            return old is None or old.status != "ok" or not old.file or not (bundle / old.file).exists()

        n_missing = sum(1 for m, f, t, p in jobs if missing(existing.find(m, f, t, p) if existing else None))
        if n_missing:
            from .parallel import start_workers

            pool = start_workers(min(workers, n_missing))
    def per_model():
        """The jobs to convert, one model at a time: its reference computed and written (this process
        only), its up-to-date artifacts kept (decided from the cheap identity), its failures recorded."""
        for m in dict.fromkeys(j[0] for j in jobs):
            prep_log = log_path(bundle, f"{m}.prepare")
            prep_log.unlink(missing_ok=True)
            if progress:
                progress(f"{m}: reference", done, len(jobs))
            try:
                with capture_output(prep_log):
                    refs[m] = model_ref(m, plan)
                    write_reference(bundle, refs[m], plan.seed)
                error = None
            except Exception as e:  # noqa: BLE001
                refs[m], error = None, f"model preparation failed: {type(e).__name__}: {e}"
            batch = []
            for mm, fmt, target, precision in jobs:
                if mm != m:
                    continue
                if refs[m] is None:
                    finished(prep_failed(m, fmt, target, precision, error, str(prep_log.relative_to(bundle))))
                    continue
                old = existing.find(m, fmt, target, precision) if existing else None
                if _reusable(old, refs[m], plan, bundle, _tool_versions(fmt)):
                    finished(old)
                else:
                    batch.append((m, fmt, target, precision))
            yield batch

    try:
        if workers >= 1 and not cluster:
            from .parallel import run_pool

            # the pool converts the first model while this process computes the next models' references
            run_pool(workers, plan, [], refs, bundle, manifest.bundle_id, finished,
                     progress and (lambda what, _d, _t: progress(what, done, len(jobs))), pool, feed=per_model())
            pool = None  # run_pool stopped them
        else:
            todo = [j for batch in per_model() for j in batch]
            if todo and cluster:
                from .cluster import run_on_cluster

                run_on_cluster(cluster, plan, todo, refs, bundle, manifest.bundle_id, finished, progress)
            elif todo:
                _run_here(plan, todo, refs, bundle, manifest.bundle_id, finished, progress, done)
    finally:
        for w in pool or []:  # started, then nothing to convert (or an error before the pool ran)
            w.stop()
        shutil.rmtree(bundle / ".staging", ignore_errors=True)
    order = {j: i for i, j in enumerate(jobs)}  # the manifest lists artifacts in plan order, however they finished
    manifest.artifacts.sort(key=lambda a: order.get((a.model, a.format, a.target, a.precision), -1))
    manifest.dump(bundle / "manifest.json")
    if progress:
        progress("done", len(jobs), len(jobs))
    return manifest


def _run_here(plan: ExportPlan, todo, refs, bundle: Path, bundle_id: str, finished, progress, done: int) -> None:
    prepared: dict[str, PreparedModel | str] = {}
    for i, (m, fmt, target, precision) in enumerate(todo):
        if progress:
            progress(f"{m} {fmt}/{target}/{precision}", done + i, done + len(todo))
        prep_seconds: dict[str, float] = {}
        if m not in prepared:
            prep_log = log_path(bundle, f"{m}.prepare")
            try:
                with capture_output(prep_log), recording() as prep_seconds:
                    prepared[m] = prepare_model(m, plan, expect=refs[m])
            except Exception as e:  # noqa: BLE001
                prepared[m] = f"model preparation failed: {type(e).__name__}: {e}"
        pm = prepared[m]
        if isinstance(pm, str):
            finished(prep_failed(m, fmt, target, precision, pm, str(log_path(bundle, f"{m}.prepare").relative_to(bundle))))
            continue
        art = export_one(pm, fmt, target, precision, plan, bundle, bundle_id)
        art.step_seconds = {**prep_seconds, **(art.step_seconds or {})}  # preparation: on the first artifact of a model
        finished(art)


def summarize(artifacts: Iterable[Artifact]) -> list[dict]:
    """Rows for the end-of-run status table (None where a value does not exist, never 0)."""
    rows = []
    for a in artifacts:
        cov = "; ".join(
            f"{c.delegate}: {'full' if c.full else 'PARTIAL' if c.full is False else '?'}"
            + (f" {c.supported_nodes}/{c.total_nodes}" if c.total_nodes else "")
            + (f" in {c.partitions} part." if c.partitions is not None else "")
            for c in a.coverage
        )
        if a.parity is None:
            par = None
        elif not a.parity.checked:
            par = "not run here"
        elif a.parity.top1_agreement is not None:
            par = f"top-1 {a.parity.top1_agreement:.0%} ({a.parity.images} img) {'ok' if a.parity.passed else 'FAIL'}"
        elif a.parity.passed is None:
            par = f"{a.parity.rel_diff:.1e} inconclusive"
        else:
            par = f"{a.parity.rel_diff:.1e} {'ok' if a.parity.passed else 'FAIL'}"
        reason = a.error
        if a.status != "ok" and a.log_file:
            reason = f"{reason or ''} (log: {a.log_file})".strip()
        rows.append(
            dict(model=a.model, format=a.format, target=a.target, precision=a.precision, status=a.status,
                 size_mb=None if a.size_bytes is None else a.size_bytes / 1e6, parity=par, coverage=cov or None,
                 seconds=a.export_seconds, reason=reason, log=a.log_file)
        )
    return rows
