"""Run folders and the cells inside them, for every command that writes one (pong, topology, suite).

* :func:`open_run_folder`: a folder that already holds a run is never overwritten silently.
  Without ``--resume`` or ``--force`` it is refused (the message names both); ``--resume`` with
  settings that change results is refused naming each setting that differs; ``--force`` moves
  the old run aside to ``<out>.old-<UTC time>`` (nothing is lost) and starts over.
* :func:`run_calls`: run the cells, in this process or in a pool of spawned worker processes.
  On SIGINT/SIGTERM (:class:`Interrupted`, raised by the handler that :func:`on_signals`
  installs) the workers are killed at once, finished cells stay on disk, and the exception goes
  on to the command, which writes a partial report and exits 128 + the signal number.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from .settings import UsageError

__all__ = ["FolderOptions", "Interrupted", "open_run_folder", "run_calls", "on_signals", "set_resume_command", "note"]

_STATE: dict[str, Any] = {"resume": None, "command": "tnd"}


@dataclass
class FolderOptions:
    """How to open a run folder that already holds a run (beside ``--resume``)."""

    force: bool = False
    """start over in an --out that holds a run: the old run is moved aside to <out>.old-<UTC time>"""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (``signum``); a KeyboardInterrupt, so no ``except Exception``
    swallows it. A command may set ``partial`` (a line saying what it kept)."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)
        self.partial: str | None = None


def note(*parts: Any) -> None:
    """A message on stderr that ``--no-progress`` does not hide."""
    print(*parts, file=sys.stderr, flush=True)


def set_resume_command(command: str | None) -> None:
    """The command line that continues the current run (named when the run is interrupted)."""
    _STATE["resume"] = command


def on_signals(command: str) -> Callable[[], None]:
    """Install SIGINT/SIGTERM handlers for ``tnd <command>``: the first signal prints one line at
    once and raises :class:`Interrupted` in the main thread; a second one kills the workers and
    exits immediately. Returns a function that restores the previous handlers."""
    _STATE["command"] = command
    _STATE["resume"] = None
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def again(signum, frame):  # pragma: no cover - exercised by hand
        note(f"tnd {command}: interrupted again: exiting now")
        _kill(_children())
        os._exit(128 + signum)

    def first(signum, frame):
        for s in old:
            signal.signal(s, again)
        hint = _STATE["resume"]  # set once a run folder is open
        note(f"tnd {command}: interrupted ({signal.Signals(signum).name})"
             + (f": stopping; finished cells are kept; continue with: {hint}" if hint else ""))
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers live in the main thread only
    for s in old:
        signal.signal(s, first)

    def restore() -> None:
        for s, h in old.items():
            signal.signal(s, h)

    return restore


# ----------------------------------------------------------------------------- the run folder
def _canonical(d: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(d))  # tuples -> lists, as stored


def open_run_folder(out: Path, command: str, marker: str, settings: dict[str, Any], stored_settings,
                    *, resume: bool, force: bool, may_change: Iterable[str], option) -> None:
    """Check (and, with ``force``, clear) ``out`` before a run writes into it.

    ``marker``: the file that says the folder holds a run; ``stored_settings(path) -> dict`` reads
    the settings of that run from it; ``settings``: those of this run (same keys); ``may_change``:
    settings a resumed run may change (which cells to run, how); ``option(key, value) -> str``
    shows one setting as a user types it. Raises UsageError when the folder is refused."""
    if resume and force:
        raise UsageError("--force: starts over, --resume continues: give one of them")
    path = out / marker
    if not path.is_file():
        return
    if force:
        old = out.with_name(f"{out.name}.old-{_dt.datetime.now(_dt.timezone.utc).strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while old.exists():
            old = old.with_name(f"{old.name.split('~')[0]}~{n}")
            n += 1
        try:
            os.rename(out, old)
        except OSError as e:  # a mount point, the current folder, ...
            raise UsageError(f"--force: cannot move the old run {out} aside to {old} ({e.strerror}); move or delete "
                             "it yourself") from None
        out.mkdir(parents=True)
        note(f"tnd {command}: --force: the previous run in {out} was moved to {old}")
        return
    if not resume:
        raise UsageError(f"--out {out} holds a tnd {command} run already: add --resume to continue it "
                         f"(same settings) or --force to start over (the old run is moved to {out.name}.old-<time>)")
    try:
        before = _canonical(stored_settings(path))
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"--resume: {path} is unreadable; use --force to start over") from None
    now = _canonical(settings)
    if set(before) != set(now):
        raise UsageError(f"--resume: {out} holds a run of another command (its {marker} has other keys); "
                         f"choose another --out, or use --force to start over")
    skip = set(may_change)
    diff = [k for k in now if k not in skip and before[k] != now[k]]
    if diff:
        shown = "; ".join(f"{option(k, before[k])} in the run, {option(k, now[k])} now" for k in diff[:6])
        more = f" (and {len(diff) - 6} more)" if len(diff) > 6 else ""
        raise UsageError(f"--resume: the run in {out} has other settings: {shown}{more}; resume with the run's "
                         f"values, or use --force to start over")


# ----------------------------------------------------------------------------- running cells
def _children() -> list:
    import multiprocessing as mp

    return list(mp.active_children())


def _kill(procs: list) -> None:
    for p in procs:
        try:
            p.kill()
        except (OSError, ValueError):
            pass
    for p in procs:
        try:
            p.join(2.0)
        except (OSError, ValueError, AssertionError):
            pass


def _worker_init() -> None:
    """In a worker: leave SIGINT to the parent (it stops the workers; a Ctrl-C reaches the whole
    terminal process group), and exit when the parent is gone (a SIGKILLed parent cannot)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    parent = os.getppid()

    def watch() -> None:
        import time

        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_calls(fn: Callable[..., Any], calls: list[tuple[Any, tuple]], workers: int,
              done: Callable[[Any, Any], None], start: Callable[[Any], None] | None = None) -> None:
    """``fn(*args)`` for every ``(key, args)`` in ``calls``; ``done(key, result)`` as each finishes.
    With ``workers > 1`` the calls run in a pool of spawned processes; ``start(key)`` is called
    before a call only when they run in this process. On any exception (an interrupt included)
    the pool's workers are killed before it propagates."""
    if workers > 1 and len(calls) > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        before = set(_children())
        ex = ProcessPoolExecutor(max_workers=min(workers, len(calls)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init)
        try:
            futs = {ex.submit(fn, *args): key for key, args in calls}
            for f in as_completed(futs):
                done(futs[f], f.result())
        except BaseException:
            ex.shutdown(wait=False, cancel_futures=True)
            _kill([p for p in _children() if p not in before])
            raise
        ex.shutdown(wait=True)
    else:
        for key, args in calls:
            if start is not None:
                start(key)
            done(key, fn(*args))
