"""One step of the graph-coupled system T = (G, I, F).

    u(t)   = I(G, s(t))                       what each neuron receives along its in-edges
    s(t+1) = solve(F(s, u, x(t)), dt)         each neuron's own update (discrete or continuous)

External input ``x`` (C channels) reaches the input neurons only, through a learned
projection; every other neuron's drive is zero.

In discrete mode an input step may hold ``propagation_steps = K`` rounds of that update (each
round one I then one F, over ``dt / K``, the drive held), so that a signal crosses K edges per
input step instead of one (see :class:`TNDCell`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from . import solvers
from .checks import (as_times, check_size, check_bool, check_choice, check_float_tensor, check_int, check_kwargs,
                     check_param_dtype, check_positive_int, check_state_bound)
from .dynamics import DYNAMICS, NeuronDynamics, make_dynamics
from .graph import NeuronGraph
from .interactions import INTERACTIONS, Interaction, make_interaction
from .interactions.base import IMPLS

MODES = ("discrete", "continuous")
#: most rounds of interaction one input step may take (``propagation_steps``)
MAX_PROPAGATION_STEPS = solvers.MAX_SUBSTEPS


class TNDCell(nn.Module):
    """One step of a TND system.

    Args:
        input_size: C, channels of the external input.
        graph: the neuron graph G.
        state_size: d, dimensions of each neuron's state.
        interaction: I by name (``"linear"`` or ``"attention"``).
        dynamics: F by name: ``"gated"`` (default: a state- and input-dependent time constant, so
            a neuron can hold a value or follow its input; docs/DROPIN.md), ``"leaky"`` (a fixed
            time constant per neuron; the default before docs/DROPIN.md) or ``"mlp"``.
        per_neuron: one F per neuron (True) or one F shared by all (False, the paper's).
        mode: ``"discrete"`` (the paper's update, exponential Euler with one sub-step) or
            ``"continuous"`` (F as a vector field, integrated by ``solver``).
        solver: for continuous mode: ``"rk4"`` (default), ``"euler"``, ``"midpoint"``,
            ``"exp_euler"`` or an adaptive torchdiffeq method such as ``"dopri5"``.
        substeps: sub-steps per input step for fixed-step solvers.
        propagation_steps: K, rounds of interaction per input step (discrete mode; an ``int``
            in ``[1, MAX_PROPAGATION_STEPS]``, default 1, the paper's update). Each input step of
            length ``dt`` is split into K sub-steps of length ``dt / K``; each sub-step is one round,
            ``u = I(G, s)`` then one exponential-Euler update of F from the state the previous round
            left, with the input drive ``x(t)`` held: ``s <- c + (s - c) exp(-lambda dt / K)``,
            ``(lambda, c) = F(s, u, x(t))``. A signal crosses one edge per round: after one input
            step a neuron's state depends on exactly the states of the neurons within K hops
            upstream of it, and on x(t) exactly where it is within K - 1 hops of an input neuron
            (x enters the input neurons in the first round). K = 1 is today's update,
            bit-identical. Only the state after the K-th round is returned and read out. Sub-steps of ``dt / K`` (not K steps of ``dt``) keep the model's
            time scale: a neuron whose rate and target stay fixed within the step (no in-edges)
            ends where K = 1 puts it (``exp(-lambda dt / K)^K = exp(-lambda dt)``), ``tau`` keeps its
            meaning in input steps, and large K tends to the continuous flow with the input held.
            Each round is a convex combination of ``s`` and a target in [-1, 1], so the state
            bound |s| <= 1 of docs/STABILITY.md holds for every K. Continuous mode refuses K != 1:
            its solver integrates the coupled flow, where a signal is not held to one edge per
            input step (each solver stage moves it one edge); its resolution is ``substeps``.
        impl: interaction path, ``"auto"``, ``"dense"`` or ``"sparse"``.
        interaction_kw: extra keyword arguments of I (``gain``; attention: ``key_scale``).
        dynamics_kw: extra keyword arguments of F (``tau_min``, ``tau_max``, ``tau_init``; leaky:
            ``activation``; mlp: ``hidden_size``). ``tau_init`` is the range the time constants
            start in, log-uniform per neuron: a pair ``(low, high)`` or ``"span"`` (default), from
            one step to ``tau_max`` (see :mod:`tnd.dynamics.base`; ``(1, 10)`` before docs/DROPIN.md).

    Every option is type-checked: booleans must be ``bool``, sizes ``int``, numbers finite and in
    range; a wrong one raises TypeError/ValueError naming it.

    ``forward(x, hx=None, dt=1.0) -> s``: one step, ``x`` ``(B, C)``, ``hx`` ``(B, N, d)`` -> ``(B, N, d)``.
    Shapes: B batch, C ``input_size``, N ``graph.num_neurons``, d ``state_size``.
    """

    def __init__(
        self,
        input_size: int,
        graph: NeuronGraph,
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
        check_size("input_size", input_size)
        check_size("state_size", state_size)
        if not isinstance(graph, NeuronGraph):
            raise TypeError(f"graph must be a NeuronGraph, got {type(graph).__name__}")
        check_choice("interaction", interaction, tuple(sorted(INTERACTIONS)))
        check_choice("dynamics", dynamics, tuple(sorted(DYNAMICS)))
        check_bool("per_neuron", per_neuron)
        check_choice("mode", mode, MODES)
        check_choice("solver", solver, (None, *solvers.SOLVERS))
        if substeps is not None:
            check_positive_int("substeps", substeps)
            check_int("substeps", substeps, 1, solvers.MAX_SUBSTEPS)
        check_choice("impl", impl, IMPLS)
        propagation_steps = check_int("propagation_steps", propagation_steps, 1, MAX_PROPAGATION_STEPS)
        if mode == "continuous" and propagation_steps != 1:
            raise ValueError(f"propagation_steps applies to mode='discrete' (got {propagation_steps} with mode='continuous'): "
                             "the continuous solver integrates the coupled flow, where a signal is not held to one "
                             "edge per input step; raise substeps for a finer resolution instead")
        interaction_kw = check_kwargs("interaction_kw", interaction_kw)
        dynamics_kw = check_kwargs("dynamics_kw", dynamics_kw)
        if mode == "discrete":
            if solver not in (None, "exp_euler") or substeps not in (None, 1):
                raise ValueError("mode='discrete' is the one-sub-step exponential Euler update; "
                                 f"solver and substeps apply to mode='continuous' (got solver={solver!r}, substeps={substeps!r})")
            solver, substeps = "exp_euler", 1
        else:
            solver = solver or "rk4"
            substeps = 2 if substeps is None else check_positive_int("substeps", substeps)
        solvers.check_solver(solver)
        self.graph = graph
        self.input_size, self.state_size = input_size, state_size
        self.num_neurons = graph.num_neurons
        self.mode, self.solver, self.substeps = mode, solver, substeps
        self.propagation_steps = propagation_steps
        self.interaction_name, self.dynamics_name, self.per_neuron = interaction, dynamics, per_neuron
        self.interaction_kw, self.dynamics_kw = dict(interaction_kw or {}), dict(dynamics_kw or {})
        self.interaction: Interaction = make_interaction(interaction, graph, state_size, impl, **self.interaction_kw)
        self.dynamics: NeuronDynamics = make_dynamics(dynamics, graph.num_neurons, state_size, per_neuron, **self.dynamics_kw)
        self.register_buffer("input_neurons", graph.input_neurons.clone(), persistent=False)
        self.input_proj = nn.Linear(input_size, graph.input_neurons.numel() * state_size)

    def config(self) -> dict[str, Any]:
        """The constructor's arguments as a JSON-serialisable dict (the graph as
        :meth:`NeuronGraph.to_dict`), as saved by :func:`tnd.save_model`."""
        return {
            "input_size": self.input_size,
            "graph": self.graph.to_dict(),
            "state_size": self.state_size,
            "interaction": self.interaction_name,
            "dynamics": self.dynamics_name,
            "per_neuron": self.per_neuron,
            "mode": self.mode,
            "solver": self.solver if self.mode == "continuous" else None,
            "substeps": self.substeps if self.mode == "continuous" else None,
            "impl": self.interaction.impl,
            "propagation_steps": self.propagation_steps,
            "interaction_kw": self.interaction_kw,
            "dynamics_kw": {k: list(v) if isinstance(v, tuple) else v for k, v in self.dynamics_kw.items()},
        }

    def drive(self, x: torch.Tensor) -> torch.Tensor:
        """External input ``(..., C)`` -> drive ``(..., N, d)``, non-zero at input neurons only."""
        proj = self.input_proj(x).unflatten(-1, (self.input_neurons.numel(), self.state_size))
        out = proj.new_zeros(*proj.shape[:-2], self.num_neurons, self.state_size)
        return out.index_copy(-2, self.input_neurons, proj)

    def step(self, s: torch.Tensor, drive: torch.Tensor, dt: torch.Tensor | float = 1.0, prep: Any = None) -> torch.Tensor:
        """Advance states ``s`` ``(B, N, d)`` by one input step with drive ``(B, N, d)``: in
        discrete mode ``propagation_steps`` rounds of exponential Euler over ``dt / K`` each.

        ``dt`` is a float or a tensor broadcastable to ``s`` (e.g. ``(B, 1, 1)``); ``prep`` is
        :meth:`Interaction.prepare`'s result, computed once per sequence by the caller.
        """
        if prep is None:
            prep = self.interaction.prepare()
        agg, rate_target = self.interaction.aggregate, self.dynamics.rate_and_target

        def rt(z: torch.Tensor):
            return rate_target(z, agg(prep, z), drive)

        # K rounds of dt / K (continuous mode has K = 1): exp_euler's sub-steps are those rounds
        return solvers.integrate(self.solver, rt, s, torch.as_tensor(dt, dtype=s.dtype),
                                 self.substeps * self.propagation_steps)

    def state_bound(self) -> float | None:
        """The proven bound on ``|state|`` of this family and solver (``tnd.solvers.STATE_BOUND``:
        1, or 5/3 for midpoint; 1 for the adaptive solvers, whose exact flow keeps [-1, 1]), or
        None where the targets are unbounded (leaky ``activation="identity"``). An initial state
        ``hx`` outside it is refused: the proofs of docs/STABILITY.md start from inside it."""
        target = self.dynamics.target_bound()
        if target is None:
            return None
        return solvers.STATE_BOUND.get(self.solver, 1.0) * target

    def check_state(self, name: str, hx: torch.Tensor, clamp: bool = False) -> torch.Tensor:
        """``hx`` checked against :meth:`state_bound` (``clamp=True``: clamped into it instead)."""
        check_bool("clamp_hx", clamp)
        bound = self.state_bound()
        if clamp:
            return hx if bound is None else hx.clamp(-bound, bound)
        check_state_bound(name, hx, bound, f"{self.dynamics_name} dynamics with solver {self.solver!r}")
        return hx

    def initial_state(self, batch: int, dtype=None, device=None) -> torch.Tensor:
        """Zeros ``(batch, N, d)``: the default starting state."""
        check_int("batch", batch, 0)
        return torch.zeros(batch, self.num_neurons, self.state_size, dtype=dtype, device=device)

    def forward(self, x: torch.Tensor, hx: torch.Tensor | None = None, dt: torch.Tensor | float = 1.0, *,
                clamp_hx: bool = False) -> torch.Tensor:
        """One step of the system.

        Args:
            x: ``(B, C)`` external input, in the parameters' dtype and device.
            hx: ``(B, N, d)`` states to start from (zeros if None), same dtype as the parameters,
                within :meth:`state_bound` (refused outside it, or clamped with ``clamp_hx=True``).
            dt: the step's elapsed time, a number > 0, a scalar tensor or one per sequence ``(B,)``
                (not a bool).

        Returns:
            The next states ``(B, N, d)``.
        """
        check_float_tensor("x", x, (2,), self.input_size)
        check_param_dtype("x", x, self)
        check_bool("clamp_hx", clamp_hx)
        if hx is None:
            hx = self.initial_state(x.shape[0], x.dtype, x.device)
        else:
            check_float_tensor("hx", hx, (3,))
            if tuple(hx.shape) != (x.shape[0], self.num_neurons, self.state_size):
                raise ValueError(f"hx must have shape {(x.shape[0], self.num_neurons, self.state_size)}, got {tuple(hx.shape)}")
            check_param_dtype("hx", hx, self)
            hx = self.check_state("hx", hx, clamp_hx)
        dt = as_times("dt", dt, x.dtype, x.device)
        if dt.dim() > 0 and tuple(dt.shape) != (x.shape[0],):
            raise ValueError(f"dt must be a scalar or of shape ({x.shape[0]},) (one per sequence), got {tuple(dt.shape)}")
        dt = dt.reshape(-1, 1, 1) if dt.dim() > 0 else dt
        return self.step(hx, self.drive(x), dt)

    def extra_repr(self) -> str:
        """Shown by ``print(cell)``."""
        rounds = f", propagation_steps={self.propagation_steps}" if self.propagation_steps != 1 else ""
        return f"input_size={self.input_size}, mode={self.mode!r}, solver={self.solver!r}, substeps={self.substeps}{rounds}"
