"""FreeNet S2-Mixer grouped sampling (5-D view + per-group slices) -> contiguous 4-D channel slices.

The rewrite itself is the model's own reparameterisation, `FreeNet.to_contiguous_layout()` (exact:
one channel permutation per stage folded into the neighbouring weights); this pass only finds the
FreeNets in a model and says why it does not apply.
"""

from __future__ import annotations

from torch import nn

from freenet.freenet import FreeNet
from freenet.layers import S2Mixer

NAME = "fold_channel_permutation"
KIND = "module"
BEFORE = "S2Mixer(layout=grouped): reshape 5-D + slice + cat -> S2Mixer(layout=contiguous): 4-D channel slices"


def check(model: nn.Module) -> str | None:
    """Why the pass does not rewrite `model` (None: it will)."""
    nets = [m for m in model.modules() if isinstance(m, FreeNet)]
    if not nets:
        return f"no FreeNet in {type(model).__name__}"
    for net in nets:
        reason = net.contiguous_layout_refusal()
        if reason:
            return reason
    if all(is_contiguous(m) for m in model.modules() if isinstance(m, S2Mixer)):
        return "every S2Mixer is already in the contiguous layout"
    return None


def run(model: nn.Module) -> int:
    """Rewrite every grouped-layout FreeNet stage in place; returns the number of mixers rewritten.
    Raises ValueError where the permutation would change the model (GroupNorm)."""
    return sum(net.to_contiguous_layout() for net in model.modules() if isinstance(net, FreeNet))


def is_contiguous(mixer: S2Mixer) -> bool:
    return mixer.layout == "contiguous" or mixer.groups == 1
