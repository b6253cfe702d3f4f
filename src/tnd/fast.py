"""Fast paths for the TND time loop. None exists yet: :func:`supports` returns False and
:class:`~tnd.TND` runs its reference loop."""

from __future__ import annotations


def supports(model, xs, s, dts) -> bool:
    return False


def run(model, xs, s, dts):  # pragma: no cover - no fast path yet
    raise NotImplementedError
