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


class EagerSession(Session):
    def __init__(self, graph, weights_sha256: str) -> None:
        import torch

        self._graph, self._torch, self.weights_sha256 = graph, torch, weights_sha256

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
        return EagerSession(graph, h.hexdigest())

    def load_info(self, session: Session) -> dict:
        return {"weights_sha256": session.weights_sha256}

    def model_fields(self, artifact: Artifact, load: dict) -> dict:
        # eager PyTorch measures no file: its weights are identified by a state-dict digest
        return {"artifact_id": f"{artifact.model}.pytorch.eager.fp32", "format": "pytorch", "precision": "fp32",
                "sha256": load.get("weights_sha256", "0" * 64)}


RUNTIME = EagerPyTorch()
