"""The registry of fused families: which cell configurations have a fused loop.

A family (:class:`tnd.fast._util.FusedFamily`) is declared once, in its own module, with what it
prepares from the model, its kernel and its autograd Function; adding one is that module (and
its ``csrc/*.inc.cpp``, #included by ``csrc/tnd_loop.cpp``) plus one line in ``FAMILIES`` below.
Looked up by one key, the exact types of the cell's interaction and dynamics.
"""

from __future__ import annotations

from . import attention, gated, loop, mlp

#: every fused family; (interaction type, dynamics type) -> family
FAMILIES = {(f.interaction, f.dynamics): f for f in (loop.LEAKY, gated.GATED, mlp.MLP, attention.ATTENTION)}


def lookup(cell):
    """The family that runs ``cell`` fused (one exponential-Euler sub-step per time step, or per
    round with ``propagation_steps`` > 1: :func:`tnd.fast.run` repeats the input), or None."""
    if cell.solver != "exp_euler" or cell.substeps != 1:
        return None
    family = FAMILIES.get((type(cell.interaction), type(cell.dynamics)))
    return family if family is not None and family.accepts(cell) else None
