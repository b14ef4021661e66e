"""Core ML export: one `.mlpackage` ML program per target, and its static verification on Linux.

This module owns the conversion `torch.export` -> `.run_decompositions({})` -> `coremltools.convert`
(mlprogram, a stated minimum deployment target, fp32 input and output named as in the manifest),
optional weight-only int8 compression, the metadata embedded in the package, and a static check of
the saved spec that needs no Apple hardware: the op census, every op valid in the deployment
target's opset (coremltools' own op registry), the value dtypes (fp16 throughout for fp16 artifacts,
only the I/O casts in fp32) and the I/O names and shapes. The two targets hold the same program;
they differ only in the compute units the app is told to load it with (recorded in metadata).
Prediction needs macOS: `FORMAT.open()` loads it there and raises `NotRunnableHere` elsewhere.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np

from ..steps import step
from ..manifest import Coverage, TensorSpec
from .base import BackendResult, ExportRequest, Format, NotRunnableHere, Session, Target, exported_program

INPUT_NAME = "input"  # the manifest names, shared with the ONNX backend
OUTPUT_NAME = "output"

# target -> the coremltools ComputeUnit name the app should load the model with
COMPUTE_UNITS = {
    "coreml-all": "ALL",  # CPU + GPU + Neural Engine: Core ML picks the ANE when present
    "coreml-cpu-gpu": "CPU_AND_GPU",  # the mobile-GPU number (no ANE)
}
_ALL = ("fp32", "fp16", "int8")
_NOT_HERE = ("Core ML prediction needs macOS (coremltools on this OS can convert and read the spec, not "
             "predict); the spec was checked statically instead")

# iOS16 (Core ML 6, opset "CoreML6") is the lowest target that has everything these models use:
# fp16 ML programs with fp32 I/O, dilated conv, slice_by_index, concat, reduce_mean, clip, linear
# (all iOS15 ops) and the constexpr_affine_dequantize op that int8 weights need (new in iOS16).
# Nothing in iOS17's opset is needed, so iOS16 keeps every iOS16 device (iPhone 8 and later) while
# all phones with a Neural Engine that the benchmarks target run it. ExecuTorch's Core ML delegate
# also supports iOS16 and later, so both Core ML routes share one target.
DEPLOYMENT_TARGET = "iOS16"
_OPSET_NAME = {"iOS15": "CoreML5", "iOS16": "CoreML6", "iOS17": "CoreML7", "iOS18": "CoreML8"}

# MIL op types that are not computation: constants and the compressed-weight decoders
_CONST_OPS = {"const"}
_FLOAT_TYPES = ("FLOAT16", "FLOAT32", "FLOAT64", "BFLOAT16")


def export(req: ExportRequest) -> BackendResult:
    """Convert `req.model` to an ML program and save the `.mlpackage` directory at `req.out_path`."""
    FORMAT.check(req.target, req.precision)
    compute_units = COMPUTE_UNITS[req.target]
    import coremltools as ct
    import torch
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    model = req.model
    if not isinstance(model, torch.fx.GraphModule):  # an exported graph module refuses .eval()
        model.eval()
    x = req.example_input
    try:
        with torch.no_grad(), step("convert.trace"):
            # coremltools takes only ATen-dialect programs ("Provided Dialect: TRAINING" otherwise)
            program = exported_program(model, x).run_decompositions({})
    except Exception as e:  # noqa: BLE001 - reported in the status table with torch's reason
        raise RuntimeError(f"torch.export failed before Core ML conversion: {type(e).__name__}: {e}") from e
    in_name = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    try:
        with step("convert.convert"):
            mlmodel = ct.convert(
                program,
                convert_to="mlprogram",
                minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                compute_precision=ct.precision.FLOAT32 if req.precision == "fp32" else ct.precision.FLOAT16,
                compute_units=getattr(ct.ComputeUnit, compute_units),
                skip_model_load=True,
            )
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(f"coremltools.convert failed: {type(e).__name__}: {e}") from e

    notes = [
        f"ML program for {DEPLOYMENT_TARGET} (opset {_OPSET_NAME[DEPLOYMENT_TARGET]}); load it with "
        f"compute units {compute_units} (a load-time choice: coreml-all and coreml-cpu-gpu hold the same program).",
    ]
    if req.precision == "int8":
        mlmodel = _quantize_weights(mlmodel)
        notes.append(
            "int8 is weight-only (coremltools linear_quantize_weights, symmetric per-channel int8 "
            "decoded by constexpr_affine_dequantize; weights under 2048 elements stay fp16, the "
            "coremltools default threshold); activations compute in fp16 (no calibration data used)."
        )
    elif req.precision == "fp16":
        notes.append("fp16 weights and activations; the fp32 input and output are cast at the edges.")

    # An fp16 program from torch.export ends in fp16; the manifest promises float32 outputs.
    out_names = [o.name for o in mlmodel.get_spec().description.output]
    if req.precision != "fp32":
        mlmodel = ct.utils.change_input_output_tensor_type(
            mlmodel, ArrayFeatureType.FLOAT16, ArrayFeatureType.FLOAT32, output_names=out_names
        )
        out_names = [o.name for o in mlmodel.get_spec().description.output]  # the cast renames it
    if len(in_name) != 1 or len(out_names) != 1:
        raise RuntimeError(f"expected one input and one output, got inputs {in_name} and outputs {out_names}")
    mlmodel = _renamed(mlmodel, {in_name[0]: INPUT_NAME, out_names[0]: OUTPUT_NAME})

    metadata = {**req.metadata, "compute_units": compute_units, "precision": req.precision,
                "minimum_deployment_target": DEPLOYMENT_TARGET}
    mlmodel.user_defined_metadata.update({k: str(v) for k, v in metadata.items()})
    mlmodel.author = "freenet-deploy"
    model_name = req.metadata.get("model", type(req.model).__name__)
    mlmodel.short_description = (
        f"{model_name} image classifier ({req.precision}); input {INPUT_NAME}: normalised float32 NCHW, "
        f"output {OUTPUT_NAME}: class scores"
    )
    mlmodel.input_description[INPUT_NAME] = "normalised image, float32 NCHW"
    mlmodel.output_description[OUTPUT_NAME] = "class logits"

    out = Path(req.out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    mlmodel.save(str(out))
    notes.append("Metadata embedded in the package's user_defined_metadata (plus author and short description).")

    with step("convert.coverage"):
        coverage = verify_spec(out, DEPLOYMENT_TARGET, req.precision)
    spec = mlmodel.get_spec()
    return BackendResult(
        path=out,
        inputs=[_tensor_spec(f) for f in spec.description.input],
        outputs=[_tensor_spec(f) for f in spec.description.output],
        tool_versions={"coremltools": ct.__version__, "torch": torch.__version__},
        coverage=[coverage],
        notes=notes,
        min_deployment_target=DEPLOYMENT_TARGET,
    )


class CoreMLSession(Session):
    """Core ML prediction at the target's compute units (macOS only)."""

    def __init__(self, path: Path, compute_units: str) -> None:
        import coremltools as ct

        self._model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))

    def run(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._model.predict({INPUT_NAME: x})[OUTPUT_NAME], dtype=np.float32)


class CoreMLFormat(Format):
    name = "coreml"
    title = "Core ML"
    extension = ".mlpackage"
    # The two targets hold the same program; they differ in the compute units the app loads it with.
    targets = (
        Target("coreml-all", _ALL, "Core ML, compute units ALL (Neural Engine where present)",
               ("darwin",), _NOT_HERE),
        Target("coreml-cpu-gpu", _ALL, "Core ML, compute units CPU_AND_GPU (the mobile-GPU number)",
               ("darwin",), _NOT_HERE),
    )
    default_targets = ("coreml-cpu-gpu",)
    requires = {"coremltools": "coremltools==9.0"}
    tool_packages = ("torch", "coremltools")
    export_cost = {"fp32": 9.0, "fp16": 6.0, "int8": 8.0}
    accelerators = ("cpu", "gpu", "ane")

    def export(self, req: ExportRequest) -> BackendResult:
        return export(req)

    def open(self, path: str | Path, target: str, threads: int = 1, accelerator: str | None = None) -> Session:
        self.runnable(target)
        return CoreMLSession(Path(path), COMPUTE_UNITS[target])


FORMAT = CoreMLFormat()


def verify_spec(path: Path, deployment_target: str = DEPLOYMENT_TARGET, precision: str = "fp16") -> Coverage:
    """Read a saved `.mlpackage` without loading it and check it against its deployment target.

    Checks: it is an ML program of the target's opset; every op is registered in coremltools' op
    registry for that opset; for fp16/int8, no value is fp32 except the input and the cast that
    produces the output; I/O names, shapes and dtypes. Which compute unit runs each op is decided
    by Core ML at load time on the device (MLComputePlan), so `full` here means "the whole graph
    is a valid Core ML program for the target" and not "the whole graph runs on the ANE".
    """
    import coremltools as ct
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    target = getattr(ct.target, deployment_target)
    spec = ct.models.MLModel(str(path), skip_model_load=True).get_spec()
    problems: list[str] = []
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{path} is a {spec.WhichOneof('Type')} model, not an ML program")
    if spec.specificationVersion > int(target):
        problems.append(
            f"specification version {spec.specificationVersion} is newer than {deployment_target} ({int(target)})"
        )
    main = spec.mlProgram.functions["main"]
    expected_opset = _OPSET_NAME.get(deployment_target)
    if expected_opset and main.opset != expected_opset:
        problems.append(f"opset {main.opset}, expected {expected_opset} for {deployment_target}")

    census: Counter[str] = Counter()
    dtypes: Counter[str] = Counter()
    invalid: Counter[str] = Counter()
    fp32_values: list[str] = []
    outputs = set(main.block_specializations[main.opset].outputs)
    for op in _walk(main.block_specializations[main.opset].operations):
        census[op.type] += 1
        versions = SSAOpRegistry.core_ops.get(op.type, {})
        if target not in versions:
            invalid[op.type] += 1
        for value in op.outputs:
            kind = value.type.WhichOneof("type")
            if kind != "tensorType":
                continue
            dt = _dtype_name(value.type.tensorType.dataType)
            if dt not in _FLOAT_TYPES:
                continue
            dtypes[dt] += 1
            if dt == "FLOAT32" and not (op.type == "cast" and value.name in outputs):
                fp32_values.append(f"{op.type}:{value.name}")
    fp16_throughout = not fp32_values
    if precision != "fp32" and not fp16_throughout:
        problems.append(f"{len(fp32_values)} fp32 values inside an {precision} program, e.g. {fp32_values[:5]}")

    compute = {t: n for t, n in census.items() if t not in _CONST_OPS}
    n_compute = sum(compute.values())
    n_invalid = sum(n for t, n in invalid.items() if t not in _CONST_OPS)
    return Coverage(
        tool="coremltools-spec",
        delegate=f"Core ML mlprogram {main.opset} ({deployment_target})",
        supported_nodes=n_compute - n_invalid,
        total_nodes=n_compute,
        full=not invalid and not problems,
        unsupported=[f"{t} x{n}: not in the {deployment_target} opset" for t, n in sorted(invalid.items())]
        + problems,
        detail={
            "specification_version": spec.specificationVersion,
            "opset": main.opset,
            "op_census": dict(sorted(census.items())),
            "value_dtypes": dict(sorted(dtypes.items())),
            "fp16_throughout": fp16_throughout,
            "fp32_values": fp32_values[:20],
            "weight_decoders": sum(n for t, n in census.items() if t.startswith("constexpr_")),
            "inputs": [_feature(f) for f in spec.description.input],
            "outputs": [_feature(f) for f in spec.description.output],
            "user_defined_metadata": dict(spec.description.metadata.userDefined),
            "placement": "decided by Core ML at load time on the device (MLComputePlan); not checkable on Linux",
        },
    )


def _quantize_weights(mlmodel):
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    )
    return cto.linear_quantize_weights(mlmodel, config=config)


def _renamed(mlmodel, names: dict[str, str]):
    """Rename I/O features (torch.export names them after graph nodes: `x`, `linear`...)."""
    import coremltools as ct

    spec = mlmodel.get_spec()
    for old, new in names.items():
        if old != new:
            ct.utils.rename_feature(spec, old, new)
    return ct.models.MLModel(spec, weights_dir=mlmodel.weights_dir, skip_model_load=True)


def _walk(operations):
    for op in operations:
        yield op
        for block in op.blocks:
            yield from _walk(block.operations)


def _dtype_name(code: int) -> str:
    from coremltools.proto import MIL_pb2

    return MIL_pb2.DataType.Name(code)


def _feature(f) -> dict:
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    arr = f.type.multiArrayType
    return {"name": f.name, "shape": list(arr.shape), "dtype": ArrayFeatureType.ArrayDataType.Name(arr.dataType)}


def _tensor_spec(f) -> TensorSpec:
    info = _feature(f)
    dtype = {"FLOAT32": "float32", "FLOAT16": "float16", "INT32": "int32"}.get(info["dtype"], info["dtype"].lower())
    layout = "NC" if len(info["shape"]) == 2 else "NCHW"
    return TensorSpec(name=info["name"], shape=info["shape"], dtype=dtype, layout=layout)
