"""Recurrent layers from scratch: multi-layer, bidirectional RNN, LSTM and GRU over sequences.

Introduced in lesson 5.1 (``m05-l01``). A layer runs the cells of
:mod:`neuralarch.sequence.recurrent_cells` along the time axis, one direction at a time, and
stacks layers so that layer ``l + 1`` reads the outputs of layer ``l``. It takes and returns
what ``nn.RNN``, ``nn.LSTM`` and ``nn.GRU`` take and return, with the same shapes: input
(T, B, I) or, with ``batch_first``, (B, T, I), or a ``PackedSequence`` of padded sequences of
different lengths; output (T, B, D*H) and final states (L*D, B, H). The parameters have torch's
names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so ``load_state_dict`` moves weights
between ours and torch's; :func:`copy_rnn_weights` does it after checking that the two agree.
:func:`gradient_through_time` measures how far back a gradient reaches at initialisation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from neuralarch.sequence.recurrent_cells import (
    GATES,
    NONLINEARITIES,
    check_sizes,
    gru_cell,
    init_uniform_,
    lstm_cell,
    rnn_cell,
)

State = tuple[torch.Tensor, ...]  # (h,) for RNN and GRU, (h, c) for the LSTM


class _RecurrentLayer(nn.Module):
    """What RNN, LSTM and GRU share: torch-named weights, the time loop, layers, directions."""

    cell_type = "RNN"  # a key of GATES
    n_states = 1  # tensors in the recurrent state: h, or h and c

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        if not isinstance(num_layers, int) or isinstance(num_layers, bool) or num_layers < 1:
            raise ValueError(f"num_layers must be a positive int, got {num_layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, dropout
        self.bidirectional = bidirectional
        self.num_directions = 2 if bidirectional else 1
        rows = GATES[self.cell_type] * hidden_size
        for layer in range(num_layers):
            width = input_size if layer == 0 else hidden_size * self.num_directions
            for suffix in self._suffixes():
                self.register_parameter(f"weight_ih_l{layer}{suffix}",
                                        nn.Parameter(torch.empty(rows, width)))  # (G*H, I_l)
                self.register_parameter(f"weight_hh_l{layer}{suffix}",
                                        nn.Parameter(torch.empty(rows, hidden_size)))
                if bias:
                    self.register_parameter(f"bias_ih_l{layer}{suffix}",
                                            nn.Parameter(torch.empty(rows)))  # (G*H,)
                    self.register_parameter(f"bias_hh_l{layer}{suffix}",
                                            nn.Parameter(torch.empty(rows)))
        init_uniform_(list(self.parameters()), hidden_size)

    @property
    def mode(self) -> str:
        """Torch's name for the cell type: ``RNN_TANH``, ``RNN_RELU``, ``LSTM`` or ``GRU``."""
        return self.cell_type

    def _suffixes(self) -> tuple[str, ...]:
        return ("", "_reverse")[:self.num_directions]

    def layer_weights(self, layer: int, suffix: str = "") -> tuple[torch.Tensor | None, ...]:
        """The (weight_ih, weight_hh, bias_ih, bias_hh) of one layer and direction."""
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        return tuple(getattr(self, f"{name}_l{layer}{suffix}", None) for name in names)

    def step(self, x: torch.Tensor, state: State, weights: tuple) -> State:
        """One time step of the cell: input x (B, I_l), state -> new state."""
        raise NotImplementedError

    def run_direction(self, x: torch.Tensor, state: State, weights: tuple,
                      lengths: torch.Tensor | None, reverse: bool) -> tuple[torch.Tensor, State]:
        """Run one layer in one direction over x (T, B, I_l); return outputs (T, B, H), state.

        With ``lengths`` (B,), sequence b only has steps ``t < lengths[b]``: its state is
        frozen after its last real step (so the final state is that step's) and, read in
        reverse, stays at the initial state until its last real step (where it starts).
        """
        outputs: list[torch.Tensor] = [x.new_empty(0)] * x.shape[0]
        for t in reversed(range(x.shape[0])) if reverse else range(x.shape[0]):
            new = self.step(x[t], state, weights)
            if lengths is not None:
                real = (t < lengths).unsqueeze(1)  # (B, 1): is step t part of sequence b?
                new = tuple(torch.where(real, n, s) for n, s in zip(new, state, strict=True))
                outputs[t] = torch.where(real, new[0], 0.0)  # padding outputs are zeros
            else:
                outputs[t] = new[0]
            state = new
        return torch.stack(outputs), state  # (T, B, H)

    def forward(self, input: torch.Tensor | PackedSequence,
                hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor | PackedSequence, torch.Tensor | State]:
        """Run the whole stack; return ``(output, h_n)`` (LSTM: ``(output, (h_n, c_n))``)."""
        lengths = None
        if isinstance(input, PackedSequence):  # batch_first does not apply to packed input
            x, lengths = pad_packed_sequence(input)  # (T, B, I) in the caller's order, (B,)
            lengths = lengths.to(x.device)
        else:
            x = input.transpose(0, 1) if self.batch_first else input  # (T, B, I)
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            layout = "(B, T, I)" if self.batch_first else "(T, B, I)"
            raise ValueError(f"{type(self).__name__} expects input {layout} with I = "
                             f"{self.input_size}, got {tuple(input_shape(input))}")
        states = self._initial_states(hx, x)
        finals: list[State] = []
        for layer in range(self.num_layers):
            outputs = []
            for d, suffix in enumerate(self._suffixes()):
                k = layer * self.num_directions + d  # row of h_n: layers outer, directions inner
                out, final = self.run_direction(x, tuple(s[k] for s in states),
                                                self.layer_weights(layer, suffix), lengths,
                                                reverse=d == 1)
                outputs.append(out)
                finals.append(final)
            x = torch.cat(outputs, dim=-1)  # (T, B, D*H): both directions side by side
            if layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, self.training)  # between layers, as in torch
        h_n = tuple(torch.stack(parts) for parts in zip(*finals, strict=True))  # each (L*D, B, H)
        if isinstance(input, PackedSequence):
            output = repack(x, input)
        else:
            output = x.transpose(0, 1) if self.batch_first else x
        return output, (h_n if self.n_states > 1 else h_n[0])

    def _initial_states(self, hx: torch.Tensor | tuple | None, x: torch.Tensor) -> State:
        """The initial state as a tuple of (L*D, B, H) tensors (zeros when hx is None)."""
        shape = (self.num_layers * self.num_directions, x.shape[1], self.hidden_size)
        if hx is None:
            return (x.new_zeros(shape),) * self.n_states
        states = tuple(hx) if self.n_states > 1 else (hx,)
        if len(states) != self.n_states or any(s.shape != shape for s in states):
            got = [tuple(s.shape) for s in states]
            raise ValueError(f"{type(self).__name__} expects an initial state of "
                             f"{self.n_states} tensor(s) of shape (layers * directions, B, H) "
                             f"= {shape}, got {got}")
        return states

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"bias={self.bias}, batch_first={self.batch_first}, dropout={self.dropout}, "
                f"bidirectional={self.bidirectional}")


def input_shape(input: torch.Tensor | PackedSequence) -> torch.Size:
    """Shape of a tensor, or of the data of a packed sequence (for error messages)."""
    return input.data.shape if isinstance(input, PackedSequence) else input.shape


def repack(padded: torch.Tensor, like: PackedSequence) -> PackedSequence:
    """Pack ``padded`` (T, B, F), in the caller's batch order, the way ``like`` is packed."""
    order = like.sorted_indices
    if order is None:  # packed with enforce_sorted=True: the batch is already sorted
        order = torch.arange(padded.shape[1], device=padded.device)
    # a packed sequence stores step 0 of every sequence, then step 1 of those still running...
    data = torch.cat([padded[t, order[:n]] for t, n in enumerate(like.batch_sizes.tolist())])
    return PackedSequence(data, like.batch_sizes, like.sorted_indices, like.unsorted_indices)


class RNN(_RecurrentLayer):
    """An Elman RNN layer stack, equal to ``nn.RNN`` with copied weights."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False) -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, "
                             f"got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional)
        self.nonlinearity = nonlinearity

    @property
    def mode(self) -> str:
        """``RNN_TANH`` or ``RNN_RELU``, as torch names them."""
        return f"RNN_{self.nonlinearity.upper()}"

    def step(self, x: torch.Tensor, state: State, weights: tuple) -> State:
        """One Elman step (see :func:`~neuralarch.sequence.recurrent_cells.rnn_cell`)."""
        return (rnn_cell(x, state[0], *weights, nonlinearity=self.nonlinearity),)


class LSTM(_RecurrentLayer):
    """An LSTM layer stack, equal to ``nn.LSTM`` (without ``proj_size``) with copied weights."""

    cell_type = "LSTM"
    n_states = 2

    def step(self, x: torch.Tensor, state: State, weights: tuple) -> State:
        """One LSTM step (see :func:`~neuralarch.sequence.recurrent_cells.lstm_cell`)."""
        return lstm_cell(x, (state[0], state[1]), *weights)


class GRU(_RecurrentLayer):
    """A GRU layer stack, equal to ``nn.GRU`` with copied weights."""

    cell_type = "GRU"

    def step(self, x: torch.Tensor, state: State, weights: tuple) -> State:
        """One GRU step (see :func:`~neuralarch.sequence.recurrent_cells.gru_cell`)."""
        return (gru_cell(x, state[0], *weights),)


def _signature(module: nn.Module) -> dict[str, object]:
    """What must agree for two recurrent layers to share weights."""
    if getattr(module, "proj_size", 0):
        raise ValueError("an nn.LSTM with proj_size > 0 has no counterpart here")
    names = ("mode", "input_size", "hidden_size", "num_layers", "bias", "bidirectional")
    return {name: getattr(module, name) for name in names}


def copy_rnn_weights(source: nn.Module, target: nn.Module) -> nn.Module:
    """Copy every weight of one recurrent layer into another (ours or torch's, either way).

    The two must have the same cell type, sizes, layers, bias and directions; their parameter
    names are torch's on both sides, so this is ``load_state_dict`` after that check.
    """
    want, have = _signature(source), _signature(target)
    if want != have:
        diff = {k: (want[k], have[k]) for k in want if want[k] != have[k]}
        raise ValueError(f"cannot copy weights between {type(source).__name__} and "
                         f"{type(target).__name__}; these differ (source, target): {diff}")
    target.load_state_dict(source.state_dict())
    return target


def to_torch_rnn(ours: _RecurrentLayer) -> nn.RNNBase:
    """Build the torch layer (``nn.RNN``, ``nn.LSTM`` or ``nn.GRU``) equal to ours."""
    kwargs = dict(input_size=ours.input_size, hidden_size=ours.hidden_size,
                  num_layers=ours.num_layers, bias=ours.bias, batch_first=ours.batch_first,
                  dropout=ours.dropout, bidirectional=ours.bidirectional)
    if isinstance(ours, RNN):
        twin = nn.RNN(nonlinearity=ours.nonlinearity, **kwargs)
    else:
        twin = {"LSTM": nn.LSTM, "GRU": nn.GRU}[ours.cell_type](**kwargs)
    return copy_rnn_weights(ours, twin.to(next(ours.parameters()).device))


def gradient_through_time(cell: nn.Module, steps: int = 100, batch: int = 32,
                          seed: int = 0) -> torch.Tensor:
    """Mean norm of dL/dh_t against the distance T - t, for one cell at its current weights.

    The cell (an RNN, LSTM or GRU cell, ours or torch's) reads ``steps`` standard-normal
    inputs from a zero state; L is a random unit projection of the last state h_T, so
    element ``k`` of the result (``steps``,) says how strongly h_{T-k} can still change L.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    gen = torch.Generator().manual_seed(seed)
    weight = next(cell.parameters())
    x = torch.randn(steps, batch, cell.input_size, generator=gen).to(weight)  # (T, B, I)
    direction = F.normalize(torch.randn(batch, cell.hidden_size, generator=gen), dim=1)
    state = None
    hidden: list[torch.Tensor] = []
    for t in range(steps):
        state = cell(x[t], state)
        hidden.append(state[0] if isinstance(state, tuple) else state)  # h_t (B, H)
    loss = (hidden[-1] * direction.to(weight)).sum()
    grads = torch.autograd.grad(loss, hidden)  # dL/dh_t for every t; the cell's .grad untouched
    norms = torch.stack([g.norm(dim=1).mean() for g in grads])  # (T,) oldest first
    return norms.flip(0).cpu()  # element k: distance k from the end
