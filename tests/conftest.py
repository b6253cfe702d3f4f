import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def sigkill_after_checkpoint():
    """``kill(proc, ck_dir, min_step, timeout)``: wait until the training run in ``proc`` has
    written a checkpoint of at least ``min_step`` steps into ``ck_dir``, SIGKILL it mid-run and
    return the step of the last checkpoint it left."""
    import json
    import signal
    import time

    from tnd.apps.checkpoint import MANIFEST_NAME

    def kill(proc, ck, min_step: int = 6, timeout: float = 40.0) -> int:
        try:
            deadline, step = time.time() + timeout, 0
            while time.time() < deadline:
                try:
                    step = json.loads((ck / MANIFEST_NAME).read_text())["step"]
                except (OSError, ValueError, KeyError):
                    step = 0
                if step >= min_step:
                    break
                assert proc.poll() is None, "training ended before it could be killed"
                time.sleep(0.02)
            assert step >= min_step, "no checkpoint appeared"
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return json.loads((ck / MANIFEST_NAME).read_text())["step"]

    return kill


class CheckpointKilled(BaseException):
    """Raised right after a chosen checkpoint: a BaseException, so no trainer's ``except
    Exception`` catches it, like a SIGKILL."""


@pytest.fixture
def die_after_checkpoint(monkeypatch):
    """``run_killed(fn, n) -> saved steps``: run ``fn()`` until it has written its n-th training
    checkpoint and "die" there; ``run_resumed(fn) -> (fn(), steps loaded)``: run it again with the
    real checkpoint functions, recording which checkpoint steps it loaded."""
    import types

    import tnd.apps.checkpoint as ckmod

    real_save, real_load = ckmod.save_checkpoint, ckmod.load_checkpoint

    def run_killed(fn, n: int) -> list[int]:
        saves: list[int] = []

        def dying_save(*args, **kw):
            real_save(*args, **kw)
            saves.append(kw["step"])
            if len(saves) == n:
                raise CheckpointKilled

        monkeypatch.setattr(ckmod, "save_checkpoint", dying_save)
        with pytest.raises(CheckpointKilled):
            fn()
        monkeypatch.setattr(ckmod, "save_checkpoint", real_save)
        return saves

    def run_resumed(fn):
        loads: list[int] = []

        def spy_load(*args, **kw):
            r = real_load(*args, **kw)
            loads.append(r["step"])
            return r

        monkeypatch.setattr(ckmod, "load_checkpoint", spy_load)
        try:
            return fn(), loads
        finally:
            monkeypatch.setattr(ckmod, "load_checkpoint", real_load)

    return types.SimpleNamespace(run_killed=run_killed, run_resumed=run_resumed)
