"""The settings of ``tnd pong`` (:class:`PongConfig`, one command-line option per field through
:mod:`tnd.apps.settings`) and the ``--quick`` presets."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..settings import UsageError, setting
from .models import MODEL_NAMES
from .policies import EVAL_SEED_BASE
from .shifts import SHIFT_NAMES

__all__ = ["PongConfig", "BC_V1", "TND_BASES", "presets_for", "OBSERVATIONS", "DAGGER_SELECT", "QUICK", "RESUME_MAY_CHANGE", "PROTOCOLS", "DAGGER_FIELDS", "DAGGER_SEED_BASE",
           "DAGGER_VAL_SEED_BASE", "ADDED_FIELDS", "ADDED_FIELDS_BEFORE", "stored_settings"]

PROTOCOLS = ("bc", "dagger")
#: the observation modes a Pong run may use (the env has more: state, pixels)
OBSERVATIONS = ("positions", "motion")
#: base seed of the DAgger learner's rounds (iteration i >= 1, round j: + (i - 1) * --dagger-rounds + j)
DAGGER_SEED_BASE = 20_000_000
#: base seed of the DAgger closed-loop validation rounds (round j: + j); between the evaluation
#: serves (10 000 000 + i) and the learner's rounds
DAGGER_VAL_SEED_BASE = 15_000_000
#: the settings only --protocol dagger uses
DAGGER_FIELDS = ("dagger_iterations", "dagger_rounds", "dagger_beta", "dagger_max_steps", "dagger_val_rounds")
#: which DAgger iteration a cell keeps
DAGGER_SELECT = ("best", "last")
#: the TND architectures a run starts from before tuning (``--tnd-base``; keys of build_model's
#: tnd_overrides): ``control``, the protocol's default (every neuron an input, time constants from a
#: quarter of a step to 10 steps, two rounds of interaction per observation: docs/PONG.md, section
#: 9, why), and ``v1``, the default of the earlier releases' paper reproduction
TND_BASES: dict[str, dict[str, Any]] = {
    "control": {"input_fraction": 1.0, "dynamics_kw": {"tau_init": [0.25, 10.0]}, "propagation_steps": 2},
    "v1": {},
}
#: ``--protocol bc`` on the command line: the earlier releases' protocol as a whole (positions only,
#: no noise, the 2,500-step budget, 3 seeds, the v1 TND), so that its documented numbers hold;
#: explicit options still win (docs/PONG.md, section 9)
BC_V1: dict[str, Any] = {"protocol": "bc", "obs_mode": "positions", "obs_noise": 0.0, "max_steps": 2500,
                         "eval_every": 100, "patience": 6, "seeds": (0, 1, 2), "tnd_base": "v1"}


@dataclass
class PongConfig:
    """Settings of ``tnd pong``: the defaults are the protocol of docs/PONG.md, section 10 (DAgger,
    motion observations with noise, training to convergence, 5 seeds); ``BC_V1`` the earlier one."""

    out: str | None = setting(None, kind="folder", example="--out runs/pong")
    """run folder (default: runs/pong-<UTC timestamp>)"""
    models: tuple[str, ...] = setting(("tnd", "tnd_shared", "rnn", "sparse_rnn", "lstm", "cfc", "transformer", "mlp",
                                       "mlp_k"),
                                      choices=MODEL_NAMES, metavar="MODEL")
    """models to train and evaluate (mlp and mlp_k: the non-recurrent references)"""
    seeds: tuple[int, ...] = setting((0, 1, 2, 3, 4), metavar="SEED")
    """training seeds (initial weights and batch order); one cell per (model, seed)"""
    quick: bool = False
    """tiny smoke-test budget (whole run well under a minute); explicit options still win"""
    resume: bool = False
    """continue the run in --out: skip its finished (model, seed) cells (the settings must match)"""
    checkpoint_every: int = 0
    """write a training checkpoint every this many gradient steps (0: never); with --resume an
    unfinished cell continues from its checkpoint, with the same result as an uninterrupted run"""
    workers: int = setting(2, low=1)
    """parallel worker processes for the cells (each single-threaded; results do not depend on it)"""
    progress: bool = True
    """hide the progress bars and messages (not those about resuming, --force and interrupts)"""
    param_budget: int = setting(2000, low=1, high=10**7, high_open=False)
    """trainable-parameter budget every model is matched to (at most 10**7: CPU models)"""
    window: int = setting(32, low=1)
    """training window length T (steps); also the Transformer's context when playing"""
    batch_size: int = setting(64, low=1)
    """windows per gradient step"""
    lr: float = setting(5e-3, low=0.0, low_open=True)
    """Adam learning rate (the same for every model)"""
    max_steps: int = setting(30000, low=1)
    """gradient-step cap per training (the same for every model; early stopping ends training long
    before it: the stopping step of every cell is reported)"""
    eval_every: int = setting(200, low=1)
    """validate every this many gradient steps"""
    patience: int = setting(10, low=1)
    """early stopping: validations without improvement of the validation loss"""
    grad_clip: float = setting(1.0, low=0.0)
    """gradient-norm clipping (0: none)"""
    demo_rounds: int = setting(3000, low=1)
    """demonstration rounds (served with seeds data_seed + i, disjoint from evaluation seeds)"""
    demo_steps_per_round: int = setting(300, low=1)
    """steps recorded per demonstration round at most (the serve and the first returns); at least --window"""
    perturb_prob: float = setting(1.0, low=0.0, high=1.0)
    """executed-action noise: probability per step of starting a perturbation (1.0: every executed
    action is random, every label is the expert's)"""
    perturb_max_len: int = setting(1, low=1)
    """executed-action noise: a perturbation lasts U{1..perturb_max_len} steps"""
    serve_perturb_max_len: int = 0
    """executed-action noise: every demonstration round starts with a perturbation of U{0..this} steps"""
    val_fraction: float = setting(0.2, low=0.0, high=1.0, low_open=True, high_open=True)
    """fraction of demonstration rounds held out for validation / early stopping"""
    val_windows: int = setting(256, low=1)
    """validation windows used (the first ones; keeps validation cheap)"""
    data_seed: int = 0
    """seed of the first demonstration round"""
    graph_seed: int = 0
    """seed of the TND graph and of the sparse RNN's mask (the architecture, fixed across training seeds)"""
    eval_rounds: int = setting(100, low=1)
    """closed-loop evaluation rounds per trained model (served with seeds 10 000 000 + i, disjoint
    from the demonstration seeds)"""
    max_catches: int = setting(100, low=1)
    """cap of consecutive catches that ends a round (truncation)"""
    obs_noise: float = setting(0.01, low=0.0)
    """std of Gaussian observation noise (demonstrations and evaluation)"""
    obs_mode: str = setting("motion", choices=OBSERVATIONS)
    """what a model observes: positions (ball x, y, paddle y: the velocity must come from
    history) or motion (the same plus the ball's displacement since the previous observation, in
    ball speeds: velocity from one frame difference; docs/PONG.md, section 1)"""
    frame_steps: int = setting(300, low=1)
    """steps of TND play drawn in the frame strip"""
    protocol: str = setting("dagger", choices=PROTOCOLS)
    """training protocol: bc (behaviour cloning on the demonstrations; on the command line it also
    brings the earlier releases' observation, budget and seeds, BC_V1, unless given) or dagger (the same, then
    --dagger-iterations iterations of: the learner plays, the expert labels every visited observation,
    the data are aggregated and the model retrains from its weights)"""
    dagger_iterations: int = setting(4, low=1)
    """DAgger: iterations after behaviour cloning"""
    dagger_rounds: int = setting(200, low=1)
    """DAgger: rounds the learner plays per iteration (serves 20 000 000 + ..., disjoint from the
    demonstration and evaluation serves), at most --demo-steps-per-round steps recorded each"""
    dagger_beta: float = setting(0.0, low=0.0, high=1.0)
    """DAgger: in iteration i (1, 2, ...) each executed action is the expert's with probability
    beta**i, else the learner's (0: the learner alone)"""
    dagger_max_steps: int = setting(0, low=0)
    """DAgger: gradient-step budget of each retraining (0: --max-steps)"""
    dagger_val_rounds: int = setting(50, low=1, high=5_000_000, high_open=False)
    """DAgger: closed-loop validation rounds after each iteration (serves 15 000 000 + j, disjoint
    from the evaluation serves)"""
    shifts: tuple[str, ...] = setting(SHIFT_NAMES, choices=(*SHIFT_NAMES, "none"), metavar="SHIFT", allow_empty=True)
    """shifted environments each trained model (and the expert and tracker) is also evaluated in,
    on the same evaluation serves (the generalisation table; src/tnd/apps/pong/shifts.py: ball_fast =
    ball speed x1.25, paddle_short = paddle half-length x0.75, wide_serves = serve angles up to 70
    degrees); none, or the option without a name: none. Evaluation only: a resumed run adds a
    missing shift from the saved models without retraining"""
    shift_rounds: int | None = setting(None, low=1)
    """evaluation rounds per trained model in each shift (default: --eval-rounds)"""
    dagger_select: str = setting("best", choices=DAGGER_SELECT)
    """DAgger: the iteration whose model the cell keeps and evaluates: best (the highest closed-loop
    validation mean catches, on the validation serves; ties: the later one) or last"""
    mlp_frames: int = setting(4, low=1, high=256, high_open=False)
    """k, the observations the mlp_k reference sees (the current one and the k - 1 before it)"""
    tnd_base: str = setting("control", choices=tuple(TND_BASES))
    """the TND architecture before tuning: control (every neuron an input, time constants from 0.25
    to 10 steps, 2 rounds of interaction per observation) or v1 (the earlier releases' default: a
    quarter of the neurons input, time constants from 1 to 10 steps, 1 round); --tuned options
    come on top"""
    tuned: str | None = setting(None, kind="file", example="--tuned runs/pong-tune/best_configs.json")
    """chosen configurations (best_configs.json of tnd pong tune): each model listed there trains with
    its chosen learning rate and options, the others with the defaults; none: no file (default: the
    committed src/tnd/apps/pong/tuned.json when there is one, else none)"""

    @property
    def shift_eval_rounds(self) -> int:
        """Evaluation rounds per shift (``--shift-rounds``, default ``--eval-rounds``)."""
        return self.eval_rounds if self.shift_rounds is None else self.shift_rounds

    def check(self) -> None:
        """The options that are valid alone but not together (UsageError); ``--shifts none``
        becomes no shifts."""
        if "none" in self.shifts:
            if len(self.shifts) > 1:
                raise UsageError(f"--shifts: none stands alone (no shifts), got {' '.join(self.shifts)!r}")
            self.shifts = ()
        if self.demo_steps_per_round < self.window:
            raise UsageError(f"--demo-steps-per-round must be >= --window, got {self.demo_steps_per_round} "
                             f"< {self.window}")
        if self.resume and self.out is not None and not Path(self.out).is_dir():
            raise UsageError(f"--resume: the run folder --out {self.out} does not exist (start it without --resume)")
        if self.tuned not in (None, "none") and not Path(self.tuned).is_file():
            raise UsageError(f"--tuned: expected a chosen-configurations file (best_configs.json of tnd pong tune) "
                             f"or none, got {self.tuned!r}, which does not exist")
        if self.protocol == "dagger":
            top = DAGGER_VAL_SEED_BASE - EVAL_SEED_BASE
            if self.eval_rounds > top:  # the evaluation serves must stay below the DAgger serves
                raise UsageError(f"--eval-rounds: at most {top} with --protocol dagger, got {self.eval_rounds}")
            if self.shift_rounds is not None and self.shift_rounds > top:  # the same serves, shifted
                raise UsageError(f"--shift-rounds: at most {top} with --protocol dagger, got {self.shift_rounds}")
        else:
            base = PongConfig(**QUICK) if self.quick else PongConfig()
            for k in (*DAGGER_FIELDS, "dagger_select"):
                if getattr(self, k) != getattr(base, k):
                    raise UsageError(f"--{k.replace('_', '-')}: only used with --protocol dagger (this run is "
                                     f"--protocol {self.protocol})")


#: overrides applied by --quick (explicit command-line options still win)
QUICK: dict[str, Any] = {
    "seeds": (0,), "workers": 1, "param_budget": 400, "window": 16, "batch_size": 16, "max_steps": 12,
    "eval_every": 6, "patience": 2, "demo_rounds": 12, "demo_steps_per_round": 120, "val_windows": 16,
    "eval_rounds": 8, "max_catches": 3, "frame_steps": 60,
    "dagger_iterations": 2, "dagger_rounds": 8, "dagger_val_rounds": 8,
}

#: fields added after run folders were first written: --resume reads a config.json without them
#: with this run's values (they change no cell of such a run), except those of ADDED_FIELDS_BEFORE
ADDED_FIELDS = ("protocol", *DAGGER_FIELDS, "dagger_select", "mlp_frames", "tuned", "obs_mode", "shifts", "shift_rounds",
                "tnd_base")
#: the added fields whose value a run folder written before the field existed implies (what such
#: a run did): behaviour cloning, the last DAgger iteration, positions only, the v1 TND
ADDED_FIELDS_BEFORE: dict[str, Any] = {"protocol": "bc", "dagger_select": "last", "obs_mode": "positions",
                                       "tnd_base": "v1"}


def stored_settings(stored: dict[str, Any], current: PongConfig) -> dict[str, Any]:
    """A run folder's config.json as the settings its cells ran with: a field added after the
    folder was written takes its ``ADDED_FIELDS_BEFORE`` value (what such a run did), else
    ``current``'s (it changes no cell of such a run)."""
    return {**{k: getattr(current, k) for k in ADDED_FIELDS}, **ADDED_FIELDS_BEFORE, **stored}


def presets_for(protocol: str | None, quick: bool, quick_preset: dict[str, Any] = QUICK,
                skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The presets of a command line: ``BC_V1`` when it asks for ``--protocol bc``, then
    ``quick_preset`` (default ``QUICK``; a command's own, such as ``tnd pong tune``'s) with
    ``--quick`` (explicit options win over both); without the settings in ``skip`` (those the
    command has no option for)."""
    out: dict[str, Any] = dict(BC_V1) if protocol == "bc" else {}
    if quick:
        out.update(quick_preset)
    return {k: v for k, v in out.items() if k not in skip}

#: settings a resumed run may change: which cells run and how, not what a cell trains (the shifts
#: are evaluation only: a resumed run plays the missing ones with the saved models)
RESUME_MAY_CHANGE = ("out", "models", "seeds", "quick", "resume", "checkpoint_every", "workers", "progress",
                     "frame_steps", "shifts", "shift_rounds")
