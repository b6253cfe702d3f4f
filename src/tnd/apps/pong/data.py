"""Expert demonstrations for behaviour cloning in single-player Pong.

:func:`generate_demonstrations` records the expert's rounds (observation -> the expert's action,
plus true states and rewards) as a dict of numpy arrays, steps of a round contiguous;
:func:`generate_perturbed_demonstrations` does the same with randomly perturbed execution and
expert labels; :func:`make_windows` cuts training windows inside rounds, :func:`train_val_split`
splits by whole rounds, :func:`save_dataset` / :func:`load_dataset` write and read ``.npz`` +
``.json`` atomically. Seeds stay below ``EVAL_SEED_BASE``, so no evaluation serve is in the
data. The arrays, the protocol and why: docs/PONG.md (section 3).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.utils import seeding

from tnd.checks import check_int
from tnd.io import atomic_write, atomic_write_text
from .env import EVENT_CATCH, EVENT_MISS, SinglePlayerPong, motion_from_positions, pixels_from_positions
from .policies import DATA_SEED_BASE, EVAL_SEED_BASE, ExpertPolicy, predict_intercept

__all__ = [
    "generate_perturbed_demonstrations",
    "ROUND_END_MISS",
    "ROUND_END_CAP",
    "ROUND_END_STEP_LIMIT",
    "ROUND_END_RECORDING_CUT",
    "DEFAULT_MAX_STEPS_PER_ROUND",
    "DATASET_FORMAT_VERSION",
    "generate_demonstrations",
    "make_metadata",
    "make_windows",
    "select_rounds",
    "train_val_split",
    "save_dataset",
    "load_dataset",
]

ROUND_END_MISS = 0
ROUND_END_CAP = 1
ROUND_END_STEP_LIMIT = 2
ROUND_END_RECORDING_CUT = 3
DEFAULT_MAX_STEPS_PER_ROUND = 2000
DATASET_FORMAT_VERSION = 1
EXPERTS = ("expert", "tracker")

_STEP_KEYS = ("observations", "actions", "rewards", "states", "round_ids", "episode_starts")
_ROUND_KEYS = ("round_numbers", "round_seeds", "round_lengths", "round_catches", "round_end")
REQUIRED_KEYS = _STEP_KEYS + _ROUND_KEYS


def _tnd_version() -> str:
    try:
        from importlib.metadata import version

        return version("tnd")
    except Exception:  # not installed (e.g. PYTHONPATH=src)
        return "unknown"


def generate_demonstrations(
    num_rounds: int,
    seed: int = DATA_SEED_BASE,
    env_kwargs: dict[str, Any] | None = None,
    max_steps_per_round: int = DEFAULT_MAX_STEPS_PER_ROUND,
    expert: str = "expert",
) -> dict[str, np.ndarray]:
    """Play ``num_rounds`` rounds with the expert and record them (arrays: docs/PONG.md).

    ``expert="tracker"`` records the reactive tracker instead (for ablations). Round
    ``i`` uses ``reset(seed=seed + i)``; ``seed + num_rounds`` must not exceed
    ``EVAL_SEED_BASE``. Deterministic for the same arguments.
    """
    num_rounds = check_int("num_rounds", num_rounds, 1)
    seed = check_int("seed", seed, 0)
    max_steps_per_round = check_int("max_steps_per_round", max_steps_per_round, 1)
    if seed + num_rounds > EVAL_SEED_BASE:
        raise ValueError(
            f"seed + num_rounds must be <= EVAL_SEED_BASE={EVAL_SEED_BASE} so demonstration seeds never "
            f"overlap evaluation seeds, got seed={seed}, num_rounds={num_rounds}"
        )
    if expert not in EXPERTS:
        raise ValueError(f"expert must be one of {EXPERTS}, got {expert!r}")
    if env_kwargs is not None and not isinstance(env_kwargs, dict):
        raise ValueError(f"env_kwargs must be a dict or None, got {type(env_kwargs).__name__}")
    env = SinglePlayerPong(**(env_kwargs or {}))
    core = env.core
    px, half, dead = core.paddle_x, core.half, 0.5 * core.paddle_speed
    lo_t, hi_t = half, 1.0 - half
    use_expert = expert == "expert"
    step = core.step
    max_catches, env_max_steps = env.max_catches, env.max_steps

    states_all: list[list[float]] = []
    actions_all: list[int] = []
    rewards_all: list[float] = []
    lengths, catches_l, ends = [], [], []
    for i in range(num_rounds):
        env.reset(seed=seed + i)
        n = 0
        catches = 0
        end = ROUND_END_RECORDING_CUT
        rec_s = states_all.append
        rec_a = actions_all.append
        rec_r = rewards_all.append
        while n < max_steps_per_round:
            bx, by, vx, vy, py = core.bx, core.by, core.vx, core.vy, core.py
            if use_expert:
                tgt = predict_intercept(bx, by, vx, vy, px)
                tgt = lo_t if tgt < lo_t else (hi_t if tgt > hi_t else tgt)
            else:
                tgt = by
            d = tgt - py
            a = 0 if d > dead else (2 if d < -dead else 1)
            rec_s([bx, by, vx, vy, py])
            rec_a(a)
            ev = step(a)
            n += 1
            if ev == EVENT_CATCH:
                catches += 1
                rec_r(1.0)
                if catches >= max_catches:
                    end = ROUND_END_CAP
                    break
            elif ev == EVENT_MISS:
                rec_r(-1.0)
                end = ROUND_END_MISS
                break
            else:
                rec_r(0.0)
            if n >= env_max_steps:
                end = ROUND_END_STEP_LIMIT
                break
        lengths.append(n)
        catches_l.append(catches)
        ends.append(end)
    states = np.asarray(states_all, dtype=np.float64).reshape(-1, 5)
    lengths_a = np.asarray(lengths, dtype=np.int64)
    obs = _observations_from_states(env, states, lengths_a, seed)
    round_numbers = np.arange(num_rounds, dtype=np.int64)
    starts = np.zeros(states.shape[0], dtype=bool)
    starts[np.concatenate([[0], np.cumsum(lengths_a)[:-1]])] = True
    return {
        "observations": obs,
        "actions": np.asarray(actions_all, dtype=np.int64),
        "rewards": np.asarray(rewards_all, dtype=np.float32),
        "states": states.astype(np.float32),
        "round_ids": np.repeat(round_numbers, lengths_a),
        "episode_starts": starts,
        "round_numbers": round_numbers,
        "round_seeds": seed + round_numbers,
        "round_lengths": lengths_a,
        "round_catches": np.asarray(catches_l, dtype=np.int64),
        "round_end": np.asarray(ends, dtype=np.int8),
    }


def _observations_from_states(
    env: SinglePlayerPong, states: np.ndarray, lengths: np.ndarray, seed: int
) -> np.ndarray:
    """Observations the env emits for ``states`` (incl. its seeded observation noise)."""
    if env.obs_mode == "pixels":
        p = env.physics
        return pixels_from_positions(
            states[:, 0], states[:, 1], states[:, 4], size=env.pixel_size,
            paddle_x=p["paddle_x"], paddle_half_length=p["paddle_half_length"],
        )
    clean = states[:, [0, 1, 4]] if env.obs_mode in ("positions", "motion") else states
    if env.obs_noise <= 0.0 and env.obs_mode != "motion":
        return clean.astype(np.float32)
    noisy = clean.astype(np.float64)
    if env.obs_noise > 0.0:
        # Replay each round's RNG stream: reset(seed) draws the serve, then one noise vector
        # per emitted observation, in order. Drawing a round's vectors as one (n, D) block
        # yields the same numbers as the env's sequential draws (tested).
        ofs = 0
        for i, n in enumerate(lengths.tolist()):
            rng, _ = seeding.np_random(seed + i)
            env.draw_serve(rng)
            noisy[ofs : ofs + n] += rng.normal(0.0, env.obs_noise, size=(n, clean.shape[1]))
            ofs += n
    if env.obs_mode == "motion":  # displacements within each round, from the noisy positions, in the env's unit
        bounds = np.concatenate([[0], np.cumsum(lengths)]).tolist()
        noisy = np.concatenate([motion_from_positions(noisy[a:b], None, env.motion_unit)
                                for a, b in zip(bounds[:-1], bounds[1:])] or [np.zeros((0, 5))])
    return np.clip(noisy, env.observation_space.low, env.observation_space.high).astype(np.float32)


def make_metadata(
    num_rounds: int,
    seed: int,
    env_kwargs: dict[str, Any] | None = None,
    max_steps_per_round: int = DEFAULT_MAX_STEPS_PER_ROUND,
    expert: str = "expert",
    **extra: Any,
) -> dict[str, Any]:
    """Metadata describing a :func:`generate_demonstrations` call (JSON-serialisable)."""
    env = SinglePlayerPong(**(env_kwargs or {}))
    meta = {
        "expert": expert,
        "num_rounds": int(num_rounds),
        "seed": int(seed),
        "round_seeds": f"seed + i for i in range({int(num_rounds)})",
        "eval_seed_base": EVAL_SEED_BASE,
        "max_steps_per_round": int(max_steps_per_round),
        "obs_mode": env.obs_mode,
        "obs_dim": env.obs_dim,
        "env_id": "tnd/SinglePlayerPong-v0",
        "env_kwargs": dict(env_kwargs or {}),
        "env_resolved": {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in env.physics.items()},
            "obs_mode": env.obs_mode,
            "obs_noise": env.obs_noise,
            "pixel_size": env.pixel_size,
            "max_catches": env.max_catches,
            "max_steps": env.max_steps,
        },
    }
    meta.update(extra)
    return meta


def _check_demos(demos: Any, what: str = "demos") -> None:
    if not isinstance(demos, dict):
        raise ValueError(f"{what} must be a dict of numpy arrays, got {type(demos).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in demos]
    if missing:
        raise ValueError(f"{what} is missing keys {missing}")
    s = np.asarray(demos["actions"]).shape[0]
    for k in _STEP_KEYS:
        if np.asarray(demos[k]).shape[:1] != (s,):
            raise ValueError(f"{what}[{k!r}] must have {s} rows (one per step), got shape {np.shape(demos[k])}")
    r = np.asarray(demos["round_numbers"]).shape[0]
    for k in _ROUND_KEYS:
        if np.asarray(demos[k]).shape != (r,):
            raise ValueError(f"{what}[{k!r}] must have shape ({r},) (one per round), got {np.shape(demos[k])}")
    if np.asarray(demos["observations"]).ndim != 2:
        raise ValueError(f"{what}['observations'] must be 2-D (steps, obs_dim), got {np.shape(demos['observations'])}")
    if int(np.sum(demos["round_lengths"])) != s:
        raise ValueError(f"{what}: round_lengths sum to {int(np.sum(demos['round_lengths']))}, but there are {s} steps")


def _round_offsets(demos: dict[str, np.ndarray]) -> np.ndarray:
    lengths = np.asarray(demos["round_lengths"], dtype=np.int64)
    return np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)


def make_windows(
    demos: dict[str, np.ndarray],
    window: int,
    stride: int | None = None,
    *,
    random_per_round: int = 0,
    seed: int = 0,
    return_index: bool = False,
) -> tuple[np.ndarray, ...]:
    """Cut ``(X, Y)`` training windows, each inside a single round.

    Per round of length ``L >= window``: start offsets ``0, stride, 2*stride, ...`` (all
    with ``offset + window <= L``; offset 0 is the serve) plus ``random_per_round``
    seeded uniform offsets (duplicates removed). ``stride`` defaults to ``window``.
    Returns ``X: float32 (W, window, obs_dim)`` and ``Y: int64 (W, window)``; with
    ``return_index=True`` also ``(round_ids (W,), offsets (W,))`` with offsets relative
    to the round start.
    """
    _check_demos(demos)
    window = check_int("window", window, 1)
    stride = window if stride is None else check_int("stride", stride, 1)
    random_per_round = check_int("random_per_round", random_per_round, 0)
    rng = np.random.default_rng(check_int("seed", seed, 0))
    starts: list[np.ndarray] = []
    rounds: list[np.ndarray] = []
    rel: list[np.ndarray] = []
    for off, length, rnum in zip(
        _round_offsets(demos).tolist(), np.asarray(demos["round_lengths"]).tolist(),
        np.asarray(demos["round_numbers"]).tolist(),
    ):
        last = length - window
        if last < 0:
            continue
        o = np.arange(0, last + 1, stride, dtype=np.int64)
        if random_per_round:
            o = np.unique(np.concatenate([o, rng.integers(0, last + 1, size=random_per_round)]))
        starts.append(off + o)
        rel.append(o)
        rounds.append(np.full(o.shape, rnum, dtype=np.int64))
    if not starts:
        longest = int(np.max(demos["round_lengths"])) if len(demos["round_lengths"]) else 0
        raise ValueError(f"window={window} is longer than every round (longest round: {longest} steps)")
    st = np.concatenate(starts)
    idx = st[:, None] + np.arange(window, dtype=np.int64)[None, :]
    X = np.asarray(demos["observations"], dtype=np.float32)[idx]
    Y = np.asarray(demos["actions"], dtype=np.int64)[idx]
    if return_index:
        return X, Y, np.concatenate(rounds), np.concatenate(rel)
    return X, Y


def select_rounds(demos: dict[str, np.ndarray], round_numbers: Any) -> dict[str, np.ndarray]:
    """The sub-dataset holding exactly the given rounds (in the dataset's order)."""
    _check_demos(demos)
    wanted = np.asarray(round_numbers, dtype=np.int64).reshape(-1)
    have = np.asarray(demos["round_numbers"], dtype=np.int64)
    unknown = np.setdiff1d(wanted, have)
    if unknown.size:
        raise ValueError(f"round_numbers contains rounds not in the dataset: {unknown[:10].tolist()}")
    keep_r = np.isin(have, wanted)
    keep_s = np.isin(np.asarray(demos["round_ids"], dtype=np.int64), wanted)
    out = {k: np.asarray(demos[k])[keep_s] for k in _STEP_KEYS}
    out.update({k: np.asarray(demos[k])[keep_r] for k in _ROUND_KEYS})
    for k, v in demos.items():  # carry unknown extra keys through unchanged
        out.setdefault(k, v)
    return out


def train_val_split(
    demos: dict[str, np.ndarray], val_fraction: float = 0.2, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Split by whole rounds (seeded permutation); no round is in both parts.

    The validation part gets ``max(1, round(val_fraction * R))`` rounds and the training
    part at least one; needs ``R >= 2`` rounds.
    """
    _check_demos(demos)
    if not (isinstance(val_fraction, (int, float)) and 0.0 < val_fraction < 1.0):
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    rnums = np.asarray(demos["round_numbers"], dtype=np.int64)
    r = rnums.shape[0]
    if r < 2:
        raise ValueError(f"demos must hold at least 2 rounds to split by round, got {r}")
    n_val = min(max(1, int(round(val_fraction * r))), r - 1)
    perm = np.random.default_rng(check_int("seed", seed, 0)).permutation(r)
    val_r = np.sort(rnums[perm[:n_val]])
    train_r = np.sort(rnums[perm[n_val:]])
    return select_rounds(demos, train_r), select_rounds(demos, val_r)


def _meta_path(path: Path) -> Path:
    return path.with_suffix(".json") if path.suffix == ".npz" else path.with_name(path.name + ".json")


def _write_npz(arrays: dict[str, np.ndarray]):
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a path
            np.savez(f, **arrays)

    return write


def save_dataset(path: str | os.PathLike, demos: dict[str, np.ndarray], metadata: dict[str, Any] | None = None) -> Path:
    """Write ``demos`` to ``path`` (``.npz``, appended if missing) and metadata to ``.json``.

    Both files are written atomically. ``tnd_version``, ``format_version`` and
    ``created`` (UTC ISO time) are added to the metadata. Returns the ``.npz`` path.
    """
    _check_demos(demos)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    p = Path(path)
    if p.suffix != ".npz":
        p = p.with_name(p.name + ".npz")
    if not p.parent.is_dir():
        raise FileNotFoundError(f"directory of path does not exist: {str(p.parent)!r}")
    meta = dict(metadata)
    meta.setdefault("tnd_version", _tnd_version())
    meta["format_version"] = DATASET_FORMAT_VERSION
    meta.setdefault("created", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    meta["arrays"] = {k: [list(np.shape(v)), str(np.asarray(v).dtype)] for k, v in demos.items()}
    try:
        text = json.dumps(meta, indent=2, sort_keys=True)
    except TypeError as e:
        raise ValueError(f"metadata must be JSON-serialisable: {e}") from None
    arrays = {k: np.asarray(v) for k, v in demos.items()}
    for k, v in arrays.items():
        if v.dtype == object:
            raise ValueError(f"demos[{k!r}] has dtype object; only plain numeric arrays can be saved")
    atomic_write(p, _write_npz(arrays))
    atomic_write_text(_meta_path(p), text)
    return p


def load_dataset(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Load ``(demos, metadata)`` written by :func:`save_dataset`.

    Raises ``FileNotFoundError`` naming the path if the ``.npz`` or its ``.json`` is
    missing, ``ValueError`` naming the path if either is malformed.
    """
    p = Path(path)
    if not p.exists() and p.suffix != ".npz" and p.with_name(p.name + ".npz").exists():
        p = p.with_name(p.name + ".npz")
    if not p.is_file():
        raise FileNotFoundError(f"dataset file not found: {str(p)!r}")
    mp = _meta_path(p)
    if not mp.is_file():
        raise FileNotFoundError(f"dataset metadata file not found: {str(mp)!r} (for {str(p)!r})")
    try:
        with np.load(p, allow_pickle=False) as z:
            demos = {k: z[k] for k in z.files}
    except Exception as e:
        raise ValueError(f"malformed dataset file {str(p)!r}: {e}") from None
    try:
        meta = json.loads(mp.read_text(encoding="utf-8"))
    except Exception as e:
        raise ValueError(f"malformed dataset metadata {str(mp)!r}: {e}") from None
    if not isinstance(meta, dict):
        raise ValueError(f"malformed dataset metadata {str(mp)!r}: expected a JSON object")
    try:
        _check_demos(demos, what=f"dataset {str(p)!r}")
    except ValueError as e:
        raise ValueError(f"malformed dataset file: {e}") from None
    return demos, meta


def generate_perturbed_demonstrations(
    num_rounds: int,
    seed: int = 0,
    env_kwargs: dict[str, Any] | None = None,
    max_steps_per_round: int = 300,
    perturb_prob: float = 0.05,
    perturb_max_len: int = 8,
    serve_perturb_max_len: int = 0,
    noise_seed: int = 12345,
) -> dict[str, np.ndarray]:
    """Expert demonstrations with perturbed execution (DART-style noise injection).

    Every step's **label** is the expert's action for the recorded observation; the **executed**
    action is the expert's except during perturbations: outside one, a perturbation starts with
    probability ``perturb_prob``, lasts ``U{1..perturb_max_len}`` steps and executes one uniformly
    random action; every round also starts with one of ``U{0..serve_perturb_max_len}`` steps.
    This removes the paddle's own motion as a cue for the next label (the "copycat" shortcut)
    and covers recovery states (why: docs/PONG.md, section 3). ``perturb_prob=0`` gives the clean
    expert's demonstrations.

    Round ``i`` is served by ``env.reset(seed=seed + i)`` (seeds below ``EVAL_SEED_BASE``),
    the perturbations come from ``numpy.random.default_rng(noise_seed)``. Returns the same
    arrays as :func:`generate_demonstrations` (so ``make_windows``, ``train_val_split`` and
    ``save_dataset`` apply); recording stops at a miss, the cap, the env's step limit or after
    ``max_steps_per_round`` steps.
    """
    if seed + num_rounds > EVAL_SEED_BASE:
        raise ValueError(f"seed + num_rounds must be <= EVAL_SEED_BASE={EVAL_SEED_BASE}")
    if not 0.0 <= perturb_prob <= 1.0:
        raise ValueError(f"perturb_prob must be in [0, 1], got {perturb_prob!r}")
    env = SinglePlayerPong(**(env_kwargs or {}))
    expert = ExpertPolicy(env)
    rng = np.random.default_rng(noise_seed)
    obs_l, act_l, rew_l, st_l = [], [], [], []
    lengths, catches_l, ends = [], [], []
    for i in range(int(num_rounds)):
        o, info = env.reset(seed=int(seed) + i)
        n = catches = 0
        left = int(rng.integers(0, serve_perturb_max_len + 1)) if serve_perturb_max_len > 0 else 0
        pa = int(rng.integers(3))
        end = ROUND_END_RECORDING_CUT
        while n < max_steps_per_round:
            label = expert.act(o)
            if left == 0 and perturb_prob > 0 and rng.random() < perturb_prob:
                left = int(rng.integers(1, perturb_max_len + 1))
                pa = int(rng.integers(3))
            executed = pa if left > 0 else label
            left = max(left - 1, 0)
            obs_l.append(np.asarray(o, dtype=np.float32))
            st_l.append(env.get_state().as_array())
            act_l.append(label)
            o, r, term, trunc, info = env.step(executed)
            rew_l.append(r)
            n += 1
            if r > 0:
                catches += 1
            if term:
                end = ROUND_END_MISS
                break
            if trunc:
                end = ROUND_END_CAP if info["catches"] >= env.max_catches else ROUND_END_STEP_LIMIT
                break
        lengths.append(n)
        catches_l.append(catches)
        ends.append(end)
    lengths_a = np.asarray(lengths, dtype=np.int64)
    rn = np.arange(int(num_rounds), dtype=np.int64)
    starts = np.zeros(int(lengths_a.sum()), dtype=bool)
    starts[np.concatenate([[0], np.cumsum(lengths_a)[:-1]])] = True
    return {
        "observations": np.stack(obs_l).astype(np.float32),
        "actions": np.asarray(act_l, dtype=np.int64),
        "rewards": np.asarray(rew_l, dtype=np.float32),
        "states": np.stack(st_l).astype(np.float32),
        "round_ids": np.repeat(rn, lengths_a),
        "episode_starts": starts,
        "round_numbers": rn,
        "round_seeds": int(seed) + rn,
        "round_lengths": lengths_a,
        "round_catches": np.asarray(catches_l, dtype=np.int64),
        "round_end": np.asarray(ends, dtype=np.int8),
    }
