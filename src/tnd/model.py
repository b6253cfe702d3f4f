"""The TND sequence module: a drop-in sequence layer like ``nn.LSTM`` or ncps ``CfC``."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .checks import (as_times, check_size, check_bool, check_choice, check_float_tensor, check_kwargs, check_param_dtype,
                     check_positive_int)
from .cell import TNDCell
from .graph import NeuronGraph

READOUTS = ("linear", "identity")
#: F of a config that names none (see :meth:`TND.from_config`)
LEGACY_DYNAMICS = "leaky"


def _check_ids(name: str, ids: list) -> None:
    """Neuron ids (and signs) in a config are JSON ints: a bool or a float is not taken for one."""
    for v in ids:
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must hold ints, got {type(v).__name__} {v!r}")


class TND(nn.Module):
    """Topological Neural Dynamics over a neuron graph: a sequence layer like ``nn.LSTM``.

    Args:
        input_size: C, channels of the input sequence.
        graph: the neuron graph G (:class:`NeuronGraph`), N neurons.
        output_size: O, channels of the output; read from the output neurons only.
        return_sequences: return every step's output (True) or the last step's only.
        batch_first: x is ``(B, T, C)`` (True, default) or ``(T, B, C)``.
        readout: ``"linear"`` (a learned map from the output neurons' states) or
            ``"identity"`` (the output neurons' states themselves; needs
            ``output_size == len(graph.output_neurons) * state_size``).

    Keyword-only options of the cell (:class:`TNDCell`, which documents them in full):
        state_size: d, dimensions of each neuron's state (1).
        interaction: I, ``"linear"`` (default) or ``"attention"``.
        dynamics: F, ``"gated"`` (default), ``"leaky"`` (the default before docs/DROPIN.md) or ``"mlp"``.
        per_neuron: one F per neuron (True, default) or one shared F (False).
        mode: ``"discrete"`` (default) or ``"continuous"``.
        solver: continuous mode's solver (``"rk4"`` by default, ``"euler"``, ``"midpoint"``,
            ``"exp_euler"``, adaptive ``"dopri5"``, ...); None in discrete mode.
        substeps: continuous mode's minimum sub-steps per input step (2 by default).
        propagation_steps: K, rounds of interaction per input step in discrete mode (1 by
            default, the paper's update): the step of length ``dt`` is K sub-steps of ``dt / K``,
            each one round of I then F with the input held, so a signal crosses K edges per input
            step: x(t) reaches the input neurons in the first round and the neurons within K - 1
            hops of them by the end of step t, and an output neuron k hops from the inputs reacts
            ``k // K`` steps late instead of k. Outputs are read after the K-th round. Fused like K = 1 (:meth:`step`: one
            call = K rounds). Continuous mode refuses K != 1.
        impl: ``"auto"`` (default), ``"dense"`` or ``"sparse"`` interaction path.
        interaction_kw, dynamics_kw: extra options of I and F (dicts).

    Every option is type-checked (a bool must be a ``bool``, a size an ``int``, a number finite
    and in range); a wrong one raises TypeError/ValueError naming it.

    Shapes: B batch, T steps, C ``input_size``, N ``graph.num_neurons``, d ``state_size``,
    O ``output_size``. See :meth:`forward` (whole sequences) and :meth:`step` (one step).
    """

    def __init__(
        self,
        input_size: int,
        graph: NeuronGraph,
        output_size: int,
        return_sequences: bool = True,
        batch_first: bool = True,
        readout: str = "linear",
        *,
        state_size: int = 1,
        interaction: str = "linear",
        dynamics: str = "gated",
        per_neuron: bool = True,
        mode: str = "discrete",
        solver: str | None = None,
        substeps: int | None = None,
        impl: str = "auto",
        interaction_kw: dict[str, Any] | None = None,
        dynamics_kw: dict[str, Any] | None = None,
        propagation_steps: int = 1,
    ) -> None:
        super().__init__()
        check_size("output_size", output_size)
        check_bool("return_sequences", return_sequences)
        check_bool("batch_first", batch_first)
        check_choice("readout", readout, READOUTS)
        self.cell = TNDCell(input_size, graph, state_size=state_size, interaction=interaction, dynamics=dynamics,
                            per_neuron=per_neuron, mode=mode, solver=solver, substeps=substeps, impl=impl,
                            interaction_kw=interaction_kw, dynamics_kw=dynamics_kw,
                            propagation_steps=propagation_steps)
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
        """The neuron graph G (the cell's)."""
        return self.cell.graph

    @property
    def num_neurons(self) -> int:
        """N, the number of neurons."""
        return self.cell.num_neurons

    # ------------------------------------------------------------------ config
    def config(self) -> dict[str, Any]:
        """The constructor's arguments as a JSON-serialisable dict; :meth:`from_config` rebuilds
        the model (with fresh weights) and :func:`tnd.save_model` saves it next to the weights."""
        cfg = self.cell.config()
        cfg.update(output_size=self.output_size, return_sequences=self.return_sequences,
                   batch_first=self.batch_first, readout=self.readout_kind)
        return cfg

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "TND":
        """A new model (freshly initialised weights) from :meth:`config`'s dict (one saved before
        ``propagation_steps`` existed has none: K = 1, the update it was trained with). Every config
        tnd writes names its F; one without ``"dynamics"`` is read as ``"leaky"``, the default of
        the releases before the gated family became it, so old hand-written configs keep meaning
        what they meant (:meth:`state_shapes` reads it the same way)."""
        if not isinstance(cfg, dict):
            raise TypeError(f"config must be a dict, got {type(cfg).__name__}")
        cfg = dict(cfg)
        cfg.setdefault("dynamics", LEGACY_DYNAMICS)
        if "graph" not in cfg:
            raise ValueError("config is missing key 'graph'")
        graph = NeuronGraph.from_dict(cfg.pop("graph"))
        dyn_kw = check_kwargs("dynamics_kw", cfg.pop("dynamics_kw", None))
        dyn_kw = {k: tuple(v) if isinstance(v, list) else v for k, v in dyn_kw.items()}
        return cls(graph=graph, dynamics_kw=dyn_kw, **cfg)

    @classmethod
    def state_shapes(cls, cfg: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        """The shape of every tensor in the ``state_dict`` of the model that config ``cfg`` describes,
        from the sizes in the config alone: nothing is built or allocated (how :func:`tnd.load_model`
        checks a config against the weights file's header first). The fields it reads are
        type-checked (errors name them); the rest is checked when the model is built."""
        from .dynamics import DYNAMICS
        from .interactions import INTERACTIONS

        if not isinstance(cfg, dict):
            raise TypeError(f"config must be a dict, got {type(cfg).__name__}")
        g = cfg.get("graph")
        if not isinstance(g, dict):
            raise TypeError(f"graph must be a dict (NeuronGraph.to_dict), got {type(g).__name__}")
        n = check_positive_int("graph.num_neurons", g.get("num_neurons"))
        ei = g.get("edge_index")
        if not (isinstance(ei, list) and len(ei) == 2 and all(isinstance(r, list) for r in ei) and len(ei[0]) == len(ei[1])):
            raise ValueError("graph.edge_index must be two lists of equal length (sources, targets)")
        _check_ids("graph.edge_index", ei[0] + ei[1])
        sign = g.get("sign")
        if sign is not None:
            if not isinstance(sign, list):
                raise TypeError(f"graph.sign must be None or a list of +1/-1, got {type(sign).__name__}")
            _check_ids("graph.sign", sign)
        n_io = []
        for key in ("input_neurons", "output_neurons"):
            ids = g.get(key)
            if not isinstance(ids, list) or not ids:
                raise ValueError(f"graph.{key} must be a non-empty list of neuron ids, got {ids!r}"[:300])
            _check_ids(f"graph.{key}", ids)
            n_io.append(len(ids))
        check_bool("graph.allow_unreachable", g.get("allow_unreachable", False))
        n_in, n_out = n_io
        e = len(ei[0])
        c = check_positive_int("input_size", cfg.get("input_size"))
        o = check_positive_int("output_size", cfg.get("output_size"))
        d = check_positive_int("state_size", cfg.get("state_size", 1))
        rows = n if check_bool("per_neuron", cfg.get("per_neuron", True)) else 1
        inter = INTERACTIONS[check_choice("interaction", cfg.get("interaction", "linear"), tuple(sorted(INTERACTIONS)))]
        dyn = DYNAMICS[check_choice("dynamics", cfg.get("dynamics", LEGACY_DYNAMICS), tuple(sorted(DYNAMICS)))]
        inter_kw = check_kwargs("interaction_kw", cfg.get("interaction_kw"))
        dyn_kw = check_kwargs("dynamics_kw", cfg.get("dynamics_kw"))
        readout = check_choice("readout", cfg.get("readout", "linear"), READOUTS)
        shapes = {"cell.input_proj.weight": (n_in * d, c), "cell.input_proj.bias": (n_in * d,)}
        shapes.update({f"cell.interaction.{k}": v for k, v in inter.state_shapes(n, e, d, **inter_kw).items()})
        shapes.update({f"cell.dynamics.{k}": v for k, v in dyn.state_shapes(rows, d, **dyn_kw).items()})
        if readout == "linear":
            shapes.update({"readout.weight": (o, n_out * d), "readout.bias": (o,)})
        return shapes

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

    def start_state(self, hx: torch.Tensor | None, batch: int, unbatched: bool, x: torch.Tensor,
                       clamp: bool = False, name: str = "hx") -> torch.Tensor:
        """The checked starting state ``(B, N, d)`` of a run: zeros for ``hx=None``, else ``hx``
        (``(B, N, d)``, ``(B, N)`` for d = 1, without B when ``unbatched``) after shape, dtype and
        state-bound checks (``clamp``: clamped into the bound); errors name the argument ``name``."""
        n, d = self.num_neurons, self.cell.state_size
        if hx is None:
            return self.cell.initial_state(batch, x.dtype, x.device)
        check_float_tensor(name, hx, (1, 2, 3))
        lead = () if unbatched else (batch,)
        allowed = [(*lead, n, d)] + ([(*lead, n)] if d == 1 else [])
        if tuple(hx.shape) not in allowed:
            raise ValueError(f"{name} must have shape {' or '.join(map(str, allowed))}, got {tuple(hx.shape)}")
        if hx.dtype != x.dtype:  # as x: no silent casts (x has the parameters' dtype, checked before)
            raise TypeError(f"{name} has dtype {hx.dtype} but x and the model's parameters are {x.dtype}; "
                            f"convert {name} (e.g. {name}.to({x.dtype}))")
        if hx.device != x.device:
            raise ValueError(f"{name} is on device {hx.device} but x and the model are on {x.device}")
        return self.cell.check_state(name, hx, clamp).reshape(batch, n, d)

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None, timespans: Any = None, *,
                clamp_hx: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the system over a sequence: ``(y, h) = model(x, hx, timespans)``.

        Args:
            x: ``(B, T, C)`` (``(T, B, C)`` when ``batch_first=False``; unbatched ``(T, C)``), T >= 1,
                finite, in the parameters' dtype and on their device (``meta`` for shape inference).
            hx: the state to start from, ``(B, N)`` / ``(B, N, d)`` (unbatched ``(N,)`` / ``(N, d)``),
                x's dtype, inside the family's state bound (:meth:`TNDCell.state_bound`: 1, or 5/3
                for midpoint); zeros if None. Outside the bound it is refused, unless
                ``clamp_hx=True`` clamps it into the bound.
            timespans: elapsed time of each step (> 0, finite, not a bool), in x's layout without the
                channel dim: ``(B, T)`` (``(T, B)`` when not batch-first; ``(T,)`` unbatched), a
                trailing 1 allowed, or a scalar. Default 1.

        Returns:
            y: ``(B, T, O)`` (``(T, B, O)`` when not batch-first; ``(B, O)`` without
            ``return_sequences``; unbatched without the B dim).
            h: the whole neuron state after the last step, ``(B, N)`` if d == 1 else ``(B, N, d)``
            (unbatched without the B dim); pass it back as ``hx`` to continue the sequence.
        """
        check_float_tensor("x", x, (2, 3), self.input_size)
        check_param_dtype("x", x, self)
        check_bool("clamp_hx", clamp_hx)
        unbatched = x.dim() == 2
        if unbatched:
            xs = x.unsqueeze(1)  # (T, 1, C)
        else:
            xs = x.transpose(0, 1) if self.batch_first else x  # (T, B, C)
        steps, batch = xs.shape[0], xs.shape[1]
        if steps == 0:
            raise ValueError(f"x must have at least one time step, got shape {tuple(x.shape)}")
        dts = self._timespans(timespans, batch, steps, unbatched, x.dtype, x.device)
        s = self.start_state(hx, batch, unbatched, x, clamp_hx)
        states = self.run_loop(xs, s, dts)  # (T', B, n_out, d) with T' = T or 1, and the last full state
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
        ``step`` T times with the state carried equals ``forward`` over the T steps. One call is
        one input step: all ``propagation_steps`` rounds, in the same C call.

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

    def run_loop(self, xs: torch.Tensor, s: torch.Tensor, dts: torch.Tensor | None):
        """The time loop in the internal layout of :meth:`run_reference` (same arguments and
        results): a fused fast path where one applies (``use_fast_path``), else the reference loop."""
        if self.use_fast_path and not xs.is_meta:  # meta: shape inference through the reference loop
            from . import fast

            if fast.supports(self, xs, s, dts):
                return fast.run(self, xs, s, dts)
        return self.run_reference(xs, s, dts)

    def run_reference(self, xs: torch.Tensor, s: torch.Tensor, dts: torch.Tensor | None):
        """The plain reference time loop: the readable definition every fast path is tested against.

        Args (already checked, in the internal layout): ``xs`` ``(T, B, C)``, ``s`` ``(B, N, d)``,
        ``dts`` ``(T, B, 1, 1)`` or None (every step 1).

        Returns:
            The output neurons' states per step ``(T', B, n_out, d)`` (T' = T with
            ``return_sequences``, else 1) and the last full state ``(B, N, d)``.
        """
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
