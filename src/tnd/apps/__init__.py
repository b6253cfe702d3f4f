"""Applications built on the core: experiments, tasks, baselines, pictures and tools.

The core (:mod:`tnd`: graph, interactions, dynamics, solvers, cell, model, fast, io) needs
torch alone and never imports anything from here; these modules import the core.

* :mod:`.pong` -- the paper's experiment: the single-player Pong environment, experts,
  demonstrations, training, evaluation, reports (``tnd pong``, ``tnd topology``, ``tnd inspect``);
* :mod:`.suite` -- the benchmark suite beyond Pong (``tnd suite``), over :mod:`.tasks`;
* :mod:`.baselines` -- the peer models (RNNs, LSTM, CfC/LTC, Transformer);
* :mod:`.viz` -- figures of a TND system and HTML reports;
* :mod:`.lesions`, :mod:`.prune_regrow` -- lesion studies and learnable topology;
* :mod:`.checkpoint` -- resumable training checkpoints;
* :mod:`.bench`, :mod:`.demo`, :mod:`.cli` -- ``tnd bench``, ``tnd demo`` and the ``tnd`` command;
  :mod:`.settings` (settings dataclasses as options: one convention for every command) and
  :mod:`.runs` (run folders: refusal, resume, interrupts).

Importing this package imports none of them.
"""
