"""Shared vocabulary of the hardening property tests (test_graph_props, test_model_props,
test_pong_props, test_load_safety, test_solvers_stability): bad input is clearly refused.

Property tests throw random values at the public entry points; every call must either return a
correct result or raise one of the documented errors (ValueError, TypeError, tnd.GraphError --
a ValueError -- or FileNotFoundError) whose message names the offending argument. Anything else
(RuntimeError, IndexError, ... from deep inside torch) fails the test.

Examples per property test (max_examples, derandomized so CI is reproducible) are in EXAMPLES.
Not a test module itself (no ``test_`` prefix): the test modules import it from tests/.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from tnd import NeuronGraph

DOCUMENTED = (ValueError, TypeError, FileNotFoundError)  # GraphError is a ValueError

EXAMPLES = {
    "NeuronGraph": 1000,
    "builders": 600,
    "from_dense": 400,
    "from_dict": 400,
    "TND.__init__": 300,
    "TND.forward": 1000,
    "TNDCell.forward": 600,
    "Pong.step": 500,
    "Pong.__init__": 500,
    "load_model": 200,
}
OK: dict = {}  # entry point -> calls that returned a (checked) result rather than an error


def record_ok(name: str) -> None:
    OK[name] = OK.get(name, 0) + 1


def prop_settings(name: str):
    return settings(max_examples=EXAMPLES[name], deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def refused(err: BaseException, *names: str) -> None:
    """The error is a documented one and its message names one of ``names``."""
    assert isinstance(err, DOCUMENTED), f"undocumented {type(err).__name__}: {err}"
    msg = str(err)
    assert any(n in msg for n in names), f"message does not name any of {names}: {msg!r}"


# ------------------------------------------------------------------ strategies
junk = st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=3),
                 st.integers(-5, 40), st.lists(st.integers(-3, 30), max_size=4))

# the small graph the model, loading and stability tests build on
GRAPH = NeuronGraph.random(8, 0.4, seed=3, num_inputs=2, num_outputs=2)
