"""A learnable topology inside a Pong cell: the prune-and-regrow hooks :func:`tnd.apps.pong.cells.run_cell`
calls when a topology-sweep variant asks for one (``variant["learn"]``)."""

from __future__ import annotations

from typing import Any

__all__ = ["attach_learner", "finish_learner"]


def attach_learner(model, learn: dict[str, Any], seed: int):
    """A :class:`tnd.apps.prune_regrow.PruneRegrow` on the TND inside ``model`` (``learn``: its settings)."""
    from ..prune_regrow import PruneRegrow

    return PruneRegrow(model, int(learn["budget"]), every=int(learn["every"]), drop_fraction=float(learn["drop_fraction"]),
                       stop_step=int(learn["stop_step"]), seed=int(seed),
                       regrow=str(learn.get("regrow", "sensitivity")))


def finish_learner(model, spec: dict[str, Any], learner):
    """Replace the candidate TND by the pruned one on the learned graph; update the spec."""
    from ..baselines import count_parameters
    from ..prune_regrow import prune_to_graph
    from .models import ScaledInput

    learner.finish()
    pruned = prune_to_graph(model)
    if isinstance(model, ScaledInput):
        model.inner = pruned
    else:
        model = pruned
    g = pruned.graph
    spec = dict(spec, tnd=dict(spec["tnd"], graph="explicit", graph_dict=g.to_dict(), graph_kw={}),
                params=count_parameters(pruned, effective=True), graph_edges=int(g.num_edges),
                graph_density=float(g.density), learned_topology=learner.state())
    return model, spec
