"""Graph properties of a `tnd topology` run's cells (docs/TOPOLOGY.md, "What the best graph has").

Usage: python benchmarks/topology_graphs.py RUN_FOLDER
Prints, per cell: edges leaving input neurons, edges entering output neurons, outputs reachable
from an input, outputs, max out-degree, isolated neurons."""
import json, sys
from pathlib import Path
import torch
from tnd.apps.pong.cells import load_cell_model

run = Path(sys.argv[1])
def stats(label, seed):
    m = load_cell_model(run, label, seed)
    core = m.inner if hasattr(m, "inner") else m
    g = core.graph
    src, tgt = g.edge_index[0].tolist(), g.edge_index[1].tolist()
    ins, outs = set(g.input_neurons.tolist()), set(g.output_neurons.tolist())
    n = g.num_neurons
    adj = [[] for _ in range(n)]
    for s, t in zip(src, tgt): adj[s].append(t)
    seen = set(ins); front = list(ins)
    while front:
        nxt = []
        for u in front:
            for v in adj[u]:
                if v not in seen: seen.add(v); nxt.append(v)
        front = nxt
    outdeg = [len(a) for a in adj]
    indeg = [0]*n
    for t in tgt: indeg[t] += 1
    iso = sum(1 for i in range(n) if outdeg[i] == 0 and indeg[i] == 0)
    return (sum(1 for s in src if s in ins), sum(1 for t in tgt if t in outs), len(outs & seen), len(outs), max(outdeg), iso)
for label in ("scale_free-k2", "random-k2", "learned-scale_free-k2"):
    print(label, [stats(label, s) for s in (0, 1, 2)])
