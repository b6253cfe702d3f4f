"""Applications built on the core: experiments, tasks, baselines, pictures and tools.

The core (:mod:`tnd`: graph, interactions, dynamics, solvers, cell, model, fast, io) needs
torch alone and never imports anything from here; these modules import the core.

* :mod:`.pong` -- the paper's experiment: the single-player Pong environment, experts,
  demonstrations, training, evaluation, reports (``tnd pong``, ``tnd topology``, ``tnd inspect``);
* :mod:`.suite` -- the benchmark suite beyond Pong (``tnd suite``), over :mod:`.tasks`;
* :mod:`.baselines` -- the peer models (RNNs, LSTM, CfC/LTC, Transformer);
* :mod:`.viz` -- figures of a TND system and HTML reports;
* :mod:`.lesions`, :mod:`.prune_regrow` -- lesion studies and learnable topology;
* :mod:`.checkpoint`, :mod:`.training` -- resumable training checkpoints, and the one training loop
  (steps, early stopping, checkpoints, resume) under Pong and the suite;
* :mod:`.settings` -- settings dataclasses as command-line options (one convention for every command);
* :mod:`.runs` -- run folders: refusal of silent overwrites, resume, interrupts, worker pools;
* :mod:`.bench`, :mod:`.demo`, :mod:`.cli` -- ``tnd bench``, ``tnd demo`` and the ``tnd`` command.

Importing this package imports none of them.
"""
