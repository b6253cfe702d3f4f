"""Tests for tnd.apps.pong.env and tnd.apps.pong.policies (fast: a few seconds)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

gym = pytest.importorskip("gymnasium")

from gymnasium.utils.env_checker import check_env  # noqa: E402

from tnd.apps.pong import (  # noqa: E402
    ENV_ID,
    EVAL_SEED_BASE,
    ExpertPolicy,
    RandomPolicy,
    SinglePlayerPong,
    TrackerPolicy,
    evaluate_policy,
    predict_intercept,
    register_envs,
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"obs_mode": "state"},
        {"obs_mode": "pixels"},
        {"obs_noise": 0.01},
        {"obs_mode": "state", "obs_noise": 0.02},
        {"deflection": "absolute"},
    ],
)
def test_check_env_passes(kwargs):
    register_envs()
    env = gym.make(ENV_ID, render_mode="rgb_array", **kwargs).unwrapped  # made: has a spec
    assert isinstance(env, SinglePlayerPong)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the checker's warnings count as failures
        check_env(env, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)


def test_observation_shapes():
    assert SinglePlayerPong().observation_space.shape == (3,)
    assert SinglePlayerPong(obs_mode="state").observation_space.shape == (5,)
    assert SinglePlayerPong(obs_mode="pixels").observation_space.shape == (256,)
    assert SinglePlayerPong(obs_mode="pixels", pixel_size=8).observation_space.shape == (64,)


def test_pixels_show_ball_and_paddle():
    env = SinglePlayerPong(obs_mode="pixels")
    env.reset(seed=0)
    obs = env.set_state(0.5 + 1 / 32, 0.25 - 1 / 32, -0.03, 0.0, 0.5)  # ball on a pixel centre
    img = obs.reshape(16, 16)
    assert img[12, 8] == pytest.approx(1.0)  # row 12 from the top holds y in [0.1875, 0.25]
    assert img[:, 0].sum() == pytest.approx(0.16 * 16, abs=1e-5)  # paddle covers 2 * 0.08 of the column
    assert img[8, 0] > 0.99 and img[0, 0] == 0.0


def test_determinism_same_seed():
    def rollout(seed):
        env = SinglePlayerPong(obs_noise=0.01)
        obs, info = env.reset(seed=seed)
        rng = np.random.default_rng(123)
        out = [obs.copy()]
        for _ in range(200):
            obs, r, te, tr, info = env.step(int(rng.integers(3)))
            out.append(np.append(obs, r))
            if te or tr:
                break
        return out

    a, b, c = rollout(7), rollout(7), rollout(8)
    assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


def test_serve_within_spec():
    env = SinglePlayerPong()
    for seed in range(200):
        env.reset(seed=seed)
        s = env.get_state()
        assert s.ball_x == 0.75 and 0.2 <= s.ball_y <= 0.8 and s.paddle_y == 0.5
        assert math.hypot(s.ball_vx, s.ball_vy) == pytest.approx(0.03)
        ang = math.degrees(math.atan2(abs(s.ball_vy), -s.ball_vx))
        assert s.ball_vx < 0 and 20 - 1e-9 <= ang <= 60 + 1e-9
        assert env.serve_is_reachable(s.ball_y, math.radians(ang), math.copysign(1.0, s.ball_vy))


def test_catch_gives_plus_one():
    env = SinglePlayerPong()
    env.reset(seed=0)
    env.set_state(0.07, 0.5, -0.03, 0.0, 0.5)
    obs, r, te, tr, info = env.step(1)
    assert r == 1.0 and not te and not tr
    assert info["catches"] == 1 and info["event"] == "catch"
    vx, vy = info["ball_velocity"]
    assert vx > 0 and vy == pytest.approx(0.0)  # centred hit: specular reflection
    assert info["ball"][0] == pytest.approx(0.05 + (1 - 2 / 3) * 0.03)


def test_catch_angle_depends_on_hit_point():
    env = SinglePlayerPong()
    env.reset(seed=0)
    env.set_state(0.07, 0.58, -0.03, 0.0, 0.5)  # top edge of the paddle: u = 1
    _, r, _, _, info = env.step(1)
    assert r == 1.0
    vx, vy = info["ball_velocity"]
    assert math.degrees(math.atan2(vy, vx)) == pytest.approx(30.0)  # 0 + 0.5 * 60 * 1
    # additive deflection is clipped at 60 degrees
    a = math.radians(50)
    vx, vy = 0.03 * math.cos(a), 0.03 * math.sin(a)
    env.set_state(0.05 + 0.5 * vx, 0.575 - 0.5 * vy, -vx, vy, 0.5)  # crosses at y = 0.575 mid-step
    _, r, _, _, info = env.step(1)
    vx, vy = info["ball_velocity"]
    assert r == 1.0 and math.degrees(math.atan2(vy, vx)) == pytest.approx(60.0)
    # classic absolute deflection forgets the incoming angle
    env2 = SinglePlayerPong(deflection="absolute")
    env2.reset(seed=0)
    env2.set_state(0.05 + 0.5 * vx, 0.54 + 0.5 * vy, -vx, -vy, 0.5)  # crosses at y = 0.54: u = 0.5
    _, r, _, _, info = env2.step(1)
    vx, vy = info["ball_velocity"]
    assert r == 1.0 and math.degrees(math.atan2(vy, vx)) == pytest.approx(30.0)


def test_miss_terminates_with_minus_one():
    env = SinglePlayerPong()
    env.reset(seed=0)
    env.set_state(0.07, 0.8, -0.03, 0.0, 0.2)
    obs, r, te, tr, info = env.step(1)
    assert r == -1.0 and te and not tr and info["event"] == "miss" and info["catches"] == 0
    # just beyond the paddle edge is a miss, at the edge a catch
    env.set_state(0.07, 0.5 + 0.0801, -0.03, 0.0, 0.5)
    assert env.step(1)[1] == -1.0
    env.set_state(0.07, 0.5 + 0.0799, -0.03, 0.0, 0.5)
    assert env.step(1)[1] == 1.0


def test_walls_and_paddle_limits():
    env = SinglePlayerPong()
    env.reset(seed=0)
    env.set_state(0.5, 0.99, -0.01, 0.02, 0.5)
    _, _, _, _, info = env.step(1)
    assert info["ball"][1] == pytest.approx(0.99) and info["ball_velocity"][1] < 0  # top wall at 1.0
    env.set_state(0.99, 0.5, 0.02, 0.0, 0.5)
    _, _, _, _, info = env.step(1)
    assert info["ball"][0] == pytest.approx(0.99) and info["ball_velocity"][0] < 0  # right wall
    env.set_state(0.5, 0.5, 0.03, 0.0, 0.5)
    _, _, _, _, info = env.step(0)  # 0 = up = increasing y
    assert info["paddle_y"] == pytest.approx(0.515)
    _, _, _, _, info = env.step(2)
    assert info["paddle_y"] == pytest.approx(0.5)
    for _ in range(40):
        _, _, _, _, info = env.step(0)
    assert info["paddle_y"] == pytest.approx(0.92)


def test_info_keys_and_truncation_at_cap():
    env = SinglePlayerPong(max_catches=2)
    obs, info = env.reset(seed=3)
    assert {"catches", "ball", "paddle_y", "ball_velocity"} <= set(info)
    pol = ExpertPolicy(env)
    te = tr = False
    while not (te or tr):
        obs, r, te, tr, info = env.step(pol.act(obs))
    assert tr and not te and info["catches"] == 2
    assert SinglePlayerPong().max_steps == 15256  # cap always reached first


@pytest.mark.parametrize("bad", [3, -1, 1.5, "up", None, True, np.array([1, 2])])
def test_invalid_action_raises(bad):
    env = SinglePlayerPong()
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must be an integer in \{0, 1, 2\}.*got"):
        env.step(bad)


def test_numpy_integer_action_ok():
    # a numpy integer (scalar or 0-d array) is accepted and acts exactly like the same Python int
    for action, same in [(np.int64(2), 2), (np.array(0), 0), (np.int8(1), 1)]:
        env, ref = SinglePlayerPong(), SinglePlayerPong()
        env.reset(seed=0)
        ref.reset(seed=0)
        for _ in range(3):
            obs, r, te, tr, info = env.step(action)
            obs_ref, r_ref, te_ref, tr_ref, info_ref = ref.step(same)
            assert np.array_equal(obs, obs_ref) and (r, te, tr) == (r_ref, te_ref, tr_ref)
            assert info["paddle_y"] == info_ref["paddle_y"]
        # and the paddle really moved as the action says (0 = up, 2 = down, 1 = stay)
        assert info["paddle_y"] == pytest.approx(0.5 + {0: 3, 1: 0, 2: -3}[same] * 0.015)


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"obs_mode": "rgb"}, "obs_mode"),
        ({"max_catches": 0}, "max_catches"),
        ({"obs_noise": -1.0}, "obs_noise"),
        ({"deflection": "bogus"}, "deflection"),
        ({"render_mode": "human"}, "render_mode"),
        ({"paddle_half_length": 0.7}, "paddle_half_length"),
    ],
)
def test_bad_constructor_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SinglePlayerPong(**kwargs)


def test_render_rgb_array():
    env = SinglePlayerPong(render_mode="rgb_array")
    env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    env2 = SinglePlayerPong(render_mode="rgb_array", render_size=64)
    env2.reset(seed=0)
    assert env2.render().shape == (64, 64, 3)


def test_register_envs_idempotent():
    register_envs()
    register_envs()
    env = gym.make(ENV_ID, obs_mode="state", max_catches=5)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,)
    env.close()


def test_predict_intercept_unfolds_bounces():
    # ball at (0.65, 0.9) moving left-up at 45 degrees: unfolded y = 0.9 + 0.6 = 1.5 -> 0.5
    assert predict_intercept(0.65, 0.9, -0.01, 0.01, 0.05) == pytest.approx(0.5)
    # moving right: to the right wall and back, 0.35 + 0.95 = 1.3 in x
    assert predict_intercept(0.65, 0.2, 0.01, 0.01, 0.05) == pytest.approx(0.5)


def test_expert_beats_tracker_beats_random():
    kw = {"max_catches": 10}
    e = evaluate_policy(ExpertPolicy(), rounds=10, env_kwargs=kw)
    t = evaluate_policy(TrackerPolicy(), rounds=10, env_kwargs=kw)
    r = evaluate_policy(RandomPolicy(0), rounds=10, env_kwargs=kw)
    assert e["rounds_at_cap"] == 10 and e["catch_rate"] == 1.0 and e["mean_catches"] == 10.0
    assert e["mean_catches"] > t["mean_catches"] > r["mean_catches"]
    assert e["catch_rate"] > t["catch_rate"] > r["catch_rate"]
    assert t["rounds_at_cap"] < 10
    assert e["seed"] == EVAL_SEED_BASE and len(e["per_round"]) == 10


def test_evaluate_policy_factory_and_determinism():
    a = evaluate_policy(lambda env: RandomPolicy(5), rounds=5, env_kwargs={"max_catches": 3})
    b = evaluate_policy(lambda env: RandomPolicy(5), rounds=5, env_kwargs={"max_catches": 3})
    assert a["per_round"] == b["per_round"]
    c = evaluate_policy(ExpertPolicy, rounds=3, env_kwargs={"max_catches": 3, "obs_mode": "pixels"})
    assert c["rounds_at_cap"] == 3
    with pytest.raises(ValueError, match="rounds"):
        evaluate_policy(ExpertPolicy(), rounds=0)


def test_policies_without_env():
    env = SinglePlayerPong(obs_mode="state")
    obs, _ = env.reset(seed=1)
    assert ExpertPolicy().act(obs) in (0, 1, 2)
    assert ExpertPolicy().act(env.get_state()) == ExpertPolicy(env).act(None)
    with pytest.raises(ValueError, match="true state"):
        ExpertPolicy().act(np.zeros(3))
    assert TrackerPolicy().act(np.array([0.5, 0.9, 0.5], dtype=np.float32)) == 0
    assert TrackerPolicy().act(np.array([0.5, 0.1, 0.5], dtype=np.float32)) == 2
    assert TrackerPolicy().act(np.array([0.5, 0.5, 0.5], dtype=np.float32)) == 1


def test_motion_observation_is_the_displacement_in_ball_speeds():
    env = SinglePlayerPong(obs_mode="motion")
    assert env.observation_space.shape == (5,)
    o, _ = env.reset(seed=3)
    assert o[2] == 0.0 and o[3] == 0.0  # no previous observation at the serve
    s = env.get_state()
    o2, *_ = env.step(1)
    assert np.allclose(o2[2:4], [s.ball_vx / 0.03, s.ball_vy / 0.03], atol=1e-5)
    assert np.allclose(o2[[0, 1, 4]], SinglePlayerPong(obs_mode="positions").set_state(*env.get_state().as_array()))
    # a new round starts from zero displacement again
    o3, _ = env.reset(seed=4)
    assert o3[2] == 0.0 and o3[3] == 0.0


def test_motion_observation_with_noise_differences_the_noisy_positions():
    env = SinglePlayerPong(obs_mode="motion", obs_noise=0.01)
    o, _ = env.reset(seed=0)
    prev = o.copy()
    for _ in range(5):
        o, *_ = env.step(1)
        assert np.allclose(o[2:4], (o[:2] - prev[:2]) / 0.03, atol=1e-4)
        prev = o.copy()
