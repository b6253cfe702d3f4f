"""I: interaction operators, chosen by name."""

from ..checks import check_choice
from .attention import AttentionInteraction
from .base import Interaction, choose_impl
from .linear import LinearInteraction

INTERACTIONS = {"linear": LinearInteraction, "attention": AttentionInteraction}


def make_interaction(name: str, graph, state_size: int = 1, impl: str = "auto", **kw) -> Interaction:
    check_choice("interaction", name, tuple(sorted(INTERACTIONS)))
    return INTERACTIONS[name](graph, state_size=state_size, impl=impl, **kw)


__all__ = ["Interaction", "LinearInteraction", "AttentionInteraction", "INTERACTIONS", "make_interaction", "choose_impl"]
