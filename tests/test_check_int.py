"""tnd.checks.check_int, through which the apps validate their integer arguments."""

import numpy as np
import pytest

from tnd.checks import check_int


@pytest.mark.parametrize("value", [0, 5, np.int64(5), np.int8(3), np.uint16(7)])
def test_accepts_python_and_numpy_integers_as_int(value):
    out = check_int("n", value, 0, 10)
    assert out == int(value) and type(out) is int


@pytest.mark.parametrize("value", [True, False, np.bool_(True), 2.0, np.float32(2), "2", None, [2]])
def test_rejects_non_integers_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^rounds must be an int, got "):
        check_int("rounds", value)


@pytest.mark.parametrize("lo, hi, value, want", [
    (1, None, 0, "rounds must be a positive int, got 0"),
    (0, None, -1, "rounds must be a non-negative int, got -1"),
    (2, None, 1, "rounds must be an int >= 2, got 1"),
    (0, 2, 3, r"rounds must be an int in \[0, 2\], got 3"),
    (None, 2, 3, "rounds must be an int <= 2, got 3"),
])
def test_range_errors_say_the_range(lo, hi, value, want):
    with pytest.raises(ValueError, match="^" + want + "$"):
        check_int("rounds", value, lo, hi)
    edge = value + (1 if hi is None else -1)  # the nearest value inside the range passes
    assert check_int("rounds", edge, lo, hi) == edge


def test_bounds_are_inclusive():
    assert check_int("k", 1, 1, 1) == 1
    assert check_int("k", np.int64(-3), -3) == -3
