"""Learnable topology: train which edges exist, within a fixed budget of edges.

A TND is built on a *candidate* graph (e.g. fully connected) and :class:`PruneRegrow` keeps
exactly ``budget`` of its edges switched on through the interaction's ``edge_mask``
(``m_e in {0, 1}``, ``sum_e m_e = budget`` at every step), in the spirit of RigL (Evci et al.,
2020), with the regrowth criterion taken from the mask itself:

* every ``every`` steps (until ``stop_step``) the ``k`` active edges of smallest magnitude
  ``sum_d |w_e|`` are switched off and ``k`` inactive edges are switched on, chosen by
  ``regrow``:

  - ``"gradient"`` (default; RigL's rule, unsigned linear interaction): the edges with the
    largest ``||dL/dw_e||``, the gradient w.r.t. the *effective* weight, which exists for
    inactive edges too (``w_e = m_e theta_e``); they start at weight 0, so switching them on does
    not change the function and training grows them;
  - ``"sensitivity"`` (any interaction, signed graphs too): the edges whose switching on is
    predicted to lower the loss most, first order in the mask: ``Delta L ~= dL/dm_e`` with
    ``dL/dm_e = sum_d (dL/dw_e) theta_e``; inactive edges keep their latent weights, so a regrown
    edge comes back with the weight the prediction was made for.

  Both scores are exponential moving averages over the steps since the last update, so one batch
  does not decide;
* ``k`` follows a cosine schedule from ``drop_fraction * budget`` down to 0 at ``stop_step``,
  so the graph settles and the last part of training tunes a fixed graph.

At the end :func:`prune_to_graph` returns an ordinary TND on the learned :class:`NeuronGraph`
(only the active edges, the same neurons and roles) with the trained weights; its outputs equal
the masked candidate model's. Its parameter count is that of any fixed graph with ``budget``
edges and the same neurons, which makes the comparison with fixed topologies fair.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tnd.checks import check_int
from tnd.graph import NeuronGraph
from .lesions import find_tnd
from tnd.model import TND

__all__ = ["PruneRegrow", "learned_graph", "prune_to_graph"]


class PruneRegrow:
    """Keep exactly ``budget`` edges of the TND in ``model`` active and move them during training.

    Call :meth:`after_step` once after every optimiser step (``tnd.apps.pong.train.train_model``'s
    ``step_hook`` does). Args:
        model: a TND (or a module wrapping one) on the candidate graph.
        budget: number of active edges, ``1 <= budget <= candidate edges``.
        every: steps between topology updates.
        drop_fraction: fraction of the budget moved at the first update (cosine-annealed to 0).
        stop_step: last step at which the topology may change (e.g. 3/4 of the step budget).
        ema: decay of the moving average of the mask gradient.
        seed: seed of the initial random active set.
        rescale_init: scale the (unsigned) initial edge weights by ``sqrt(candidate edges / budget)``.
        regrow: ``"gradient"`` or ``"sensitivity"`` (see the module docstring).
    """

    def __init__(self, model: nn.Module, budget: int, *, every: int = 100, drop_fraction: float = 0.3,
                 stop_step: int = 1000, ema: float = 0.9, seed: int = 0, rescale_init: bool = True,
                 regrow: str = "gradient") -> None:
        self.tnd = find_tnd(model)
        self.inter = self.tnd.cell.interaction
        num_edges = self.inter.num_edges
        for name, v, lo in (("budget", budget, 1), ("every", every, 1), ("stop_step", stop_step, 0)):
            check_int(name, v, lo)
        if budget > num_edges:
            raise ValueError(f"budget must be <= the candidate graph's {num_edges} edges, got {budget}")
        if not 0.0 <= float(drop_fraction) <= 1.0 or not 0.0 <= float(ema) < 1.0:
            raise ValueError(f"drop_fraction must lie in [0, 1] and ema in [0, 1), got {drop_fraction}, {ema}")
        if regrow not in ("gradient", "sensitivity"):
            raise ValueError(f"regrow must be 'gradient' or 'sensitivity', got {regrow!r}")
        from tnd.interactions.linear import LinearInteraction

        if regrow == "gradient" and (self.inter.signed or not isinstance(self.inter, LinearInteraction)):
            raise ValueError("regrow='gradient' needs the linear interaction on an unsigned graph (a regrown edge "
                             "starts at weight 0); use regrow='sensitivity'")
        self.regrow = regrow
        self.budget, self.every, self.stop_step = budget, every, stop_step
        self.drop_fraction, self.ema = float(drop_fraction), float(ema)
        gen = torch.Generator().manual_seed(int(seed))
        mask = torch.zeros(num_edges)
        mask[torch.randperm(num_edges, generator=gen)[:budget]] = 1.0
        with torch.no_grad():
            self.inter.edge_mask.copy_(mask)
            if rescale_init and not self.inter.signed:
                # Weights were initialised for the candidate's in-degree; scale them to the in-degree
                # of a graph with `budget` edges, so the summed input starts at the same scale as a
                # fixed graph's (unsigned weights only: signed ones are softplus magnitudes).
                gain = math.sqrt(num_edges / budget)
                for p in self.inter.parameters(recurse=False):
                    if p.dim() >= 1 and p.shape[0] == num_edges:
                        p.mul_(gain)
        self.score = torch.zeros(num_edges, dtype=self.inter.edge_mask.dtype)
        if regrow == "sensitivity":
            # The mask becomes a leaf that records dL/dm (a buffer: no optimiser ever updates it).
            self.inter.edge_mask.requires_grad_(True)
        else:
            # Record dL/dw for every candidate edge: wrap the interaction's effective-weight
            # function (every implementation, fused or not, builds its weights through it).
            d = self.inter.state_size
            self.gscore = torch.zeros(num_edges, d, dtype=self.inter.edge_mask.dtype)
            self._gsum = torch.zeros_like(self.gscore)
            original = self.inter.effective_edge_weight

            def record(g: torch.Tensor) -> None:
                self._gsum.add_(g.detach().reshape(self._gsum.shape))

            def recorded():
                w = original()
                if w.requires_grad:
                    w.register_hook(record)
                return w

            self.inter.effective_edge_weight = recorded
        self.moved: list[dict[str, int]] = []  # per update: step, edges moved

    @property
    def mask(self) -> torch.Tensor:
        return self.inter.edge_mask

    def num_active(self) -> int:
        return int((self.mask.detach() > 0).sum())

    def drop_count(self, step: int) -> int:
        """Edges moved at ``step`` (cosine schedule, 0 after ``stop_step``)."""
        if step > self.stop_step or self.stop_step == 0:
            return 0
        frac = self.drop_fraction * 0.5 * (1.0 + math.cos(math.pi * step / self.stop_step))
        return int(round(frac * self.budget))

    def after_step(self, step: int) -> None:
        if self.regrow == "gradient":
            self.gscore.mul_(self.ema).add_(self._gsum, alpha=1.0 - self.ema)
            self._gsum.zero_()
        else:
            g = self.mask.grad
            if g is not None:
                self.score.mul_(self.ema).add_(g.detach(), alpha=1.0 - self.ema)
                self.mask.grad = None
        if step % self.every == 0:
            self.update(step)

    @torch.no_grad()
    def update(self, step: int) -> int:
        """Move ``drop_count(step)`` edges; returns how many moved."""
        k = self.drop_count(step)
        if k == 0:
            return 0
        active = self.mask.detach() > 0
        mag = self.inter.effective_edge_weight().detach().abs().reshape(self.inter.num_edges, -1).sum(1)
        act_ids = torch.nonzero(active).flatten()
        k = min(k, act_ids.numel(), int((~active).sum()))
        drop = act_ids[torch.argsort(mag[act_ids], stable=True)[:k]]
        inact_ids = torch.nonzero(~active).flatten()  # excludes the edges dropped just now
        if self.regrow == "gradient":  # largest ||dL/dw|| first
            grow = inact_ids[torch.argsort(-self.gscore[inact_ids].norm(dim=1), stable=True)[:k]]
            self.inter.weight_raw[grow] = 0.0  # switched on at weight 0: the function is unchanged
            self.gscore[grow] = 0.0
        else:  # most negative dL/dm first
            grow = inact_ids[torch.argsort(self.score[inact_ids], stable=True)[:k]]
            self.score[grow] = 0.0
        self.mask[drop] = 0.0
        self.mask[grow] = 1.0
        self.moved.append({"step": int(step), "moved": int(k)})
        assert self.num_active() == self.budget
        return k

    def finish(self) -> None:
        """Stop recording gradients (call before saving or evaluating)."""
        self.mask.requires_grad_(False)
        self.mask.grad = None
        self.inter.__dict__.pop("effective_edge_weight", None)  # back to the class's method

    def state(self) -> dict[str, Any]:
        return {"budget": self.budget, "active": self.num_active(), "updates": self.moved}


def learned_graph(model: nn.Module) -> NeuronGraph:
    """The graph of the TND's active edges (``edge_mask > 0``): same neurons and roles; outputs
    may be unreachable (the learner did not ask for reachability)."""
    tnd = find_tnd(model)
    g, keep = tnd.graph, tnd.cell.interaction.edge_mask.detach() > 0
    sign = None if g.sign is None else g.sign[keep]
    return NeuronGraph(g.num_neurons, g.edge_index[:, keep], g.input_neurons, g.output_neurons, sign=sign,
                       allow_unreachable=True)


def prune_to_graph(model: nn.Module) -> TND:
    """A TND on :func:`learned_graph` carrying ``model``'s trained weights (a new module; per-edge
    tensors keep the active rows). Same outputs as ``model`` with its mask."""
    tnd = find_tnd(model)
    g_old, g_new = tnd.graph, learned_graph(tnd)
    cfg = tnd.config()
    cfg["graph"] = g_new.to_dict()
    with torch.random.fork_rng(devices=[]):
        new = TND.from_config(cfg)
    new = new.to(next(tnd.parameters()).dtype)
    # map every new edge (in the new graph's order) to its row in the old graph
    index = {(int(s), int(t)): e for e, (s, t) in enumerate(g_old.edge_index.t().tolist())}
    rows = torch.tensor([index[(int(s), int(t))] for s, t in g_new.edge_index.t().tolist()], dtype=torch.long)
    prefix = "cell.interaction."
    state = {}
    for k, v in tnd.state_dict().items():
        v = v.detach()
        if k.startswith(prefix) and v.dim() >= 1 and v.shape[0] == g_old.num_edges:
            v = v[rows]
        state[k] = v.clone()
    new.load_state_dict(state)
    new.train(tnd.training)
    new.use_fast_path = tnd.use_fast_path
    return new
