"""Pong results from finished cells alone (a run that has not finished every cell, e.g. the
20,000-parameter budget run over several sessions): per model, the seeds done, mean consecutive
catches with the 95 % percentile-bootstrap CI over seeds, catch rate, the three shifted
environments, and each cell's training steps (all ended by early stopping?).

    python benchmarks/pong_cells_table.py docs/figures/pong_20k
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tnd.apps.pong.report import aggregate_model, format_ci


def main(run: str) -> None:
    cells_dir = Path(run) / "cells"
    print("| model | seeds | mean consecutive catches [95 % CI] | catch rate | ball x1.25 | paddle x0.75 | serves to 70° "
          "| training steps per seed (all stopped early?) |")
    print("|---|---|---|---|---|---|---|---|")
    for model_dir in sorted(p for p in cells_dir.iterdir() if p.is_dir()):
        cells = [json.loads(m.read_text()) for m in sorted(model_dir.glob("seed-*/metrics.json"))]
        if not cells:
            continue
        a = aggregate_model(model_dir.name, cells)
        sh = a.get("shifts", {})
        shift = [f"{sh[k]['mean_consecutive_catches']:.2f}" if k in sh else "–"
                 for k in ("ball_fast", "paddle_short", "wide_serves")]
        steps = ", ".join(str(c["train"]["steps"]) for c in cells)
        early = all(c["train"]["stopped_early"] for c in cells)
        print(f"| {a['name']} | {','.join(map(str, a['seeds']))} | {a['mean_consecutive_catches']:.2f}"
              f"{format_ci(a['mean_consecutive_catches_ci'], 2)} | {a['catch_rate']:.3f} | " + " | ".join(shift)
              + f" | {steps} ({'yes' if early else 'no'}) |")


if __name__ == "__main__":
    main(sys.argv[1])
