"""Make `import torchvision` work next to the CPU-only torch wheel when its extension cannot load.

PyPI's torchvision wheel is built against the CUDA torch. Next to the CPU torch that this project pins
(the only torch build that fits the shared toolchain venv), its compiled extension `_C.so` fails to
load (it links CUDA libraries), and torchvision's Python code then dies at import time with
"operator torchvision::nms does not exist" because it registers fake kernels for ops whose schema
was never defined. Defining the two schemas it touches (`nms`, `qnms`) first makes the import work:
the model definitions (all this project uses) are pure Python; only `torchvision.ops` kernels stay
unavailable. With a CPU build of torchvision (a user's own machine) the extension loads and nothing
here runs.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_applied = False


def _extension_loads() -> bool:
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return True  # torchvision absent: nothing to fix, the import error will speak for itself
    pkg_dir = Path(next(iter(spec.submodule_search_locations)))
    candidates = sorted(pkg_dir.glob("_C*.so")) + sorted(pkg_dir.glob("_C*.pyd"))
    if not candidates:
        return True
    import torch

    try:
        torch.ops.load_library(str(candidates[0]))
    except (OSError, RuntimeError):
        return False
    return True


def ensure_torchvision_importable() -> None:
    """Apply the schema workaround once, and only if torchvision's extension fails to load."""
    global _applied
    if _applied or "torchvision" in sys.modules:
        return
    _applied = True
    if _extension_loads():
        return
    import torch

    lib = torch.library.Library("torchvision", "DEF")  # noqa: F841 - kept alive below
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    # The Library object unregisters its definitions when garbage collected.
    globals()["_torchvision_library"] = lib
