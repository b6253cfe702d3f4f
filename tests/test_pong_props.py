"""The Pong environment refuses bad actions and bad constructor arguments clearly (property
tests; see hardening_common)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hardening_common import junk
from hardening_common import prop_settings as _settings
from hardening_common import refused as _refused
from hypothesis import given
from hypothesis import strategies as st

import tnd
import tnd.apps.pong


@_settings("Pong.step")
@given(action=st.one_of(st.integers(-3, 5), st.floats(allow_nan=True), st.text(max_size=2), st.none(), st.booleans(),
                        st.lists(st.integers(0, 2), max_size=3), st.sampled_from([np.int64(1), np.int8(2), np.float32(1.0),
                                                                                  np.array(1), np.array([1]), np.bool_(True),
                                                                                  torch.tensor(1), torch.tensor(1.0), 1.0 + 0j, b"1"])))
def test_pong_step_invalid_actions(action):
    env = tnd.apps.pong.SinglePlayerPong()
    env.reset(seed=0)
    try:
        obs, _r, _term, _trunc, _info = env.step(action)
    except BaseException as e:  # noqa: BLE001
        _refused(e, "action")
    else:
        assert int(action) in (0, 1, 2) and obs.shape == (env.obs_dim,) and np.isfinite(obs).all()


PONG_KW = ["obs_mode", "obs_noise", "pixel_size", "max_catches", "max_steps", "render_mode", "render_size", "paddle_x",
           "paddle_half_length", "paddle_speed", "paddle_start_y", "ball_speed", "serve_x", "serve_y_range",
           "serve_angle_range", "max_bounce_angle", "deflection", "deflection_gain", "bogus_kw"]


@pytest.mark.slow
@_settings("Pong.__init__")
@given(kw=st.dictionaries(st.sampled_from(PONG_KW), st.one_of(
    junk, st.floats(-1, 2), st.tuples(st.floats(-10, 100), st.floats(-10, 100)), st.sampled_from(["pixels", "rgb_array", "linear"])),
    max_size=3))
def test_pong_constructor_bad_kwargs(kw):
    try:
        env = tnd.apps.pong.SinglePlayerPong(**kw)
        obs, _ = env.reset(seed=1)
        for _ in range(3):
            obs, *_ = env.step(1)
    except BaseException as e:  # noqa: BLE001
        _refused(e, *kw)
    else:
        assert np.isfinite(obs).all()
