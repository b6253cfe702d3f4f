"""One time step per call, for control loops: :meth:`tnd.TND.step` runs through a :class:`Stepper`.

``TND.forward`` on a one-step sequence pays for checks, layout handling and the general fused
loop's set-up on every call (about 150 us at N = 64, B = 1), which dominates a control loop.
A :class:`Stepper` snapshots everything the step needs (input projection, the coupling matrix
or its CSR, ``exp(-1/tau)``, bias, readout) once, re-derives it only when a parameter or buffer
changed (a cheap check of their version counters and storages), and then does input projection,
aggregation, update and readout in **one** C call (``tnd_step`` in ``csrc/tnd_step.inc.cpp``):

    pre = bias + (W_in x + b_in at the input units) + s @ W,   c = act(pre)
    s'  = c + (s - c) * exp(-dt / tau),                         y = W_out s'[output units] + b_out

which is the model's discrete update and readout for one step (``model(x[:, None], h)`` up to
rounding); with ``propagation_steps = K`` the update is K rounds of ``dt / K`` (the projected
input held), still in the one call, and y reads the state after the last. The gated family has
its own one-call kernel (``tnd_gated_step`` in ``csrc/tnd_gated_step.inc.cpp``: the same
structure, with the input projection folded into each input neuron's gate and candidate shares
at refresh). The lean path applies to the fused leaky and gated families (the same
configurations as their fast paths) on CPU with the C kernel, with autograd off or nothing
requiring a gradient; everything else (MLP, attention, other solvers, grad mode) takes a
general path through the model's own time loop (``TND.run_loop``), with the same results, only
slower.

Checks stay cheap: x's type, rank, width and dtype in Python; finiteness of x, h and dt inside
the C call (bit tests, no extra torch call); a failing check raises the same errors as
``forward`` (naming the argument).
"""

from __future__ import annotations

import ctypes
import weakref

import torch

from .. import checks
from .. import fast as _fast
from . import abi, cbuild
from ._util import index_data, suffix, tensor_problem
from .gated import GATED
from .loop import LEAKY


#: one Stepper per model (kept off the module so that deepcopy/pickling of models is unaffected)
STEPPERS: weakref.WeakKeyDictionary[torch.nn.Module, Stepper] = weakref.WeakKeyDictionary()


#: bumped whenever any module anywhere registers (or replaces) a parameter, buffer or submodule,
#: so a replaced parameter object invalidates the snapshots without walking the model every call
_REGISTRATIONS = [0]
_HOOKS: list = []


def _bump(*_args) -> None:
    _REGISTRATIONS[0] += 1


def _install_hooks() -> None:
    if not _HOOKS:
        from torch.nn.modules import module as _module

        _HOOKS.extend(reg(_bump) for reg in (_module.register_module_parameter_registration_hook,
                                             _module.register_module_buffer_registration_hook,
                                             _module.register_module_module_registration_hook))


#: mirrors TND_STEP_FIELDS in csrc/tnd_step.inc.cpp: the snapshot's fields (set by a refresh), then
#: the call's own (B .. y, set per call; a Stepper is not meant to be called from two threads at once)
StepArgs = abi.struct("step", """
    i:M i:C i:n_in i:n_out i:O i:sparse i:act i:readout l:in_idx l:out_idx f:Win f:bin f:W l:rowptr n:src f:w
    f:r f:decay f:bias f:Wout f:bout i:rounds d:s_bound i:B f:x f:s f:dt i:dt_stride d:dt_scalar i:has_dt f:s_out f:y""")


#: mirrors TND_GSTEP_FIELDS in csrc/tnd_gated_step.inc.cpp (the gated family's step)
GatedStepArgs = abi.struct("gstep", """
    i:N i:d i:C i:n_in i:n_out i:O i:sparse i:readout l:in_idx l:out_idx f:WinG f:binG f:WinC f:binC f:W l:rowptr
    n:src f:w f:A f:G f:V f:beta f:cb d:rmin d:rspan f:Wout f:bout i:rounds d:s_bound i:B f:x f:s f:dt i:dt_stride
    d:dt_scalar i:has_dt f:s_out f:y""")


def _ptr(t: torch.Tensor | None) -> int | None:
    """A kernel field's address (None: the kernel reads nothing there)."""
    return None if t is None else t.data_ptr()


def _tensors(model) -> list:
    """Every tensor the step depends on (parameters and buffers), for the change check."""
    cell = model.cell
    mods = (cell.input_proj, cell.interaction, cell.dynamics, model.readout)
    ts = [t for m in mods for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]
    return ts + [cell.input_neurons, model.output_neurons]


class Stepper:
    """``stepper(x, h=None, dt=None) -> (y, h)``: one step of ``model`` (see :meth:`tnd.TND.step`)."""

    def __init__(self, model) -> None:
        self.model = model
        self._key = None
        self._lean = False

    # ------------------------------------------------------------------ snapshot
    def _state_key(self) -> tuple:
        """What the snapshot depends on: every watched tensor's version and storage (an in-place
        update, an optimiser step, ``load_state_dict``, ``.to()``), and the switches."""
        m = self.model
        dyn = m.cell.dynamics
        return (_REGISTRATIONS[0], tuple((t._version, t.data_ptr()) for t in self._watch), m.use_fast_path,
                _fast.BACKEND, dyn.tau_min, dyn.tau_max, type(dyn), type(m.cell.interaction), m.cell.propagation_steps)

    def _refresh(self) -> None:
        """Re-derive the snapshot (parameters changed, or first call)."""
        m = self.model
        cell = m.cell
        _install_hooks()
        self._watch = _tensors(m)
        self._key = self._state_key()
        p = cell.input_proj.weight
        self.dtype = p.dtype
        self.needs_grad = any(t.requires_grad for t in self._watch)
        lib = cbuild.load()
        fam = _fast.family(m)
        self._lean = bool(m.use_fast_path and fam in (LEAKY, GATED) and lib is not None and _fast.BACKEND != "torch"
                          and p.device.type == "cpu"
                          and p.dtype in (torch.float32, torch.float64)
                          and all(t.dtype == p.dtype and t.device == p.device for t in self._watch
                                  if t.is_floating_point()))
        if not self._lean:
            self._keep = None
            return
        n, d = cell.num_neurons, cell.state_size
        M = n * d
        inter, dyn = cell.interaction, cell.dynamics
        idx = index_data(m, d, p.device)
        sparse = _fast.use_edge_list(inter, M, int(idx["src"].numel()), p.device)  # as the fused loops
        self.M, self.N, self.d, self.C = M, n, d, m.input_size
        self.O = m.output_size
        if fam is GATED:
            self._refresh_gated(lib, idx, sparse)
            return
        self._fn = abi.entry(lib, f"tnd_step_{suffix(p.dtype)}", StepArgs, restype=ctypes.c_int)
        with torch.no_grad():
            W, r, bias = (t.detach().contiguous() for t in LEAKY.prepare(inter, dyn, idx, n, d, sparse))
            rounds = cell.propagation_steps
            # each round's decay without dt: exp(-r / K), as the reference's h = 1 / K
            decay = (torch.exp(-r) if rounds == 1 else torch.exp(-r * (1.0 / rounds))).contiguous()
            win = cell.input_proj.weight.detach().contiguous()
            bin_ = cell.input_proj.bias.detach().contiguous()
            shared, keep = self._shared_fields(idx, sparse, W)
        self._keep = (r, bias, decay, win, bin_, *keep)
        self._cfg = StepArgs(M=M, C=m.input_size, n_in=win.shape[0], act=0 if dyn.activation == "tanh" else 1,
                             Win=_ptr(win), bin=_ptr(bin_), r=_ptr(r), decay=_ptr(decay), bias=_ptr(bias), **shared)
        self._cfg_ref = ctypes.byref(self._cfg)

    def _shared_fields(self, idx: dict, sparse: bool, W: torch.Tensor) -> tuple[dict, tuple]:
        """The fields both step kernels take alike (the coupling, dense or CSR; the readout; the
        rounds; the state bound) and the tensors they point into, which the snapshot must keep."""
        m = self.model
        cell = m.cell
        bound = cell.state_bound()  # an h outside it is refused by the kernel (flag 8)
        identity = m.readout_kind == "identity"
        wout = None if identity else m.readout.weight.detach().contiguous()
        bout = None if identity else m.readout.bias.detach().contiguous()
        fields = dict(n_out=idx["out_idx"].numel(), O=m.output_size, sparse=int(sparse), readout=0 if identity else 1,
                      in_idx=_ptr(idx["in_idx"]), out_idx=_ptr(idx["out_idx"]), W=None if sparse else _ptr(W),
                      rowptr=_ptr(idx["rowptr"]), src=_ptr(idx["src32"]), w=_ptr(W) if sparse else None,
                      Wout=_ptr(wout), bout=_ptr(bout), rounds=cell.propagation_steps,
                      s_bound=0.0 if bound is None else bound * (1 + checks.STATE_BOUND_RTOL))
        return fields, (W, wout, bout, idx["in_idx"], idx["out_idx"], idx["rowptr"], idx["src32"])

    def _refresh_gated(self, lib, idx: dict, sparse: bool) -> None:
        """The gated family's snapshot: the coupling and per-neuron matrices as its fused loop
        takes them, and the input projection folded into each input neuron's gate and candidate
        shares (``gate_x``, ``cand_x``), so the kernel forms both with two small products."""
        m = self.model
        cell = m.cell
        p = cell.input_proj.weight
        self._fn = abi.entry(lib, f"tnd_gated_step_{suffix(p.dtype)}", GatedStepArgs, restype=ctypes.c_int)
        n, d, C = self.N, self.d, self.C
        dyn = cell.dynamics
        with torch.no_grad():
            W, A, G, V, beta, cb = (t.detach().contiguous() for t in GATED.prepare(cell.interaction, dyn, idx, n, d, sparse))
            n_in = cell.input_neurons.numel()
            rows = (lambda q: q[cell.input_neurons]) if dyn.per_neuron else (lambda q: q.expand(n_in, d, d))
            win = cell.input_proj.weight.detach().view(n_in, d, C)
            bin_ = cell.input_proj.bias.detach().view(n_in, d)
            # xg[j, k] = sum_l (Win x + bin)[j, l] gate_x[j, l, k]: the same sum as the loop's einsum
            fold = lambda q: (torch.einsum("jlc,jlk->jkc", win, rows(q)).reshape(n_in * d, C).contiguous(),
                              torch.einsum("jl,jlk->jk", bin_, rows(q)).reshape(n_in * d).contiguous())
            (wg, bg), (wc, bc) = fold(dyn.gate_x.detach()), fold(dyn.cand_x.detach())
            shared, keep = self._shared_fields(idx, sparse, W)
        self._keep = (A, G, V, beta, cb, wg, bg, wc, bc, *keep)
        self._cfg = GatedStepArgs(
            N=n, d=d, C=C, n_in=n_in * d, WinG=_ptr(wg), binG=_ptr(bg), WinC=_ptr(wc), binC=_ptr(bc), A=_ptr(A),
            G=_ptr(G), V=_ptr(V), beta=_ptr(beta), cb=_ptr(cb), rmin=dyn.rate_min, rspan=dyn.rate_max - dyn.rate_min,
            **shared)
        self._cfg_ref = ctypes.byref(self._cfg)

    # ---------------------------------------------------------------------- call
    def __call__(self, x, h=None, dt=None):
        if self._key is None or self._key != self._state_key():
            self._refresh()
        if (not self._lean or type(x) is not torch.Tensor or x.dim() not in (1, 2)
                or (torch.is_grad_enabled() and (self.needs_grad or x.requires_grad
                                                 or (h is not None and h.requires_grad)))):
            return self.general(x, h, dt)
        unbatched = x.dim() == 1
        B = 1 if unbatched else x.shape[0]
        x = x.contiguous()
        # what the C call reads must be a contiguous CPU tensor of the right dtype and size; anything
        # else takes the general path, whose checks name the problem (or which converts it)
        if tensor_problem("x", x, self.dtype, (self.C,) if unbatched else (B, self.C)):
            return self.general(x, h, dt)
        N, d, M = self.N, self.d, self.M
        if h is not None:
            if type(h) is not torch.Tensor or h.numel() != B * M or not (
                    h.shape == ((N,) if unbatched else (B, N)) and d == 1
                    or h.shape == ((N, d) if unbatched else (B, N, d))):
                return self.general(x, h, dt)
            h = h.contiguous()
            if tensor_problem("h", h, self.dtype, h.shape):
                return self.general(x, h, dt)
        dt_ptr, dt_stride, dt_val, has_dt = None, 0, 1.0, 0
        if dt is not None:
            has_dt = 1
            if isinstance(dt, (int, float)) and not isinstance(dt, bool):
                dt_val = float(dt)
            else:
                if type(dt) is not torch.Tensor or dt.numel() not in (1, B) or dt.dim() > 2 or (
                        dt.numel() != 1 and dt.shape[0] != B):
                    return self.general(x, h, dt)
                dt = dt.contiguous()
                if tensor_problem("dt", dt, self.dtype, dt.shape):
                    return self.general(x, h, dt)
                dt_ptr, dt_stride = dt.data_ptr(), 0 if dt.numel() == 1 else 1
        s_out = x.new_empty((N,) if unbatched else (B, N)) if d == 1 else x.new_empty((N, d) if unbatched else (B, N, d))
        y = x.new_empty((self.O,) if unbatched else (B, self.O))
        c = self._cfg
        c.B, c.x, c.s, c.dt, c.dt_stride, c.dt_scalar, c.has_dt = (B, x.data_ptr(), None if h is None else h.data_ptr(),
                                                                   dt_ptr, dt_stride, dt_val, has_dt)
        c.s_out, c.y = s_out.data_ptr(), y.data_ptr()
        rc = self._fn(self._cfg_ref)
        if rc:
            self._raise(rc, x, h, dt)
        return y, s_out

    def _raise(self, rc: int, x, h, dt) -> None:
        if rc & 1:
            checks.check_finite("x", x)
        if rc & 2:
            checks.check_finite("h", h)
        if rc & 8:  # the same bound and message as forward's hx
            self.model.cell.check_state("h", h)
        checks.as_times("dt", dt, x.dtype, x.device)
        raise ValueError("dt must be finite and > 0")  # pragma: no cover - as_times raised already

    # -------------------------------------------------------------- general path
    def general(self, x, h=None, dt=None):
        """Any configuration, autograd included: the model's own time loop on a one-step sequence."""
        m = self.model
        device = m.cell.input_proj.weight.device
        for name, t in (("x", x), ("h", h), ("dt", dt)):
            # (a dt tensor elsewhere is copied over by as_times, except from 'meta', which has no data)
            if isinstance(t, torch.Tensor) and t.device != device and (name != "dt" or t.device.type == "meta"):
                raise ValueError(f"{name} is on device {t.device} but the model's parameters are on {device}; "
                                 f"move it (e.g. {name}.to({str(device)!r}))")
        checks.check_float_tensor("x", x, (1, 2), m.input_size)
        checks.check_param_dtype("x", x, m)
        unbatched = x.dim() == 1
        xs = x.reshape(1, 1, -1) if unbatched else x.unsqueeze(0)  # (T=1, B, C)
        B = xs.shape[1]
        dts = None
        if dt is not None:
            t = checks.as_times("dt", dt, x.dtype, x.device)
            if t.dim() > 0 and (t.numel() != B or t.dim() > 2 or t.shape[0] != B):
                raise ValueError(f"dt must be a scalar or of shape ({B},) (one per sequence), got {tuple(t.shape)}")
            dts = t.reshape(-1).expand(B).reshape(1, B, 1, 1)
        if h is not None:
            checks.check_float_tensor("h", h, (1, 2, 3))
            n, d = m.num_neurons, m.cell.state_size
            lead = () if unbatched else (B,)
            allowed = [(*lead, n, d)] + ([(*lead, n)] if d == 1 else [])
            if tuple(h.shape) not in allowed:
                raise ValueError(f"h must have shape {' or '.join(map(str, allowed))}, got {tuple(h.shape)}")
        s = m.start_state(h, B, unbatched, x, name="h")
        outs, s = m.run_loop(xs, s, dts)
        y = m.readout(outs[-1].flatten(-2))  # (B, O)
        if unbatched:
            y, s = y[0], s[0]
        if m.cell.state_size == 1:
            s = s.squeeze(-1)
        return y, s
