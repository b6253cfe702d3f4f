"""Why does the default TND lose to a parameter-matched LSTM on memory and control? Measured.

Plain training loops (Adam, gradient clipping at 1, fixed number of updates, no early stopping)
for the default TND a user gets from ``TND(C, NeuronGraph.random(N, density=0.1), O)`` (Pong:
``apps.pong.models.build_model("tnd", ...)``), a parameter-matched LSTM, and what-if TND variants
built through existing constructor options only. For every model, at initialisation and after
training, on one fixed batch:

* ``grad_state``: ``||dL/ds_t||`` over t (s_t the whole recurrent state; LSTM: (h_t, c_t));
* ``memory``: ``||v . dy_T/dx_t||`` over t (y_T the last output step, v a fixed random unit vector
  over the output channels, so its expectation is the Jacobian's Frobenius norm / sqrt(O));
* ``tau``: the time-constant spectrum (``time_constant_stats``) against the task's horizon;
* ``saturation``: fraction of tanh targets ``|c| > 0.95`` and the mean ``|pre-activation|``
  (LSTM: the cell candidate ``tanh(g)`` and the mean forget gate);
* ``graph``: hop distances from the input neurons to each output neuron, the input fraction;
* ``test``: test loss against the constant predictor at the same update budget.

``python benchmarks/diagnose.py`` (full, ~20-40 min on one core) writes docs/figures/diagnosis.json
and docs/figures/diagnosis_*.png, the numbers of docs/DIAGNOSIS.md; ``--quick`` runs a tiny
version in seconds into a temporary folder (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from tnd import TND, NeuronGraph  # noqa: E402
from tnd.apps.baselines import count_parameters, hidden_size_for_budget, make_baseline, size_for_budget  # noqa: E402
from tnd.apps.tasks import load_task  # noqa: E402
from tnd.apps.viz.timescales import time_constant_stats  # noqa: E402
from tnd.dynamics import TAU_INIT_V0  # noqa: E402
from tnd.graph_builders import num_inputs_v0  # noqa: E402
from tnd.io import atomic_write_text  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DENSITY = 0.1  # the random graph of the "user default" TND

FULL = {"quick": False, "budget": 2000, "lr": 5e-3, "clip": 1.0, "n_test": 1000, "probe_batch": 32,
        "memory": [("adding", 100, 1500, 64), ("copy", 100, 1500, 64), ("adding", 1000, 400, 32), ("copy", 1000, 400, 32),
                   ("adding", 100, 1500, 64, 1), ("adding", 100, 1500, 64, 2)],
        "variants_seed": ["tnd", "tnd_all_input", "tnd_gated_span", "tnd_io_overlap"],
        "variants_short": ["tnd", "tnd_tau_span", "tnd_all_input", "tnd_span_all_input", "tnd_gated_span", "tnd_io_overlap"],
        "variants_long": ["tnd", "tnd_tau_span", "tnd_span_all_input", "tnd_gated_span"],
        "pong": {"demo_rounds": 600, "updates": 1500, "batch": 64, "window": 32, "play_rounds": 100},
        "pong_variants": ["tnd", "tnd_all_input"], "n_train_long": 4000}
QUICK = {"quick": True, "budget": 400, "lr": 5e-3, "clip": 1.0, "n_test": 64, "probe_batch": 8,
         "memory": [("adding", 30, 15, 16), ("copy", 20, 15, 16)],
         "variants_short": ["tnd", "tnd_tau_span"], "variants_long": [], "variants_seed": [],
         "pong": {"demo_rounds": 12, "updates": 10, "batch": 16, "window": 16, "play_rounds": 4},
         "pong_variants": ["tnd"], "n_train_long": 256}


# ----------------------------------------------------------------------------- models
def variant_options(name: str, horizon: int) -> tuple[dict, dict]:
    """(graph options, TND keyword options) of a what-if variant; ``horizon``: the task's length.
    ``tnd`` is the library default this study measured (before docs/DROPIN.md), spelled out."""
    span = {"tau_init": (1.0, float(horizon)), "tau_max": float(max(1000.0, 2.0 * horizon))}
    v0 = {"dynamics": "leaky", "dynamics_kw": {"tau_init": TAU_INIT_V0}}
    return {
        "tnd": ({}, v0),
        "tnd_tau_span": ({}, {"dynamics": "leaky", "dynamics_kw": span}),
        "tnd_all_input": ({"all_input": True}, v0),
        "tnd_span_all_input": ({"all_input": True}, {"dynamics": "leaky", "dynamics_kw": span}),
        "tnd_gated_span": ({}, {"dynamics": "gated", "dynamics_kw": span}),
        "tnd_io_overlap": ({"overlap": True}, v0),
    }[name]


def memory_tnd(name: str, c: int, o: int, budget: int, horizon: int, seed: int) -> TND:
    """A TND on a random graph of density 0.1, neurons matched to ``budget`` parameters."""
    gopt, kw = variant_options(name, horizon)

    def graph(n: int, strict: bool) -> NeuronGraph:
        ni = n if gopt.get("all_input") else num_inputs_v0(n)
        if gopt.get("overlap"):  # input and readout on the same quarter of the neurons
            g = NeuronGraph.random(n, density=DENSITY, seed=seed, allow_unreachable=True)
            q = max(1, n // 4)
            return NeuronGraph(n, g.edge_index, list(range(q)), list(range(q)), allow_unreachable=not strict)
        return NeuronGraph.random(n, density=DENSITY, seed=seed, num_inputs=ni, allow_unreachable=not strict)

    def count(n: int) -> int:
        with torch.random.fork_rng(devices=[]):
            return count_parameters(TND(c, graph(n, False), o, **kw))

    n = size_for_budget(count, budget, lo=12, hi=4096)
    return TND(c, graph(n, True), o, **kw)


def lstm_for(c: int, o: int, budget: int):
    return make_baseline("lstm", c, o, hidden_size_for_budget("lstm", c, o, budget))


def core(model):
    return getattr(model, "inner", model)


# ----------------------------------------------------------------------------- unrolled probes
def unroll_tnd(model: TND, x: torch.Tensor):
    """The discrete-mode reference step written out so every state keeps its gradient.
    Returns (y (B, T, O), states [s_t], targets |c_t|, |pre-activations| or None)."""
    cell = model.cell
    if cell.mode != "discrete":
        raise ValueError("the probe unrolls the discrete update only")
    dyn, inter = cell.dynamics, cell.interaction
    drive = cell.drive(x.transpose(0, 1))
    prep = inter.prepare()
    s = cell.initial_state(x.shape[0], x.dtype, x.device)
    states, targets, pres = [], [], []
    leaky = dyn.name == "leaky" and dyn.activation == "tanh"
    for d_t in drive.unbind(0):
        u = inter.aggregate(prep, s)
        lam, c = dyn.rate_and_target(s, u, d_t)
        s = c + (s - c) * torch.exp(-lam)
        s.retain_grad()
        states.append(s)
        targets.append(c.detach().abs())
        if leaky:
            pres.append((u + d_t + dyn.bias).detach().abs())
    outs = torch.stack([st.index_select(1, model.output_neurons) for st in states])
    y = model.readout(outs.flatten(-2)).transpose(0, 1)
    return y, states, torch.stack(targets), (torch.stack(pres) if pres else None)


def unroll_lstm(model, x: torch.Tensor):
    """nn.LSTM's equations step by step; states are (h_t, c_t) with their gradients kept."""
    lstm = model.lstm
    w_ih, w_hh, b = lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0 + lstm.bias_hh_l0
    bsz, hid = x.shape[0], lstm.hidden_size
    h = x.new_zeros(bsz, hid)
    c = x.new_zeros(bsz, hid)
    states, cand, forget, hs = [], [], [], []
    xw = x @ w_ih.t() + b
    for t in range(x.shape[1]):
        gi, gf, gg, go = (xw[:, t] + h @ w_hh.t()).chunk(4, 1)
        i, f, g, o = torch.sigmoid(gi), torch.sigmoid(gf), torch.tanh(gg), torch.sigmoid(go)
        c = f * c + i * g
        h = o * torch.tanh(c)
        h.retain_grad()
        c.retain_grad()
        states.append((h, c))
        hs.append(h)
        cand.append(g.detach().abs())
        forget.append(f.detach())
    y = model.readout(torch.stack(hs, 1))
    return y, states, torch.stack(cand), torch.stack(forget)


def probe(model, kind: str, x: torch.Tensor, loss_of, horizon_info: int) -> dict:
    """Gradient norms through time, input sensitivity of the last output, saturation."""
    m = core(model)
    x = x.clone().requires_grad_(True)
    is_tnd = isinstance(m, TND)
    if is_tnd:
        y, states, targets, pres = unroll_tnd(m, x)
        with torch.no_grad():
            y_ref, _ = m(x.detach())
        err = float((y.detach() - y_ref).abs().max())
    else:
        y, states, cand, forget = unroll_lstm(m, x)
        with torch.no_grad():
            y_ref, _ = m(x.detach())
        err = float((y.detach() - y_ref).abs().max())
    if err > 1e-3:  # float32 rounding over 1,000 steps (fused kernel vs this loop) stays far below
        raise RuntimeError(f"probe unroll differs from the model's forward by {err}")
    gen = torch.Generator().manual_seed(123)
    v = torch.randn(y.shape[-1], generator=gen)
    v = v / v.norm()
    (gx,) = torch.autograd.grad((y[:, -1] @ v).sum(), x, retain_graph=True)
    memory = gx.norm(dim=-1).mean(0)  # (T,) mean over the batch
    loss = loss_of(y)
    loss.backward()
    if is_tnd:
        g = torch.stack([s.grad.flatten(1).norm(dim=1).mean() for s in states])
    else:
        g = torch.stack([torch.cat([h.grad, c.grad], 1).norm(dim=1).mean() for h, c in states])
    g, memory = g.numpy(), memory.detach().numpy()
    t_all = len(g)
    out = {"grad_state": g.tolist(), "memory": memory.tolist(), "unroll_error": err,
           "grad_ratio_info": float(g[horizon_info] / g.max()), "grad_ratio_first": float(g[0] / g.max()),
           "memory_ratio_info": float(memory[horizon_info] / memory.max()),
           "memory_ratio_first": float(memory[0] / memory.max()),
           "memory_horizon_1e-3": int(t_all - 1 - np.argmax(memory >= 1e-3 * memory.max()))}
    if is_tnd:
        out["saturation"] = {"frac_target_gt_0.95": float((targets > 0.95).float().mean()),
                             "mean_abs_target": float(targets.mean())}
        if pres is not None:
            out["saturation"]["mean_abs_preact"] = float(pres.mean())
            out["saturation"]["frac_preact_gt_2"] = float((pres > 2.0).float().mean())
        out["tau"] = time_constant_stats(m.cell.dynamics.time_constants().detach().numpy())
        out["tau"]["values"] = sorted(m.cell.dynamics.time_constants().detach().flatten().tolist())
    else:
        out["saturation"] = {"frac_candidate_gt_0.95": float((cand > 0.95).float().mean()),
                             "mean_abs_candidate": float(cand.mean()), "mean_forget_gate": float(forget.mean())}
    return out


def graph_stats(m) -> dict | None:
    m = core(m)
    if not isinstance(m, TND):
        return None
    g = m.graph
    n = g.num_neurons
    adj = [[] for _ in range(n)]
    for s, t in g.edge_index.t().tolist():
        adj[s].append(t)
    dist = [-1] * n
    q = deque(g.input_neurons.tolist())
    for i in q:
        dist[i] = 0
    while q:
        j = q.popleft()
        for k in adj[j]:
            if dist[k] < 0:
                dist[k] = dist[j] + 1
                q.append(k)
    hops = [dist[i] for i in g.output_neurons.tolist()]
    ins, outs = set(g.input_neurons.tolist()), set(g.output_neurons.tolist())
    return {"num_neurons": n, "num_edges": g.num_edges, "density": g.density,
            "num_inputs": len(ins), "num_outputs": len(outs), "input_fraction": len(ins) / n,
            "readout_fraction": len(outs) / n, "io_overlap": len(ins & outs),
            "hops_input_to_output": {str(h): hops.count(h) for h in sorted(set(hops))},
            "mean_hops": float(np.mean([h for h in hops if h >= 0])),
            "max_hops_any_neuron": max(dist), "unreached": dist.count(-1)}


# ----------------------------------------------------------------------------- training
def train(model, x, y, loss_of, updates: int, batch: int, lr: float, clip: float, seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    curve, run = [], []
    perm, pos = torch.randperm(len(x), generator=gen), 0
    for step in range(updates):
        if pos + batch > len(x):
            perm, pos = torch.randperm(len(x), generator=gen), 0
        idx = perm[pos:pos + batch]
        pos += batch
        out, _ = model(x[idx])
        loss = loss_of(out, y[idx])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        run.append(loss.item())
        if (step + 1) % max(1, updates // 20) == 0 or step + 1 == updates:
            curve.append([step + 1, float(np.mean(run))])
            run = []
    return curve


@torch.no_grad()
def evaluate(model, x, y, loss_of, acc_of=None, chunk: int = 250) -> dict:
    tot, acc, n = 0.0, 0.0, 0
    for i in range(0, len(x), chunk):
        out, _ = model(x[i:i + chunk])
        k = len(x[i:i + chunk])
        tot += float(loss_of(out, y[i:i + chunk])) * k
        if acc_of is not None:
            acc += float(acc_of(out, y[i:i + chunk])) * k
        n += k
    res = {"loss": tot / n}
    if acc_of is not None:
        res["accuracy"] = acc / n
    return res


def task_losses(kind: str, k: int = 0):
    if kind == "adding":
        return (lambda out, y: F.mse_loss(out[:, -1], y)), None
    if kind == "copy":
        def ce(out, y):
            return F.cross_entropy(out[:, -k:].reshape(-1, out.shape[-1]), y.reshape(-1))

        return ce, (lambda out, y: (out[:, -k:].argmax(-1) == y).float().mean())

    def ce_all(out, y):
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))

    return ce_all, (lambda out, y: (out.argmax(-1) == y).float().mean())


def run_models(label, builders, xtr, ytr, xte, yte, loss_of, acc_of, horizon_info, updates, batch, cfg,
               constant, results, log, checkpoint=None, after=None, seed=0):
    gen = torch.Generator().manual_seed(7)
    pidx = torch.randperm(len(xte), generator=gen)[:cfg["probe_batch"]]
    xp, yp = xte[pidx], yte[pidx]
    entry = {"constant": constant, "updates": updates, "batch": batch, "T": int(xtr.shape[1]), "models": {}}
    for name, build in builders.items():
        torch.manual_seed(seed)
        model = build()
        t0 = time.time()
        rec = {"params": count_parameters(core(model)), "graph": graph_stats(model)}
        rec["init"] = probe(model, label, xp, lambda out: loss_of(out, yp), horizon_info)
        rec["init_test"] = evaluate(model, xte, yte, loss_of, acc_of)
        model.zero_grad()
        rec["curve"] = train(model, xtr, ytr, loss_of, updates, batch, cfg["lr"], cfg["clip"], seed=seed)
        rec["test"] = evaluate(model, xte, yte, loss_of, acc_of)
        rec["test_over_constant"] = rec["test"]["loss"] / constant["loss"]
        model.zero_grad()
        rec["trained"] = probe(model, label, xp, lambda out: loss_of(out, yp), horizon_info)
        if after is not None:
            rec.update(after(model))
        rec["seconds"] = time.time() - t0
        entry["models"][name] = rec
        log(f"  {label:12s} {name:20s} params {rec['params']:6d} test {rec['test']['loss']:.4f} "
            f"(const {constant['loss']:.4f}) acc {rec['test'].get('accuracy', float('nan')):.3f} "
            f"grad_info {rec['trained']['grad_ratio_info']:.1e} mem_info {rec['trained']['memory_ratio_info']:.1e} "
            f"[{rec['seconds']:.0f}s]")
    results[label] = entry
    if checkpoint is not None:
        checkpoint(results)


def memory_study(cfg, results, log, save=None):
    for kind, length, updates, batch, *rest in cfg["memory"]:
        seed = rest[0] if rest else 0  # a second seed: weights, batch order and graph
        label = f"{kind}_{length}" + (f"_seed{seed}" if seed else "")
        if label in results:  # done by an earlier, interrupted run (same settings)
            continue
        short = length <= 100
        kw = {} if short else {"n_train": cfg["n_train_long"]}
        task = load_task(kind, seed=0, length=length, n_test=cfg["n_test"], n_val=16, **kw)
        xtr, ytr = task.split("train")
        xte, yte = task.split("test")
        if cfg["quick"]:
            xtr, ytr = xtr[:256], ytr[:256]
        k = int(task.metadata.get("k", 0))
        loss_of, acc_of = task_losses(kind, k)
        c, o = xtr.shape[-1], task.output_size if kind == "adding" else task.num_classes
        t_all = xtr.shape[1]
        # where the needed information enters: adding's first marker (uniform in the first half),
        # copy's middle symbol
        horizon_info = t_all // 4 if kind == "adding" else k // 2
        if kind == "adding":
            constant = {"loss": float(task.metadata["baseline_mse_test"]), "what": "predict 1.0"}
        else:
            constant = {"loss": math.log(task.num_classes), "accuracy": 1.0 / task.num_classes, "what": "uniform"}
        names = cfg["variants_seed"] if seed else cfg["variants_short"] if short else cfg["variants_long"]
        builders = {n: (lambda n=n: memory_tnd(n, c, o, cfg["budget"], t_all, seed=seed)) for n in names}
        builders["lstm"] = lambda: lstm_for(c, o, cfg["budget"])
        run_models(label, builders, xtr, ytr, xte, yte, loss_of, acc_of, horizon_info,
                   updates, batch, cfg, constant, results, log, save, seed=seed)


def pong_data(p: dict, quick: bool, work: Path):
    """Pong behaviour-cloning windows (positions only, ``p``: demo_rounds, window) generated into
    ``work``: ``(xtr, ytr, xva, yva, constant)``, ``constant`` the training-label-frequency predictor."""
    from tnd.apps.pong.cells import load_windows, prepare_data
    from tnd.apps.pong.config import BC_V1, PongConfig

    # the earlier protocol's observations (positions only, no noise): what this study measured
    pc = PongConfig(**BC_V1, demo_rounds=p["demo_rounds"], window=p["window"],
                    val_windows=32 if quick else 512,
                    max_catches=3 if quick else 100, demo_steps_per_round=120 if quick else 300)
    data = prepare_data(pc, work)
    xtr, ytr, xva, yva = (torch.as_tensor(a) for a in load_windows(pc, data))
    xtr, xva = xtr.float(), xva.float()
    ytr, yva = ytr.long(), yva.long()
    freq = torch.bincount(ytr.flatten(), minlength=3).float()
    freq = freq / freq.sum()
    constant = {"loss": float(F.cross_entropy(freq.log().expand(yva.numel(), 3), yva.flatten())),
                "accuracy": float((yva == freq.argmax()).float().mean()), "what": "training label frequencies"}
    return xtr, ytr, xva, yva, constant


def pong_play(model, rounds: int, quick: bool) -> dict:
    """Closed loop: the behaviour the offline loss stands in for (greedy actions, no observation noise)."""
    from tnd.apps.pong.evaluate import play_rounds

    ev = play_rounds(model, rounds, env_kwargs={"max_catches": 3 if quick else 100, "obs_noise": 0.0})
    return {"play": {k: v for k, v in ev.items() if not isinstance(v, (list, dict))}}


def pong_study(cfg, results, log, work: Path, save=None):
    from tnd.apps.pong.models import build_model

    p = cfg["pong"]
    xtr, ytr, xva, yva, constant = pong_data(p, cfg["quick"], work)
    loss_of, acc_of = task_losses("pong")

    def build(name):
        if name == "tnd_all_input":
            return pong_all_input_tnd(xtr.shape[-1], cfg["budget"])
        return build_model(name, xtr.shape[-1], 3, cfg["budget"], window=p["window"])[0]

    def play(model) -> dict:
        return pong_play(model, p["play_rounds"], cfg["quick"])

    builders = {n: (lambda n=n: build(n)) for n in cfg["pong_variants"]}
    builders["lstm"] = lambda: build("lstm")
    run_models("pong", builders, xtr, ytr, xva, yva, loss_of, acc_of, p["window"] // 2, p["updates"], p["batch"],
               cfg, constant, results, log, save, after=play)


def pong_all_input_tnd(c: int, budget: int) -> TND:
    """Pong's default TND (small-world k=4, state_size 2, leaky, discrete) with every neuron an input neuron."""
    def make(n: int) -> TND:
        g = NeuronGraph.small_world(n, k=4, rewire_prob=0.1, seed=0, num_inputs=n)
        return TND(c, g, 3, state_size=2, dynamics="leaky", dynamics_kw={"tau_init": TAU_INIT_V0})

    def count(n: int) -> int:
        with torch.random.fork_rng(devices=[]):
            return count_parameters(make(n))

    return make(size_for_budget(count, budget, lo=8, hi=2048))


# ----------------------------------------------------------------------------- figures
def grid(plt, n: int, height: float):
    cols = min(n, 3)
    rows = (n + cols - 1) // cols
    return plt.subplots(rows, cols, figsize=(4.6 * cols, height * rows), squeeze=False)


def figures(results: dict, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = list(results)
    labels = [lab for lab in results if "_seed" not in lab]  # seed checks: in the loss figure only
    written = []
    colours = {"tnd": "#d62728", "lstm": "#1f77b4", "tnd_tau_span": "#2ca02c", "tnd_span_all_input": "#9467bd",
               "tnd_gated_span": "#ff7f0e", "tnd_all_input": "#8c564b", "tnd_io_overlap": "#7f7f7f"}
    for key, ylabel, fname in (("grad_state", "||dL/ds_t|| (mean over batch)", "diagnosis_gradients.png"),
                               ("memory", "||v . dy_T/dx_t|| (mean over batch)", "diagnosis_memory.png")):
        fig, axes = grid(plt, len(labels), 4.6)
        for ax, lab in zip(axes.flat, labels):
            for name, rec in results[lab]["models"].items():
                if name not in ("tnd", "lstm", "tnd_tau_span", "tnd_span_all_input", "tnd_gated_span", "tnd_all_input"):
                    continue
                col = colours.get(name, "k")
                for stage, ls in (("init", ":"), ("trained", "-")):
                    vals = np.maximum(np.asarray(rec[stage][key]), 1e-30)
                    ax.semilogy(np.arange(1, len(vals) + 1), vals, ls, color=col, lw=1.2,
                                label=f"{name} ({stage})" if lab == labels[0] else None)
            ax.set_title(lab)
            ax.set_xlabel("t (input step)")
            ax.set_ylim(bottom=1e-12)
        for row in axes:
            row[0].set_ylabel(ylabel)
        for ax in axes.flat[len(labels):]:
            ax.axis("off")
        fig.legend(loc="lower right", bbox_to_anchor=(0.98, 0.08), ncol=2, fontsize=8, frameon=False)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=90)
        plt.close(fig)
        written.append(fname)
    # time constants: default TND and the span variant, init vs trained, with the horizon
    fig, axes = grid(plt, len(labels), 3.8)
    for ax in axes.flat[len(labels):]:
        ax.axis("off")
    for ax, lab in zip(axes.flat, labels):
        t_all = results[lab]["T"]
        for name in ("tnd", "tnd_tau_span"):
            rec = results[lab]["models"].get(name)
            if rec is None:
                continue
            for stage, ls in (("init", ":"), ("trained", "-")):
                v = np.asarray(rec[stage]["tau"]["values"])
                ax.semilogx(v, np.linspace(0, 1, len(v)), ls, color=colours[name], label=f"{name} ({stage})")
        ax.axvline(t_all, color="k", lw=0.8)
        ax.text(t_all, 0.02, " T", fontsize=8)
        ax.set_title(lab)
        ax.set_xlabel("time constant tau (steps)")
    axes[0][0].set_ylabel("fraction of neurons with tau <= x")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "diagnosis_tau.png", dpi=90)
    plt.close(fig)
    written.append("diagnosis_tau.png")
    # test loss / constant predictor
    labels = everything
    fig, ax = plt.subplots(figsize=(1.6 * len(labels) + 4, 3.6))
    names = sorted({n for lab in labels for n in results[lab]["models"]}, key=lambda n: (n != "tnd", n != "lstm", n))
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        vals = [results[lab]["models"][name]["test_over_constant"] if name in results[lab]["models"] else np.nan
                for lab in labels]
        ax.bar(np.arange(len(labels)) + i * width, vals, width, color=colours.get(name, "k"), label=name)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2)
    ax.set_xticklabels(labels, rotation=15, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("test loss / constant predictor's (log)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(out / "diagnosis_loss.png", dpi=90)
    plt.close(fig)
    written.append("diagnosis_loss.png")
    return written


def compact(v):
    """Floats to 5 significant digits (the probes are not more precise than that) for a small JSON."""
    if isinstance(v, float):
        return float(f"{v:.5g}") if math.isfinite(v) else v
    if isinstance(v, dict):
        return {k: compact(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [compact(x) for x in v]
    return v


def tables(doc: dict) -> str:
    """The markdown tables of docs/DIAGNOSIS.md from a diagnosis.json document."""
    lines = []
    for label, entry in doc["results"].items():
        t_all, const = entry["T"], entry["constant"]
        lines += [f"### {label} (T = {t_all}, {entry['updates']} updates of batch {entry['batch']}; "
                  f"constant predictor: loss {const['loss']:.4f}"
                  + (f", accuracy {const['accuracy']:.3f}" if "accuracy" in const else "") + ")", "",
                  "| model | params | test loss | / constant | accuracy | grad at info step / max (init -> trained) "
                  "| memory at info step / max (init -> trained) | memory horizon, steps (init -> trained) "
                  "| tau median, max (init -> trained) | tau >= T/4 (trained) | targets \\|c\\|>0.95 (trained) "
                  "| mean \\|pre-act.\\| (trained) |",
                  "|---|---:|---:|---:|---:|---|---|---|---|---:|---:|---:|"]
        for name, r in entry["models"].items():
            i, t = r["init"], r["trained"]
            acc = r["test"].get("accuracy")
            if "tau" in t:
                tau = (f"{i['tau']['median']:.1f}, {i['tau']['max']:.0f} -> {t['tau']['median']:.1f}, "
                       f"{t['tau']['max']:.0f}")
                far = f"{np.mean(np.asarray(t['tau']['values']) >= t_all / 4):.2f}"
                sat = f"{t['saturation']['frac_target_gt_0.95']:.3f}"
                pre = f"{t['saturation'].get('mean_abs_preact', float('nan')):.2f}"
            else:
                tau, far = "-", "-"
                sat = f"{t['saturation']['frac_candidate_gt_0.95']:.3f} (cand.)"
                pre = f"forget gate {t['saturation']['mean_forget_gate']:.2f}"
            lines.append(
                f"| {name} | {r['params']} | {r['test']['loss']:.4f} | {r['test_over_constant']:.3f} | "
                f"{'-' if acc is None else f'{acc:.3f}'} | {i['grad_ratio_info']:.1e} -> {t['grad_ratio_info']:.1e} | "
                f"{i['memory_ratio_info']:.1e} -> {t['memory_ratio_info']:.1e} | "
                f"{i['memory_horizon_1e-3']} -> {t['memory_horizon_1e-3']} | {tau} | {far} | {sat} | {pre} |")
        if any("play" in r for r in entry["models"].values()):
            lines += ["", "| model | closed-loop catch rate | mean consecutive catches | median | rounds |",
                      "|---|---:|---:|---:|---:|"]
            for name, r in entry["models"].items():
                pl = r["play"]
                lines.append(f"| {name} | {pl['catch_rate']:.3f} | {pl['mean_catches']:.2f} | "
                             f"{pl['median_catches']:.0f} | {pl['rounds']} |")
        lines += ["", "| model | N | edges | inputs (fraction) | outputs | in/out overlap | hops input -> output neurons |",
                  "|---|---:|---:|---|---:|---:|---|"]
        for name, r in entry["models"].items():
            g = r["graph"]
            if g is None:
                continue
            hops = ", ".join(f"{k}: {v}" for k, v in g["hops_input_to_output"].items())
            lines.append(f"| {name} | {g['num_neurons']} | {g['num_edges']} | {g['num_inputs']} "
                         f"({g['input_fraction']:.2f}) | {g['num_outputs']} | {g['io_overlap']} | {hops} |")
        lines.append("")
    return "\n".join(lines)


def merge(paths: list[str], out: Path) -> dict:
    """One diagnosis.json (and the figures) from several runs' files: every model is seeded on its
    own (weights, batches, probe batch), so a label's numbers do not depend on what else ran."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    results: dict = {}
    for d in docs:
        results.update(d["results"])
    order = ["adding_100", "adding_100_seed1", "adding_100_seed2", "copy_100", "adding_1000", "copy_1000", "pong"]
    results = {k: results[k] for k in sorted(results, key=lambda k: order.index(k) if k in order else 99)}
    doc = {"settings": QUICK if docs[0]["quick"] else FULL, "quick": docs[0]["quick"],
           "seconds": sum(d["seconds"] for d in docs), "torch": docs[0]["torch"], "results": results}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "diagnosis.json", json.dumps(compact(doc), separators=(",", ":")))
    figures(results, out)
    return doc


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="tiny run in seconds (smoke test)")
    ap.add_argument("--out", default=None, help="folder for diagnosis.json and the figures "
                    "(default: docs/figures, or a temporary folder with --quick)")
    ap.add_argument("--only", default=None, help="comma-separated labels to run (e.g. pong,adding_100)")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="merge the results of earlier (--only) runs into --out and draw the figures; runs nothing")
    ap.add_argument("--table", default=None, metavar="JSON", help="print the markdown tables of a diagnosis.json")
    args = ap.parse_args(argv)
    if args.table:
        print(tables(json.loads(Path(args.table).read_text())))
        return {}
    if args.merge:
        return merge(args.merge, Path(args.out) if args.out else ROOT / "docs" / "figures")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = QUICK if args.quick else FULL
    out = Path(args.out) if args.out else (Path(tempfile.mkdtemp(prefix="diagnose-")) if args.quick
                                           else ROOT / "docs" / "figures")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "diagnosis.json"
    results: dict = {}
    if path.is_file() and not args.quick:  # resume: keep the labels an earlier run with these settings finished
        prev = json.loads(path.read_text())
        if prev.get("settings") == json.loads(json.dumps(cfg)) and not prev.get("quick"):
            results = prev["results"]
    t0 = time.time()

    def log(msg):
        print(msg, flush=True)

    def save(res):
        doc = {"settings": QUICK if args.quick else FULL, "quick": bool(args.quick), "seconds": time.time() - t0,
               "torch": torch.__version__, "results": res}
        atomic_write_text(path, json.dumps(compact(doc), separators=(",", ":")))
        return doc

    only = set(args.only.split(",")) if args.only else None
    if only:
        cfg = dict(cfg, memory=[m for m in cfg["memory"] if f"{m[0]}_{m[1]}" + (f"_seed{m[4]}" if len(m) > 4 else "") in only])
    memory_study(cfg, results, log, save)
    if (only is None or "pong" in only) and "pong" not in results:
        with tempfile.TemporaryDirectory(prefix="diagnose-pong-") as work:
            pong_study(cfg, results, log, Path(work), save)
    doc = save(results)
    written = figures(results, out)
    log(f"wrote {path} and {', '.join(written)} in {time.time() - t0:.0f}s")
    return doc


if __name__ == "__main__":
    main(sys.argv[1:])
    sys.exit(0)
