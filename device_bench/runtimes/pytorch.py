"""Eager PyTorch: runs no file. It rebuilds exactly the model an artifact was exported from
(constructor options, seed or checkpoint, the same rewrite passes) and refuses when the rebuilt
model is not that one (config hash or checkpoint digest differ)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from export.backends.base import Session

from .base import HostRuntime

if TYPE_CHECKING:
    from export.manifest import Artifact


# glibc's malloc adapts its mmap threshold to the allocation history and gives the freed heap top
# back to the kernel (trim), so eager PyTorch, which allocates every activation afresh, can take page
# faults on every inference, and how many depends on what the process allocated before. Measured on
# this host (1 thread, pinned, after 10 warm-ups, minor faults per inference): a bare process running
# the model took 2,800 (FreeNet-S2) and 10-28 (StarNet-S4); this runtime's worker took 0 already,
# only because the state-dict digest below happens to free multi-MB buffers first, which raises the
# threshold (7 of 7 workers). Which mode a process lands in is history, not code: a loop of three
# 8 MiB buffers took 4,064 faults per step in 2 of 3 fresh processes and 0 in the third
# (tests/device_bench/test_eager_allocator.py). Fixed thresholds make it 0 by construction
# (checkpoints, other models, other allocation orders) and stop the adjustment. They did not remove eager's between-process spread:
# benchmarks/results/issue14_repeat_quiet.txt. jemalloc/tcmalloc, PyTorch's usual advice, are not
# installed here; mallopt needs nothing and acts on this worker process only.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc malloc.h
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed (HEAP_MAX_SIZE / 2 on 64-bit): activations stay on the heap
TRIM_THRESHOLD = 1 << 30  # freed memory up to 1 GiB is kept for the next inference


def keep_freed_memory() -> bool:
    """Fixed mmap and trim thresholds for this process's glibc malloc (which also stops their
    dynamic adjustment): freed activations are reused, not returned and faulted in again. False
    where the C library has no mallopt (not glibc) or refuses the values."""
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


class EagerSession(Session):
    def __init__(self, graph, weights_sha256: str, allocator: str = "default") -> None:
        import torch

        self._graph, self._torch, self.weights_sha256, self.allocator = graph, torch, weights_sha256, allocator

    def run(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self._graph(self._torch.from_numpy(x)).numpy()


class EagerPyTorch(HostRuntime):
    name = report_name = "pytorch"
    package = "torch"
    accelerator = "cpu"
    format = None
    preimport = ("torch", "freenet", "export.api", "export.passes")

    def select(self, artifacts: list[Artifact]) -> list[Artifact]:
        """One eager job per model (fp32), described by any of its fp32 artifacts."""
        seen: dict[str, Artifact] = {}
        for a in artifacts:
            if a.precision == "fp32":
                seen.setdefault(a.model, a)
        return list(seen.values())

    def open(self, spec: dict) -> Session:
        import torch

        import freenet
        from export.api import config_hash
        from export.manifest import sha256_file
        from export.passes import prepare

        torch.set_num_threads(spec["threads"])
        allocator = "glibc, fixed mmap/trim thresholds" if keep_freed_memory() else "default"
        checkpoint = None
        if spec["weights"].startswith("checkpoint:"):
            want = spec["weights"].split(":", 1)[1]
            if not spec.get("checkpoint"):
                raise RuntimeError(f"the bundle's {spec['model']} has trained weights (checkpoint sha256 {want[:12]}...): eager "
                                   "PyTorch needs that checkpoint file, pass it with --checkpoint")
            checkpoint = Path(spec["checkpoint"])
            got = sha256_file(checkpoint)
            if got != want:
                raise RuntimeError(f"--checkpoint {checkpoint} has sha256 {got[:12]}..., the bundle was exported from {want[:12]}...")
        elif not spec["weights"].startswith("random"):
            raise RuntimeError(f"unknown weights identity {spec['weights']!r}: cannot rebuild the model")
        torch.manual_seed(spec["seed"])
        model = freenet.create_model(spec["model"], checkpoint=checkpoint, **spec["model_options"]).eval()
        built = config_hash(spec["model"], model, spec["model_options"])
        if built != spec["config_hash"]:
            raise RuntimeError(f"the rebuilt {spec['model']} has config hash {built}, the artifact {spec['config_hash']}: "
                               "this code builds a different model than the bundle's (re-export the bundle)")
        # There is no artifact file: identify the weights by a digest of the state dict instead.
        h = hashlib.sha256()
        for k, v in model.state_dict().items():
            h.update(k.encode())
            h.update(v.detach().contiguous().numpy().tobytes())
        example = torch.from_numpy(np.fromfile(spec["input_file"], dtype="<f4").reshape(spec["input_shape_nchw"]))
        graph = prepare(model, example, spec["passes"])[0] if spec["passes"] else model
        return EagerSession(graph, h.hexdigest(), allocator)

    def load_info(self, session: Session) -> dict:
        return {"weights_sha256": session.weights_sha256, "allocator": session.allocator}

    def model_fields(self, artifact: Artifact, load: dict) -> dict:
        # eager PyTorch measures no file: its weights are identified by a state-dict digest
        return {"artifact_id": f"{artifact.model}.pytorch.eager.fp32", "format": "pytorch", "precision": "fp32",
                "sha256": load.get("weights_sha256", "0" * 64)}


RUNTIME = EagerPyTorch()
