"""The same seed gives bit-identical training and evaluation, in this process and in a fresh one."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tnd
import tnd.apps.pong
from tnd import TND, NeuronGraph


def _train_digest(seed: int) -> str:
    torch.manual_seed(seed)
    g = NeuronGraph.random(12, 0.3, seed=seed, num_inputs=3, num_outputs=3)
    model = TND(3, g, 2, dynamics="gated")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(4):
        x, target = torch.randn(4, 10, 3), torch.randn(4, 10, 2)
        loss = ((model(x)[0] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    digest = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        digest.update(k.encode())
        digest.update(v.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _play_digest(seed: int) -> str:
    from tnd.apps.pong.evaluate import play_rounds

    torch.manual_seed(seed)
    g = NeuronGraph.random(12, 0.3, seed=seed, num_inputs=3, num_outputs=3)
    model = TND(tnd.apps.pong.SinglePlayerPong().obs_dim, g, 3)
    out = play_rounds(model, rounds=4, seed=123, env_kwargs={"max_catches": 3, "max_steps": 300})
    return hashlib.sha256(json.dumps(out, sort_keys=True, default=str).encode()).hexdigest()


def test_training_and_evaluation_are_bit_identical_in_process():
    assert _train_digest(5) == _train_digest(5)
    assert _train_digest(5) != _train_digest(6)
    assert _play_digest(5) == _play_digest(5)


@pytest.mark.slow
def test_training_and_evaluation_are_bit_identical_in_a_subprocess():
    code = ("import sys, torch; torch.set_num_threads(1); sys.path.insert(0, sys.argv[1]); "
            "import test_determinism as t; print(t._train_digest(5)); print(t._play_digest(5))")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent)], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.split()
    assert out == [_train_digest(5), _play_digest(5)]
