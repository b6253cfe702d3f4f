"""The TND sequence module: a drop-in sequence layer like ``nn.LSTM`` or ncps ``CfC``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checks import as_times, check_float_tensor, check_param_dtype, check_positive_int
from .cell import TNDCell
from .graph import NeuronGraph

READOUTS = ("linear", "identity")


class TND(nn.Module):
    """Topological Neural Dynamics over a neuron graph.

    Args:
        input_size: C, channels of the input sequence.
        graph: the neuron graph G (:class:`NeuronGraph`).
        output_size: channels of the output; read from the output neurons only.
        return_sequences: return every step's output (True) or the last step's only.
        batch_first: x is ``(B, T, C)`` (True, default) or ``(T, B, C)``.
        readout: ``"linear"`` (a learned map from the output neurons' states) or
            ``"identity"`` (the output neurons' states themselves; needs
            ``output_size == len(graph.output_neurons) * state_size``).
        **cell_kw: :class:`TNDCell` options (``state_size``, ``interaction``, ``dynamics``,
            ``per_neuron``, ``mode``, ``solver``, ``substeps``, ``impl``, ...).

    ``forward(x, hx=None, timespans=None) -> (y, h)``:
        x: ``(B, T, C)`` (or ``(T, B, C)`` when ``batch_first=False``, or unbatched ``(T, C)``).
        hx: the state to start from, ``(B, N)`` / ``(B, N, d)`` (unbatched: ``(N,)`` / ``(N, d)``);
            zeros if None.
        timespans: elapsed time of each step, in x's layout without the channel dim:
            ``(B, T)`` (``(T, B)`` when not batch-first; ``(T,)`` unbatched), a trailing 1 allowed,
            or a scalar. Default 1.
        y: ``(B, T, output_size)`` (``(B, output_size)`` if not ``return_sequences``).
        h: the whole neuron state after the last step, ``(B, N)`` if d == 1 else ``(B, N, d)``.

    ``step(x, h=None, dt=None) -> (y, h)``: one time step for control loops, ``x`` ``(B, C)``
    (see :meth:`step`; one C call per step for the fused leaky configurations).
    """

    def __init__(
        self,
        input_size: int,
        graph: NeuronGraph,
        output_size: int,
        return_sequences: bool = True,
        batch_first: bool = True,
        readout: str = "linear",
        **cell_kw: Any,
    ) -> None:
        super().__init__()
        check_positive_int("output_size", output_size)
        if readout not in READOUTS:
            raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")
        self.cell = TNDCell(input_size, graph, **cell_kw)
        self.input_size, self.output_size = input_size, output_size
        self.return_sequences, self.batch_first, self.readout_kind = return_sequences, batch_first, readout
        self.use_fast_path = True  # runtime switch (not part of the config): False forces the reference loop
        d = self.cell.state_size
        self.register_buffer("output_neurons", graph.output_neurons.clone(), persistent=False)
        read_dim = graph.output_neurons.numel() * d
        if readout == "identity":
            if output_size != read_dim:
                raise ValueError(f"readout='identity' needs output_size == {read_dim} (output neurons x state_size), got {output_size}")
            self.readout = nn.Identity()
        else:
            self.readout = nn.Linear(read_dim, output_size)

    @property
    def graph(self) -> NeuronGraph:
        return self.cell.graph

    @property
    def num_neurons(self) -> int:
        return self.cell.num_neurons

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        cfg = self.cell.config()
        cfg.update(output_size=self.output_size, return_sequences=self.return_sequences,
                   batch_first=self.batch_first, readout=self.readout_kind)
        return cfg

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "TND":
        cfg = dict(cfg)
        graph = NeuronGraph.from_dict(cfg.pop("graph"))
        dyn_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in (cfg.pop("dynamics_kw", None) or {}).items()}
        return cls(graph=graph, dynamics_kw=dyn_kw, **cfg)

    # ----------------------------------------------------------------- helpers
    def _timespans(self, timespans: Any, batch: int, steps: int, unbatched: bool, dtype, device) -> torch.Tensor | None:
        """Per-step elapsed times as ``(T, B, 1, 1)``, or None for the default 1.

        Shapes are matched against x's layout explicitly, never broadcast against (B, N),
        so B == N cannot be confused with anything (ncps's bug)."""
        if timespans is None:
            return None
        ts = as_times("timespans", timespans, dtype, device)
        if unbatched:
            expected = [(steps,), (steps, 1)]
        elif self.batch_first:
            expected = [(batch, steps), (batch, steps, 1)]
        else:
            expected = [(steps, batch), (steps, batch, 1)]
        if ts.dim() == 0:
            return ts.expand(steps, batch).reshape(steps, batch, 1, 1)
        if tuple(ts.shape) not in expected:
            raise ValueError(f"timespans must be a scalar or of shape {' or '.join(map(str, expected))} "
                             f"(x's layout without channels), got {tuple(ts.shape)}")
        if unbatched:
            ts = ts.reshape(steps, 1)
        elif self.batch_first:
            ts = ts.reshape(batch, steps).t()
        else:
            ts = ts.reshape(steps, batch)
        return ts.reshape(steps, batch, 1, 1)

    def _initial_state(self, hx: torch.Tensor | None, batch: int, unbatched: bool, x: torch.Tensor) -> torch.Tensor:
        n, d = self.num_neurons, self.cell.state_size
        if hx is None:
            return self.cell.initial_state(batch, x.dtype, x.device)
        check_float_tensor("hx", hx, (1, 2, 3))
        lead = () if unbatched else (batch,)
        allowed = [(*lead, n, d)] + ([(*lead, n)] if d == 1 else [])
        if tuple(hx.shape) not in allowed:
            raise ValueError(f"hx must have shape {' or '.join(map(str, allowed))}, got {tuple(hx.shape)}")
        return hx.reshape(batch, n, d).to(x.dtype)

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None, timespans: Any = None):
        check_float_tensor("x", x, (2, 3), self.input_size)
        check_param_dtype("x", x, self)
        unbatched = x.dim() == 2
        if unbatched:
            xs = x.unsqueeze(1)  # (T, 1, C)
        else:
            xs = x.transpose(0, 1) if self.batch_first else x  # (T, B, C)
        steps, batch = xs.shape[0], xs.shape[1]
        if steps == 0:
            raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
        dts = self._timespans(timespans, batch, steps, unbatched, x.dtype, x.device)
        s = self._initial_state(hx, batch, unbatched, x)
        states = self._run(xs, s, dts)  # (T', B, n_out, d) with T' = T or 1, and the last full state
        outs, s = states
        y = self.readout(outs.flatten(-2))  # (T', B, O)
        if self.return_sequences:
            y = y[:, 0] if unbatched else (y.transpose(0, 1) if self.batch_first else y)
        else:
            y = y[-1, 0] if unbatched else y[-1]
        h = s[0] if unbatched else s
        if self.cell.state_size == 1:
            h = h.squeeze(-1)
        return y, h

    # -------------------------------------------------------------- single step
    def step(self, x: torch.Tensor, h: torch.Tensor | None = None, dt: Any = None):
        """One time step for control loops: ``(y, h) = model.step(x, h)``.

        x: ``(B, C)`` (or unbatched ``(C,)``); h: the state as ``forward`` returns it, ``(B, N)``
        / ``(B, N, d)`` (unbatched ``(N,)`` / ``(N, d)``), zeros if None; dt: the step's elapsed
        time, a number, a scalar tensor or one per sequence ``(B,)``; default 1.
        Returns y ``(B, output_size)`` and the new state in h's layout, exactly what
        ``forward`` returns for the one-step sequence ``x[:, None]`` (up to rounding), so calling
        ``step`` T times with the state carried equals ``forward`` over the T steps.

        Leaky models (the fused configurations) run one C call per step with no autograd (under
        ``torch.no_grad()``/``inference_mode()``, or with nothing requiring a gradient), from a
        snapshot of the prepared weights that is refreshed whenever a parameter changes; every
        other configuration, and grad mode, runs the model's own loop for one step (same
        results, slower). See :mod:`tnd.fast.step`.
        """
        return self.stepper()(x, h, dt)

    def stepper(self):
        """The cached :class:`tnd.fast.step.Stepper` behind :meth:`step` (call it like ``step``;
        holding it saves a lookup per step)."""
        from .fast import step as _step

        st = _step.STEPPERS.get(self)
        if st is None:
            st = _step.STEPPERS[self] = _step.Stepper(self)
        return st

    def _run(self, xs: torch.Tensor, s: torch.Tensor, dts: torch.Tensor | None):
        """The time loop: a fused fast path where one applies (``use_fast_path``), else the
        reference loop. Returns (output neurons' states per step, last full state)."""
        if self.use_fast_path:
            from . import fast

            if fast.supports(self, xs, s, dts):
                return fast.run(self, xs, s, dts)
        return self.run_reference(xs, s, dts)

    def run_reference(self, xs: torch.Tensor, s: torch.Tensor, dts: torch.Tensor | None):
        """The plain reference time loop: the readable definition every fast path is tested against.
        ``xs`` ``(T, B, C)``, ``s`` ``(B, N, d)``, ``dts`` ``(T, B, 1, 1)`` or None."""
        cell = self.cell
        drive = cell.drive(xs)  # all T input projections at once
        prep = cell.interaction.prepare()  # per-sequence work, once
        dt_steps = dts.unbind(0) if dts is not None else [1.0] * xs.shape[0]
        outs = []
        # unbind, not drive[t]: indexing inside the loop makes every step's backward add a
        # zero tensor the size of the whole sequence.
        for drive_t, dt in zip(drive.unbind(0), dt_steps):
            s = cell.step(s, drive_t, dt, prep)
            if self.return_sequences:
                outs.append(s.index_select(1, self.output_neurons))
        if not self.return_sequences:
            outs.append(s.index_select(1, self.output_neurons))
        return torch.stack(outs), s
