"""Recurrent baselines (Vanilla RNN, Sparse RNN, LSTM) and the shared baseline interface.

Every baseline is an :class:`torch.nn.Module` built as
``Model(input_size, output_size, hidden_size, **kw)`` whose ``forward(x, hx=None)`` returns
``(y, h)``:

* ``x`` is ``(B, T, C)`` (batched) or ``(T, C)`` (unbatched), floating point, finite, with
  ``C == input_size`` and the same dtype as the model's parameters;
* ``y`` is ``(B, T, output_size)`` (or ``(T, output_size)``): the readout (logits) of every step;
* ``h`` is the state after the last step. Passing it back as ``hx`` continues the sequence
  exactly, so running a sequence in chunks (or one step at a time) gives the same ``y`` as
  running it whole.

State convention (all baselines): a state is a tensor or a tuple of tensors, and every tensor
has the batch dimension **first**. For unbatched input the batch dimension is dropped from every
state tensor (and expected to be absent from ``hx``). The shapes per model are documented on
each class.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple, Union

import torch
from torch import nn

from tnd.checks import check_positive_int, check_real

State = Union[torch.Tensor, Tuple[Any, ...]]

__all__ = [
    "BaselineModel",
    "VanillaRNN",
    "SparseRNN",
    "LSTM",
    "map_state",
    "detach_state",
]


def map_state(state: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor of a (possibly nested tuple/list) state."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return fn(state)
    if isinstance(state, (tuple, list)):
        return type(state)(map_state(s, fn) for s in state)
    raise TypeError(f"hx: expected a tensor or a tuple of tensors, got {type(state).__name__}")


def detach_state(state: Any) -> Any:
    """Detach every tensor of a state (for truncated back-propagation through time)."""
    return map_state(state, lambda t: t.detach())


def _state_leaves(state: Any) -> list:
    out: list = []
    map_state(state, lambda t: out.append(t) or t)
    return out


class BaselineModel(nn.Module):
    """Common input validation and unbatched handling for every baseline.

    Subclasses implement ``_forward_batched(x, hx, **kw)`` with ``x`` of shape ``(B, T, C)`` and
    ``hx`` either ``None`` or a batch-first state; they return ``(y, h)`` batched.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int) -> None:
        super().__init__()
        self.input_size = check_positive_int("input_size", input_size)
        self.output_size = check_positive_int("output_size", output_size)
        self.hidden_size = check_positive_int("hidden_size", hidden_size)

    # -- validation -------------------------------------------------------------------------
    def _param_dtype(self) -> Optional[torch.dtype]:
        for p in self.parameters():
            if p.is_floating_point():
                return p.dtype
        return None

    def _check_input(self, x: Any) -> Tuple[torch.Tensor, bool]:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x: expected a torch.Tensor of shape (B, T, {self.input_size}) "
                            f"or (T, {self.input_size}), got {type(x).__name__}")
        if x.dim() not in (2, 3):
            raise ValueError(f"x: expected rank 2 (T, C) or rank 3 (B, T, C), "
                             f"got rank {x.dim()} with shape {tuple(x.shape)}")
        if x.shape[-1] != self.input_size:
            raise ValueError(f"x: expected last dimension (features) == input_size = "
                             f"{self.input_size}, got {x.shape[-1]} (shape {tuple(x.shape)})")
        if not x.is_floating_point():
            raise TypeError(f"x: expected a floating-point tensor, got dtype {x.dtype}")
        pdt = self._param_dtype()
        if pdt is not None and x.dtype != pdt:
            raise TypeError(f"x: expected dtype {pdt} (the model's parameter dtype), got "
                            f"{x.dtype}; cast x or convert the model (e.g. model.to({x.dtype}))")
        if x.shape[-2] == 0:
            raise ValueError(f"x: expected at least one time step, got shape {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("x: expected only finite values, got NaN or inf")
        unbatched = x.dim() == 2
        return (x.unsqueeze(0) if unbatched else x), unbatched

    def _check_state(self, hx: Any, batch_size: int) -> None:
        for t in _state_leaves(hx):
            if t.dim() == 0 or t.shape[0] != batch_size:
                raise ValueError(f"hx: expected every state tensor to have batch size "
                                 f"{batch_size} in dimension 0, got shape {tuple(t.shape)}")

    # -- interface --------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, hx: Optional[State] = None, **kw: Any):
        """Run the model on ``x`` ((B, T, C) or (T, C)); return ``(y, h)`` (see module docs)."""
        x, unbatched = self._check_input(x)
        if hx is not None:
            if unbatched:
                hx = map_state(hx, lambda t: t.unsqueeze(0))
            self._check_state(hx, x.shape[0])
        y, h = self._forward_batched(x, hx, **kw)
        if unbatched:
            y = y.squeeze(0)
            h = map_state(h, lambda t: t.squeeze(0))
        return y, h

    def _forward_batched(self, x: torch.Tensor, hx: Optional[State], **kw: Any):
        raise NotImplementedError

    def extra_repr(self) -> str:
        return (f"input_size={self.input_size}, output_size={self.output_size}, "
                f"hidden_size={self.hidden_size}")


class VanillaRNN(BaselineModel):
    """Elman RNN (``nn.RNN``, tanh) with a linear readout.

    State ``h``: ``(B, num_layers, hidden_size)`` (batch first; note this is the transpose of
    ``nn.RNN``'s own ``(num_layers, B, H)``).
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 num_layers: int = 1, nonlinearity: str = "tanh", dropout: float = 0.0) -> None:
        super().__init__(input_size, output_size, hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.rnn = nn.RNN(input_size, hidden_size, num_layers=num_layers,
                          nonlinearity=nonlinearity, batch_first=True, dropout=dropout)
        self.readout = nn.Linear(hidden_size, output_size)

    def _forward_batched(self, x, hx):
        h0 = None if hx is None else hx.transpose(0, 1).contiguous()
        out, hn = self.rnn(x, h0)
        return self.readout(out), hn.transpose(0, 1)


class LSTM(BaselineModel):
    """``nn.LSTM`` with a linear readout.

    ``chrono_init=T_max`` (default ``None``: PyTorch's init) sets the gate biases by the chrono
    initialisation of Tallec & Ollivier (2018, "Can recurrent neural networks warp time?"):
    forget bias ``b_f = log(u)``, ``u ~ U(1, T_max - 1)`` per unit, input bias ``b_i = -b_f``
    (in every layer; the hidden-to-hidden biases of those gates are zeroed, since ``nn.LSTM`` adds
    both). A unit then starts as a leaky integrator with a time constant of about ``u`` steps,
    spread up to ``T_max``: the LSTM's counterpart of a log-spread time-constant init. PyTorch's
    default draws every bias from ``U(-1/sqrt(H), 1/sqrt(H))``, so the forget gate starts near
    0.5 and a cell state halves every step.

    State ``(h, c)``: each ``(B, num_layers, hidden_size)`` (batch first).
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 num_layers: int = 1, dropout: float = 0.0, chrono_init: float | None = None) -> None:
        super().__init__(input_size, output_size, hidden_size)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.lstm = nn.LSTM(input_size, hidden_size, num_layers=num_layers, batch_first=True,
                            dropout=dropout)
        self.readout = nn.Linear(hidden_size, output_size)
        self.chrono_init = None if chrono_init is None else check_real("chrono_init", chrono_init, 2.0,
                                                                       exclusive_min=True)
        if self.chrono_init is not None:
            self._chrono(self.chrono_init)

    @torch.no_grad()
    def _chrono(self, t_max: float) -> None:
        h = self.hidden_size
        for k in range(self.num_layers):  # nn.LSTM's gate order: input, forget, cell, output
            b_ih, b_hh = getattr(self.lstm, f"bias_ih_l{k}"), getattr(self.lstm, f"bias_hh_l{k}")
            b_f = torch.empty(h, dtype=b_ih.dtype).uniform_(1.0, t_max - 1.0).log_()
            b_ih[h:2 * h] = b_f
            b_ih[:h] = -b_f
            b_hh[:2 * h] = 0.0

    def _forward_batched(self, x, hx):
        if hx is not None:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise TypeError("hx: expected a tuple (h, c) for LSTM")
            hx = tuple(t.transpose(0, 1).contiguous() for t in hx)
        out, (hn, cn) = self.lstm(x, hx)
        return self.readout(out), (hn.transpose(0, 1), cn.transpose(0, 1))


class SparseRNN(BaselineModel):
    """Elman RNN whose recurrent matrix is masked by a fixed random sparsity mask.

    ``h_t = tanh(W_in x_t + b + (W_hh * M) h_{t-1})`` with ``M`` a fixed 0/1 mask (buffer
    ``mask``) where each entry is 1 with probability ``density``, drawn from a private generator
    seeded with ``mask_seed`` (so the mask does not depend on, nor disturb, the global RNG).
    The mask is applied in ``forward`` so masked entries of the *effective* weight are exactly
    zero at all times; their gradient on ``weight_hh`` is exactly zero too, and at construction
    the raw parameter is zeroed there as well (so optimisers without decoupled weight decay keep
    it zero). ``effective_weight_hh()`` returns ``weight_hh * mask``.

    ``edge_list``: how the recurrent product is computed. ``False``: a dense ``(H, H)`` matrix
    product with the masked weight (cost ``H**2`` per row and step); ``True``: over the mask's
    nonzero entries only (gather the sending units, scale, ``index_add`` into the receivers; cost
    proportional to the ``density * H**2`` entries); ``None`` (default): the edge list from
    ``hidden_size >= 320`` with ``density <= 1/8``, where it measured faster for a training step
    on one CPU thread (``benchmarks/sparse_rnn_paths.py``: 3.9x at the 20,000-parameter Pong size,
    H = 1451; even at H = 289, slower below). Both give the same function up to float rounding (tests compare
    outputs and gradients).

    State ``h``: ``(B, hidden_size)``.
    """

    def __init__(self, input_size: int, output_size: int, hidden_size: int, *,
                 density: float = 0.1, mask_seed: int = 0, rescale: bool = True,
                 edge_list: bool | None = None) -> None:
        super().__init__(input_size, output_size, hidden_size)
        if not (isinstance(density, (int, float)) and 0.0 < float(density) <= 1.0):
            raise ValueError(f"density must be in (0, 1], got {density!r}")
        if edge_list is not None and not isinstance(edge_list, bool):
            raise TypeError(f"edge_list must be True, False or None, got {edge_list!r}")
        self.density = float(density)
        self.edge_list = (hidden_size >= 320 and self.density <= 0.125) if edge_list is None else edge_list
        self.mask_seed = int(mask_seed)
        gen = torch.Generator().manual_seed(self.mask_seed)
        mask = (torch.rand(hidden_size, hidden_size, generator=gen) < self.density)
        self.register_buffer("mask", mask.to(torch.get_default_dtype()))
        self.input_proj = nn.Linear(input_size, hidden_size)
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        # nn.RNN's init, optionally rescaled by 1/sqrt(density) so the recurrent input variance
        # matches a dense RNN of the same width.
        bound = 1.0 / math.sqrt(hidden_size)
        if rescale:
            bound /= math.sqrt(self.density)
        with torch.no_grad():
            self.weight_hh.uniform_(-bound, bound)
            self.weight_hh.mul_(self.mask)
        self.readout = nn.Linear(hidden_size, output_size)
        # (receiver, sender) of every kept entry, for the edge-list product; derived from the mask
        self.register_buffer("edges", mask.nonzero().t().contiguous(), persistent=False)
        self.register_load_state_dict_post_hook(lambda module, keys: module._refresh_edges())

    def _refresh_edges(self) -> None:
        self.edges = (self.mask != 0).nonzero().t().contiguous()

    def effective_weight_hh(self) -> torch.Tensor:
        return self.weight_hh * self.mask

    def num_effective_parameters(self) -> int:
        """Trainable parameters, counting only unmasked recurrent weights."""
        total = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return total - self.weight_hh.numel() + int(self.mask.sum().item())

    def _forward_batched(self, x, hx):
        B = x.shape[0]
        x_proj = self.input_proj(x)  # (B, T, H): input projection for all steps at once
        h = x.new_zeros(B, self.hidden_size) if hx is None else hx
        if self.edge_list:
            return self._forward_edges(x_proj, h)
        w = self.effective_weight_hh().t()
        outs = []
        for xt in x_proj.unbind(1):
            h = torch.tanh(torch.addmm(xt, h, w))
            outs.append(h)
        hs = torch.stack(outs, dim=1)
        return self.readout(hs), h

    def _forward_edges(self, x_proj, h):
        """The same recurrence over the kept entries: units along dim 0, so a gather and an
        ``index_add`` move whole contiguous rows of the batch."""
        dst, src = self.edges
        w = self.weight_hh[dst, src].unsqueeze(1)  # (E, 1): only kept entries get gradients
        ht = h.t()
        outs = []
        for xt in x_proj.unbind(1):
            ht = torch.tanh(xt.t().index_add(0, dst, ht.index_select(0, src) * w))
            outs.append(ht)
        hs = torch.stack(outs, dim=0).permute(2, 0, 1)  # (B, T, H)
        return self.readout(hs), ht.t()

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", density={self.density}, mask_seed={self.mask_seed}, "
                f"edge_list={self.edge_list}")
