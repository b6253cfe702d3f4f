"""LRU baseline: the ``lru-pytorch`` package's Linear Recurrent Unit behind the baseline interface.

The recurrence is ``LRU_pytorch.LRU`` (``lru-pytorch >= 0.1.3``, Orvieto et al. 2023:
``s_t = Lambda s_{t-1} + gamma * (B u_t)``, ``y_t = Re(C s_t) + D u_t`` with a complex diagonal
``Lambda`` parameterised by ``nu_log`` / ``theta_log`` and the normalisation ``gamma``), unchanged.
Around it, one block per layer as in the paper's deep LRU: ``v = LRU(LayerNorm(u))``,
``u <- u + GLU(Linear(GELU(v)))`` (the GLU halves a ``2 * hidden_size`` projection), after a linear
input projection ``u = Linear(x)`` and before a linear readout of every step.

Pitfalls of lru-pytorch 0.1.3 worked around here:

* **its state is not returned.** ``LRU.forward(input, state)`` starts from ``state`` but keeps the
  running state in ``self.state`` and zeroes it at the end of each sequence. To carry the state
  (step-by-step play), :class:`_RecordingLRU` (the package's class; only ``state`` becomes a
  recording property) keeps every value the package's forward assigns to ``self.state``: the
  state after the last step is the one before the final zeroing. The recurrence is still the
  package's own.
* **no batched state.** For a batch ``(B, T, H)`` the package loops over the batch and starts
  every sequence but the first from zero, whatever ``state`` says. The wrapper therefore calls
  the package on one sequence ``(T, H)`` at a time with that sequence's own state. (The package
  loops over time and batch in Python either way: expect it to be one to two orders of magnitude
  slower per step than ``nn.LSTM``.)
* **default dtype only.** The package allocates its outputs with the default dtype; the model
  must be in ``torch.get_default_dtype()`` (float32 unless changed), else a clear TypeError.
* **complex parameters.** ``B`` and ``C`` are complex; :func:`~.registry.count_parameters`
  counts each complex entry as two real parameters.

State ``s``: ``(B, num_layers, d_state, 2)``, the complex LRU state of every layer as a real
tensor (``torch.view_as_real``), so it is batch first and real like every baseline state.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from tnd.checks import check_positive_int

from .recurrent import BaselineModel

try:  # lru-pytorch is an optional dependency (extras "pong" and "suite")
    from LRU_pytorch import LRU as _PackageLRU
except ImportError:  # pragma: no cover - exercised only without lru-pytorch
    _PackageLRU = None

__all__ = ["LRU"]


if _PackageLRU is not None:
    class _RecordingLRU(_PackageLRU):
        """lru-pytorch's ``LRU``; ``state`` records what the package's forward assigns to it."""

        @property
        def state(self) -> torch.Tensor:
            return self.__dict__["_lru_state"]

        @state.setter
        def state(self, value: torch.Tensor) -> None:
            self.__dict__["_lru_state"] = value
            record = self.__dict__.get("_lru_record")
            if record is not None:
                record.append(value)

        def run(self, u: torch.Tensor, s0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """One sequence ``u`` ``(T, H)`` from the complex state ``s0`` ``(N,)`` through the
            package's forward; returns ``(y (T, H), state after the last step (N,))``."""
            record: list = []
            self.__dict__["_lru_record"] = record
            try:
                y = self.forward(u, s0)
            finally:
                self.__dict__["_lru_record"] = None
            # the package assigns: the start state, one state per step, then zeros
            if len(record) != u.shape[0] + 2:
                raise RuntimeError(f"lru-pytorch: unexpected state updates ({len(record)} for "
                                   f"{u.shape[0]} steps); this wrapper supports lru-pytorch 0.1.x")
            return y, record[-2]
else:  # pragma: no cover
    _RecordingLRU = None


class LRU(BaselineModel):
    """``num_layers`` LRU blocks (lru-pytorch's LRU, ``d_state`` complex states each; default
    ``hidden_size``) of width ``hidden_size``, with an input projection and a linear readout.

    ``r_min`` / ``r_max`` / ``max_phase``: the package's ring initialisation of ``Lambda``.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 num_layers: int = 1, d_state: Optional[int] = None, r_min: float = 0.0,
                 r_max: float = 1.0, max_phase: float = 6.283) -> None:
        super().__init__(input_size, output_size, hidden_size)
        if _RecordingLRU is None:
            raise ImportError("LRU needs the 'lru-pytorch' package (pip install 'lru-pytorch>=0.1.3' "
                              "or install tnd with the 'pong' or 'suite' extra)")
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.d_state = check_positive_int("d_state", hidden_size if d_state is None else d_state)
        if not (0.0 <= float(r_min) < float(r_max) <= 1.0):
            raise ValueError(f"r_min, r_max: expected 0 <= r_min < r_max <= 1, got {r_min}, {r_max}")
        d = hidden_size
        self.input_proj = nn.Linear(input_size, d)
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(num_layers))
        self.lrus = nn.ModuleList(_RecordingLRU(d, d, self.d_state, rmin=float(r_min), rmax=float(r_max),
                                                max_phase=float(max_phase)) for _ in range(num_layers))
        self.glus = nn.ModuleList(nn.Linear(d, 2 * d) for _ in range(num_layers))
        self.readout = nn.Linear(d, output_size)

    def _forward_batched(self, x: torch.Tensor, hx: Optional[torch.Tensor]):
        B, L, N = x.shape[0], self.num_layers, self.d_state
        if x.dtype != torch.get_default_dtype():
            raise TypeError(f"x: LRU (lru-pytorch) computes in the default dtype "
                            f"{torch.get_default_dtype()}, got a model and input of dtype {x.dtype}")
        if hx is None:
            s = x.new_zeros(B, L, N, 2)
        else:
            if not isinstance(hx, torch.Tensor) or hx.dim() != 4 or tuple(hx.shape[1:]) != (L, N, 2):
                shape = tuple(hx.shape) if isinstance(hx, torch.Tensor) else type(hx).__name__
                raise ValueError(f"hx: expected a tensor of shape (B, {L}, {N}, 2), got {shape}")
            s = hx
        s = torch.view_as_complex(s.contiguous())  # (B, L, N)
        u = self.input_proj(x)
        finals = []
        for i, (norm, lru, glu) in enumerate(zip(self.norms, self.lrus, self.glus)):
            v_in = norm(u)
            vs, si = [], []
            for b in range(B):
                vb, sb = lru.run(v_in[b], s[b, i])
                vs.append(vb)
                si.append(sb)
            v = torch.stack(vs, dim=0)
            u = u + F.glu(glu(F.gelu(v)), dim=-1)
            finals.append(torch.stack(si, dim=0))
        state = torch.view_as_real(torch.stack(finals, dim=1))  # (B, L, N, 2)
        return self.readout(u), state

    def extra_repr(self) -> str:
        return super().extra_repr() + f", num_layers={self.num_layers}, d_state={self.d_state}"
