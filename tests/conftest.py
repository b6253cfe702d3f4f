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

    from tnd.checkpoint import MANIFEST_NAME

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
