"""Search spaces for the equal-budget tuning (:mod:`tnd.apps.tuning`): one :class:`Domain` per knob
(:func:`choice`, :func:`loguniform`, :func:`uniform`, :func:`randint`), a model's
:class:`SearchSpace` (knobs, the default configuration, what each knob means; JSON-able and
printable as a table) and :func:`sample_trials`, the seeded random search.

:func:`sample_trials` gives every model the same number of trials: trial 0 is the space's default
configuration (the search cannot end below the defaults on validation), trials 1, 2, ... are
random draws from a stream seeded by ``(seed, model)`` (a string seed, hashed with SHA-512 by
:class:`random.Random`: the same on every machine and interpreter), so the list is reproducible
and a longer search extends a shorter one. Real values keep 4 significant digits, so a
configuration reads well and is exactly the same after a JSON round trip.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Domain", "Choice", "LogUniform", "Uniform", "RandInt", "choice", "loguniform", "uniform", "randint",
           "SearchSpace", "sample_trials"]


class Domain:
    """The values one knob may take."""

    kind = "domain"

    def sample(self, rng: random.Random) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def contains(self, value: Any) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


def _sig(v: float) -> float:
    """4 significant digits: readable configs, exactly reproducible from their JSON."""
    return float(f"{v:.4g}")


def _number(name: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {v!r}")
    return float(v)


def _numbers_as_floats(v: Any) -> Any:
    """``[1, 100]`` and ``[1.0, 100.0]`` are the same value (JSON written by hand or by us)."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, (list, tuple)):
        return [_numbers_as_floats(x) for x in v]
    if isinstance(v, dict):
        return {k: _numbers_as_floats(x) for k, x in v.items()}
    return v


@dataclass(frozen=True)
class Choice(Domain):
    """One of ``values`` (JSON values; lists for pairs), uniformly."""

    values: tuple
    kind = "choice"

    def __post_init__(self) -> None:
        vals = tuple(list(v) if isinstance(v, tuple) else v for v in self.values)
        if not vals:
            raise ValueError("choice: expected at least one value, got none")
        try:
            shown = [json.dumps(v, sort_keys=True) for v in vals]
        except TypeError:
            raise ValueError(f"choice: expected JSON values, got {self.values!r}") from None
        if len(set(shown)) != len(shown):
            raise ValueError(f"choice: values must be distinct, got {self.values!r}")
        object.__setattr__(self, "values", vals)

    def sample(self, rng: random.Random) -> Any:
        return json.loads(json.dumps(self.values[rng.randrange(len(self.values))]))  # a copy

    def contains(self, value: Any) -> bool:
        try:
            return any(json.dumps(_numbers_as_floats(value), sort_keys=True)
                       == json.dumps(_numbers_as_floats(v), sort_keys=True) for v in self.values)
        except TypeError:
            return False

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "values": list(self.values)}

    def describe(self) -> str:
        return "{" + ", ".join(json.dumps(v) for v in self.values) + "}"


@dataclass(frozen=True)
class LogUniform(Domain):
    """A real number whose logarithm is uniform in ``[log low, log high]``."""

    low: float
    high: float
    kind = "loguniform"

    def __post_init__(self) -> None:
        lo, hi = _number("loguniform low", self.low), _number("loguniform high", self.high)
        if not 0.0 < lo < hi:
            raise ValueError(f"loguniform: expected 0 < low < high, got low={self.low}, high={self.high}")

    def sample(self, rng: random.Random) -> float:
        v = _sig(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return min(max(v, float(self.low)), float(self.high))

    def contains(self, value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high}

    def describe(self) -> str:
        return f"log-uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class Uniform(LogUniform):
    """A real number uniform in ``[low, high]``."""

    kind = "uniform"

    def __post_init__(self) -> None:
        lo, hi = _number("uniform low", self.low), _number("uniform high", self.high)
        if not lo < hi:
            raise ValueError(f"uniform: expected low < high, got low={self.low}, high={self.high}")

    def sample(self, rng: random.Random) -> float:
        return min(max(_sig(rng.uniform(self.low, self.high)), float(self.low)), float(self.high))

    def describe(self) -> str:
        return f"uniform [{self.low:g}, {self.high:g}]"


@dataclass(frozen=True)
class RandInt(Domain):
    """An integer uniform in ``[low, high]`` (both included)."""

    low: int
    high: int
    kind = "randint"

    def __post_init__(self) -> None:
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (self.low, self.high)) \
                or self.low > self.high:
            raise ValueError(f"randint: expected integers low <= high, got low={self.low!r}, high={self.high!r}")

    def sample(self, rng: random.Random) -> int:
        return rng.randint(self.low, self.high)

    def contains(self, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "low": self.low, "high": self.high}

    def describe(self) -> str:
        return f"integer [{self.low}, {self.high}]"


def choice(values) -> Choice:
    return Choice(tuple(values))


def loguniform(low: float, high: float) -> LogUniform:
    return LogUniform(low, high)


def uniform(low: float, high: float) -> Uniform:
    return Uniform(low, high)


def randint(low: int, high: int) -> RandInt:
    return RandInt(low, high)


@dataclass(frozen=True)
class SearchSpace:
    """One model's search space: a domain per knob, the default configuration (trial 0; must lie
    in the space) and what each knob means (``doc``: knob -> text, for the docs table)."""

    knobs: dict[str, Domain]
    default: dict[str, Any]
    doc: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.knobs:
            raise ValueError("SearchSpace: expected at least one knob, got none")
        self.check(self.default, "default")

    def check(self, config: dict[str, Any], what: str = "config") -> None:
        """``config`` sets every knob to a value of its domain, and nothing else (ValueError)."""
        if not isinstance(config, dict) or set(config) != set(self.knobs):
            got = sorted(config) if isinstance(config, dict) else type(config).__name__
            raise ValueError(f"{what}: expected the knobs {sorted(self.knobs)}, got {got}")
        for k, dom in self.knobs.items():
            if not dom.contains(config[k]):
                raise ValueError(f"{what}: {k} = {config[k]!r} lies outside its domain {dom.describe()}")

    def sample(self, rng: random.Random) -> dict[str, Any]:
        return {k: dom.sample(rng) for k, dom in self.knobs.items()}

    def to_dict(self) -> dict[str, Any]:
        return {"knobs": {k: d.to_dict() for k, d in self.knobs.items()}, "default": self.default, "doc": self.doc}

    def describe(self) -> list[tuple[str, str, str]]:
        """``(knob, domain, meaning)`` rows."""
        return [(k, d.describe(), self.doc.get(k, "")) for k, d in self.knobs.items()]


def sample_trials(spaces: dict[str, SearchSpace], trials: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """``trials`` configurations per model (the same number for every model): trial 0 the default,
    the others random draws seeded by ``(seed, model)``; ``trials = n`` is a prefix of ``n + 1``."""
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials: expected an integer >= 1, got {trials!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed: expected an integer, got {seed!r}")
    out = {}
    for model, space in spaces.items():
        rng = random.Random(f"tnd.tuning:{seed}:{model}")  # str seeds hash with SHA-512: stable everywhere
        out[model] = [json.loads(json.dumps(space.default))] + [space.sample(rng) for _ in range(trials - 1)]
    return out
