"""Wrappers around the reference ``ncps.torch`` CfC and LTC networks.

The networks themselves are ``ncps.torch.CfC`` / ``ncps.torch.LTC`` (ncps >= 1.0), unchanged;
these wrappers only adapt them to the baseline interface (see :mod:`tnd.apps.baselines.recurrent`).

Pitfalls of ncps 1.0.1 worked around here:

* **timespans are broken for batch size > 1.** ``CfC.forward``/``LTC.forward`` take
  ``timespans[:, t].squeeze()``, which turns ``(B, T)`` or ``(B, T, 1)`` into a ``(B,)`` tensor;
  inside the cell it is multiplied with ``(B, H)`` tensors, which raises for ``B != H`` and,
  worse, silently broadcasts along the *unit* axis when ``B == H``. When ``timespans`` is given
  we therefore run ncps's own cell (``module.rnn_cell``, plus its ``lstm`` memory cell when
  ``mixed_memory=True``, and its ``fc`` projection) in a loop with the elapsed time shaped
  ``(B, 1)``; the maths is identical to ``CfC.forward``. Without timespans ``CfC.forward`` /
  ``LTC.forward`` is called directly.
* **state dtype.** ncps creates the zero initial state with the default dtype, ignoring the
  input's dtype (a float64 model still works only through ``torch.cat`` type promotion); we
  always pass an explicit initial state of the input's dtype/device.
* **state shapes.** ncps expects ``hx`` of shape ``(B, units)`` for batched input and ``(units,)``
  for unbatched input, or a tuple ``(h, c)`` of those with ``mixed_memory=True`` (a bare
  tensor then raises). The returned state has the same structure. The wrappers always run
  ncps batched, and the returned state is what ncps returns (batch first), so it can be passed
  back unchanged. For a wired CfC/LTC the state size is ``wiring.units`` (all neurons), not the
  number of motor neurons.
* **LTC** has no output projection (we add a linear readout) and its fully-connected wiring
  draws synapse polarities from its own numpy RNG (``erev_init_seed=1111``), independent of the
  torch seed. A wiring object is built in place for one input size: do not share one wiring
  object between models.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from .recurrent import BaselineModel

try:  # ncps is an optional dependency (extra "pong")
    import ncps
    import ncps.torch as ncps_torch
except ImportError:  # pragma: no cover - exercised only without ncps
    ncps = None
    ncps_torch = None

__all__ = ["CfC", "LTC"]


def _require_ncps(name: str) -> None:
    if ncps_torch is None:
        raise ImportError(f"{name} needs the 'ncps' package (pip install 'ncps>=1.0' or "
                          f"install tnd with the 'pong' extra)")


def _prepare_timespans(timespans: Any, x: torch.Tensor, unbatched: bool) -> Optional[torch.Tensor]:
    """Return timespans as a (B, T, 1) tensor of x's dtype, or None."""
    if timespans is None:
        return None
    B, T, _ = x.shape
    if isinstance(timespans, (int, float)):
        ts = torch.full((B, T, 1), float(timespans), dtype=x.dtype, device=x.device)
    else:
        ts = torch.as_tensor(timespans, dtype=x.dtype, device=x.device)
        if unbatched:
            ts = ts.unsqueeze(0)
        if ts.dim() == 2:
            ts = ts.unsqueeze(-1)
        expect = "(T,) or (T, 1)" if unbatched else "(B, T) or (B, T, 1)"
        if ts.dim() != 3 or ts.shape[-1] != 1 or ts.shape[1] != T or ts.shape[0] not in (1, B):
            raise ValueError(f"timespans: expected a number or a tensor of shape {expect} with "
                             f"T={T}" + ("" if unbatched else f", B={B}")
                             + f", got shape {tuple(torch.as_tensor(timespans).shape)}")
        ts = ts.expand(B, T, 1)
    if not bool(torch.isfinite(ts).all()):
        raise ValueError("timespans: expected only finite values")
    return ts


class _NcpsWrapper(BaselineModel):
    """Shared logic: validation, explicit zero state, timespans loop over ncps's cell."""

    rnn: nn.Module

    def _state_size(self) -> int:
        return int(self.rnn.state_size)

    def _zero_state(self, x: torch.Tensor):
        h = x.new_zeros(x.shape[0], self._state_size())
        return (h, h.clone()) if self.rnn.use_mixed else h

    def forward(self, x: torch.Tensor, hx: Any = None, timespans: Any = None):
        """``forward(x, hx=None, timespans=None) -> (y, h)``.

        ``timespans``: elapsed time per step, a number or a tensor of shape ``(B, T)`` /
        ``(B, T, 1)`` (``(T,)`` / ``(T, 1)`` for unbatched ``x``); ``None`` means 1.0.
        """
        unbatched = isinstance(x, torch.Tensor) and x.dim() == 2
        ts_holder = {"ts": timespans, "unbatched": unbatched}
        return super().forward(x, hx, _ts=ts_holder)

    def _forward_batched(self, x, hx, _ts=None):
        if hx is None:
            hx = self._zero_state(x)
        elif self.rnn.use_mixed and not (isinstance(hx, (tuple, list)) and len(hx) == 2):
            raise TypeError("hx: expected a tuple (h, c) for a model with mixed_memory=True")
        ts = _prepare_timespans(_ts["ts"], x, _ts["unbatched"]) if _ts else None
        if ts is None:
            out, h = self.rnn(x, hx)
        else:
            out, h = self._loop_with_timespans(x, hx, ts)
        return self._readout(out), h

    def _loop_with_timespans(self, x, hx, ts):
        rnn = self.rnn
        if rnn.use_mixed:
            h, c = hx
        else:
            h, c = hx, None
        outs = []
        for xt, dt in zip(x.unbind(1), ts.unbind(1)):  # dt: (B, 1), broadcasts over units
            if rnn.use_mixed:
                h, c = rnn.lstm(xt, (h, c))
            h_out, h = rnn.rnn_cell(xt, h, dt)
            outs.append(self._cell_out(h_out))
        return torch.stack(outs, dim=1), ((h, c) if rnn.use_mixed else h)

    def _cell_out(self, h_out):
        return h_out

    def _readout(self, out):
        return out


class CfC(_NcpsWrapper):
    """Closed-form continuous-time network: ``ncps.torch.CfC`` + linear readout.

    By default ``units=hidden_size`` (ncps's dense, fully-connected CfC with a backbone MLP of
    ``backbone_units`` = 128 units and 1 layer unless given). Pass ``wiring=`` an
    ``ncps.wirings.Wiring`` (e.g. ``AutoNCP``) to use a wired CfC instead; then the state size is
    ``wiring.units`` and ``hidden_size`` is ignored except for bookkeeping.

    The readout is ncps's own ``proj_size=output_size`` projection (a ``nn.Linear`` applied to
    every step's output) unless ``use_ncps_proj=False``, in which case an identical separate
    ``nn.Linear`` is used. Both give the same parameter count.

    State ``h``: ``(B, units)``, or ``(h, c)`` each ``(B, units)`` with ``mixed_memory=True``.
    ``forward`` accepts ``timespans`` (see :meth:`forward`).
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 wiring: Any = None, mixed_memory: bool = False, mode: str = "default",
                 activation: str = "lecun_tanh", backbone_units: Optional[int] = None,
                 backbone_layers: Optional[int] = None, backbone_dropout: Optional[float] = None,
                 use_ncps_proj: bool = True) -> None:
        super().__init__(input_size, output_size, hidden_size)
        _require_ncps("CfC")
        units = hidden_size if wiring is None else wiring
        self.use_ncps_proj = bool(use_ncps_proj)
        self.rnn = ncps_torch.CfC(
            input_size, units, proj_size=output_size if use_ncps_proj else None,
            return_sequences=True, batch_first=True, mixed_memory=mixed_memory, mode=mode,
            activation=activation, backbone_units=backbone_units,
            backbone_layers=backbone_layers, backbone_dropout=backbone_dropout)
        self.readout = None if use_ncps_proj else nn.Linear(int(self.rnn.output_size), output_size)

    def _cell_out(self, h_out):
        return self.rnn.fc(h_out)

    def _readout(self, out):
        return out if self.readout is None else self.readout(out)


class LTC(_NcpsWrapper):
    """Liquid time-constant network: ``ncps.torch.LTC`` + linear readout (slow; for benchmarks).

    ``units=hidden_size`` with ncps's ``FullyConnected`` wiring by default, or ``wiring=``.
    State ``h``: ``(B, units)``, or ``(h, c)`` with ``mixed_memory=True``.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 wiring: Any = None, mixed_memory: bool = False, ode_unfolds: int = 6,
                 input_mapping: str = "affine", output_mapping: str = "affine",
                 epsilon: float = 1e-8, implicit_param_constraints: bool = True) -> None:
        super().__init__(input_size, output_size, hidden_size)
        _require_ncps("LTC")
        units = hidden_size if wiring is None else wiring
        self.rnn = ncps_torch.LTC(
            input_size, units, return_sequences=True, batch_first=True,
            mixed_memory=mixed_memory, input_mapping=input_mapping,
            output_mapping=output_mapping, ode_unfolds=ode_unfolds, epsilon=epsilon,
            implicit_param_constraints=implicit_param_constraints)
        self.readout = nn.Linear(int(self.rnn.output_size), output_size)

    def _readout(self, out):
        return self.readout(out)
