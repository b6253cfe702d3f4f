"""The suite's results as one task x model table (the README's): mean ± std over seeds, stopping step.

Usage: python benchmarks/suite_matrix.py RUN_FOLDER [RUN_FOLDER ...]

Reads every finished cell (``<run>/cells/*.json``) of the folders through the suite's own
``load_cells`` and ``aggregate`` (the numbers of ``report.md``), so cells of several runs can
be shown together (e.g. a task run separately). A cell found in two folders counts once (the
first folder's). Per task: each model's test metric (accuracy in %, or MSE), the mean update at
which training stopped, the seeds that hit the update cap, then the task's reference predictor;
the best mean of a row is bold; the memoryless ``mlp`` is a column like the others.
"""
from __future__ import annotations

import sys

from tnd.apps.suite.sweep import FULL_MODELS, FULL_TASKS, aggregate, format_metric, load_cells, reference_value


def main(runs: list[str]) -> None:
    seen: dict[str, dict] = {}
    for run in runs:
        for c in load_cells(run):
            if c.get("status", "ok") == "ok":
                seen.setdefault(c.get("cell_id", f"{c['task']}__{c['model']}__{c['topology']}__seed{c['seed']}"), c)
    agg = aggregate(seen.values())
    labels = {lab: a["model"] for rows in agg.values() for lab, a in rows.items()}
    cols = sorted(labels, key=lambda lab: (FULL_MODELS.index(labels[lab]) if labels[lab] in FULL_MODELS else 99, lab))
    print("| task | " + " | ".join(cols) + " | reference |")
    print("|---|" + "---|" * len(cols) + "---|")
    for task in sorted(agg, key=lambda t: FULL_TASKS.index(t) if t in FULL_TASKS else 99):
        rows = agg[task]
        metric = next(iter(rows.values()))["metric"]
        hib = next(iter(rows.values()))["higher_is_better"]
        best = (max if hib else min)(a["mean"] for a in rows.values())
        cells = []
        for lab in cols:
            a = rows.get(lab)
            if a is None:
                cells.append("–")
                continue
            v = format_metric(a["mean"], a["std"], metric, sep="±", unit="")
            v = f"**{v}**" if a["mean"] == best else v
            stop = f"{sum(a['updates']) / len(a['updates']):.0f}"
            cap = f", {a['cap_hits']}/{a['n_seeds']} cap" if a["cap_hits"] else ""
            seeds = f", {a['n_seeds']} seed{'s' if a['n_seeds'] > 1 else ''}" if a["n_seeds"] != 5 else ""
            cells.append(f"{v} ({stop}{cap}{seeds})")
        ref = reference_value(next(iter(rows.values()))["reference"], metric)
        ref_txt = "–" if ref is None else f"{ref[0]} {format_metric(ref[1], None, metric, unit='')}"
        unit = "acc. %" if metric == "accuracy" else "MSE"
        print(f"| {task} ({unit}) | " + " | ".join(cells) + f" | {ref_txt} |")
    print()
    print("Mean ± std over seeds of the test metric; in parentheses the mean update at which early stopping "
          "ended training, and the seeds that hit the update cap instead.")


if __name__ == "__main__":
    main(sys.argv[1:])
