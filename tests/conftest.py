import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


# Test tiers: `bash scripts/test.sh` runs everything (CI); `bash scripts/test.sh --fast`, the same
# as `pytest -m "not slow"`, skips the tests marked slow (subprocess and CLI runs, training runs,
# SIGKILL/resume runs, Ray, hypothesis-heavy property tests of a second or more). Mark a slow test
# with @pytest.mark.slow; SLOW below marks those in modules that other work owns at the moment,
# by name (a function name covers all its parameter sets; "name[id]" one of them).
SLOW = {
    "test_checkpoint.py": ["test_sigkilled_run_resumes_bit_identical"],
    "test_cli_props.py": ["test_pong_refuses_invalid_options", "test_topology_refuses_invalid_options",
                          "test_suite_refuses_invalid_options", "test_demo_refuses_invalid_options",
                          "test_bench_refuses_invalid_options", "test_inspect_refuses_invalid_options"],
    "test_fast.py": ["test_bench_quick_smoke", "test_compile_cache_is_reused"],
    "test_pong_tune.py": ["test_tune_on_ray_end_to_end"],
    "test_suite_tune.py": ["test_tune_on_ray_end_to_end"],
    "test_inspect_topology.py": ["test_inspect_writes_figures_and_self_contained_html"],
    "test_pong_experiment.py": ["test_parallel_workers_give_the_same_numbers", "test_cli_quick_run_writes_results_report_and_plots",
                                "test_resume_reruns_a_cell_with_changed_settings"],
    "test_suite.py": ["test_import_needs_no_ray", "test_sweep_on_ray_matches_local", "test_cli_quick_runs_one_task",
                      "test_sweep_local_runs_and_resumes",
                      "test_suite_training_sigkilled_mid_run_resumes_bit_identical"],
    "test_viz.py": ["test_import_tnd_stays_torch_only", "test_draw_graph_bands_png_size_and_determinism"],
    "test_cli_signals.py": ["test_interrupt_keeps_finished_cells_and_names_resume",
                            "test_suite_interrupt_writes_a_partial_report", "test_workers_exit_when_the_parent_is_killed"],
    "test_cli_faults.py": ["test_full_disk_is_one_line_and_damages_nothing", "test_unwritable_output_folder"],
    "test_cli.py": ["test_pong_run_folder_is_never_overwritten_silently"],
    "test_pong_plots.py": ["test_pong_plots_are_deterministic_with_legends_outside"],
    "test_pong_shifts.py": ["test_every_cell_and_reference_has_each_shift_and_the_report_has_the_table",
                            "test_resume_adds_a_missing_shift_without_retraining"],
    "test_pong_dagger.py": ["test_dagger_quick_run_writes_iterations_and_is_deterministic",
                            "test_a_run_folder_from_before_the_new_settings_resumes"],
    "test_saved_models.py": ["test_mutated_saved_models_are_refused_or_identical_and_never_allocate_much"],
    "test_baselines_modern.py": ["test_pong_quick_run_with_mamba_and_lru"],
    "test_fast_entry.py": ["test_issue_cases_run_or_raise", "test_stale_library_falls_back_to_torch"],
    "test_layout.py": ["test_import_tnd_is_light", "test_import_tnd_apps_imports_no_subpackage",
                       "test_gymnasium_makes_the_env_from_its_entry_point"],
    "test_model_props.py": ["test_cell_forward_random_input"],
    "test_suite_figures.py": ["test_group_figures_are_written_deterministically_and_readable",
                              "test_import_of_the_suite_needs_no_matplotlib"],
}


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(config, items):
    modules = {}
    for item in items:
        names = SLOW.get(item.path.name, ())
        if getattr(item, "originalname", None) in names or item.name in names:
            item.add_marker(pytest.mark.slow)
        if names and getattr(item, "module", None) is not None:
            modules[item.path.name] = item.module
    for fname, module in modules.items():  # a renamed test must not silently join the fast tier
        missing = [n for n in SLOW[fname] if not hasattr(module, n.split("[")[0])]
        if missing:
            raise pytest.UsageError(f"tests/conftest.py SLOW lists {missing} in {fname}, which has no such "
                                    "test: update SLOW")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test starts on one torch thread (the CLI commands set their own count in-process):
    a count leaked from an earlier test would change timings and float summation order."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)
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
