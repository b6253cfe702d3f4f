"""Pong results from finished cells alone (a run that has not finished every cell, e.g. the
20,000-parameter budget run over several sessions), in the run report's own tables: per model
the seeds done, catch rate and mean consecutive catches with their 95 % bootstrap CIs over seeds,
the shifted environments every finished cell has, each seed's best step / training steps, and
whether early stopping ended every cell's training.

    python benchmarks/pong_cells_table.py docs/figures/pong_20k
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tnd.apps.pong.report import aggregate_model, generalisation_table, per_seed_table, results_table


def main(run: str) -> None:
    models, early = {}, {}
    for model_dir in sorted(p for p in (Path(run) / "cells").iterdir() if p.is_dir()):
        cells = [json.loads(m.read_text()) for m in sorted(model_dir.glob("seed-*/metrics.json"))]
        if cells:
            models[model_dir.name] = aggregate_model(model_dir.name, cells)
            early[model_dir.name] = all(c["train"]["stopped_early"] for c in cells)
    shifts = [n for n in dict.fromkeys(k for m in models.values() for k in m.get("shifts") or {})
              if all(n in (m.get("shifts") or {}) for m in models.values())]
    results = {"models": models, "config": {"shifts": shifts}}
    print(results_table(results), "", generalisation_table(results), "", per_seed_table(results), "", sep="\n")
    for name, ok in early.items():
        print(f"- {name} (seeds {', '.join(map(str, models[name]['seeds']))}): "
              + ("every training stopped early" if ok else "**a training ran into its step cap**"))


if __name__ == "__main__":
    main(sys.argv[1])
