"""Recurrent cells from scratch: the Elman RNN, the LSTM and the GRU, one time step each.

Introduced in lesson 5.1 (``m05-l01``). Each cell is first a plain function that writes out the
equations of the paper (gates named as in torch's documentation), then a small module that owns
the weights. The weights are laid out exactly like torch's ``nn.RNNCell``, ``nn.LSTMCell`` and
``nn.GRUCell``: ``weight_ih`` (G*H, I), ``weight_hh`` (G*H, H), ``bias_ih`` and ``bias_hh``
(G*H,), with the G gates stacked in torch's order (LSTM: i, f, g, o; GRU: r, z, n), so a
``state_dict`` copies over one to one. The multi-layer, bidirectional layers that run these
cells over a sequence are in :mod:`neuralarch.sequence.recurrent`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

NONLINEARITIES = ("tanh", "relu")
GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}  # stacked blocks of H rows in weight_ih / weight_hh


def rnn_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor,
             weight_hh: torch.Tensor, bias_ih: torch.Tensor | None = None,
             bias_hh: torch.Tensor | None = None, nonlinearity: str = "tanh") -> torch.Tensor:
    """One step of an Elman RNN: ``h' = act(W_ih x + b_ih + W_hh h + b_hh)``."""
    pre = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (B, H)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)


def lstm_cell(x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
              weight_ih: torch.Tensor, weight_hh: torch.Tensor,
              bias_ih: torch.Tensor | None = None,
              bias_hh: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of an LSTM: gates i, f, o and candidate g update the cell c and output h."""
    h, c = state  # (B, H) each
    gates = F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh)  # (B, 4H)
    i, f, g, o = gates.chunk(4, dim=-1)  # torch's order: input, forget, cell, output
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c = f * c + i * g  # keep part of the old memory, write part of the new candidate
    h = o * torch.tanh(c)  # expose part of the memory
    return h, c


def gru_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor,
             weight_hh: torch.Tensor, bias_ih: torch.Tensor | None = None,
             bias_hh: torch.Tensor | None = None) -> torch.Tensor:
    """One step of a GRU: reset gate r, update gate z, candidate n; ``h' = (1 - z) n + z h``."""
    x_r, x_z, x_n = F.linear(x, weight_ih, bias_ih).chunk(3, dim=-1)  # (B, H) each
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)  # how much of the old state the candidate may read
    z = torch.sigmoid(x_z + h_z)  # how much of the old state to keep
    n = torch.tanh(x_n + r * h_n)  # the reset gate scales W_hn h + b_hn, as in torch and cuDNN
    return (1 - z) * n + z * h


def check_sizes(input_size: object, hidden_size: object) -> None:
    """Raise a ``ValueError`` unless both sizes are positive ints."""
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def init_uniform_(parameters: list[nn.Parameter], hidden_size: int) -> None:
    """Torch's default init for recurrent weights: U(-1/sqrt(H), 1/sqrt(H)) for every tensor."""
    bound = 1.0 / math.sqrt(hidden_size)
    with torch.no_grad():
        for parameter in parameters:
            parameter.uniform_(-bound, bound)


class _Cell(nn.Module):
    """Weights of one recurrent cell, shaped like torch's: ``gates`` blocks of H rows."""

    gates = 1

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True) -> None:
        super().__init__()
        check_sizes(input_size, hidden_size)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        rows = self.gates * hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, input_size))  # (G*H, I)
        self.weight_hh = nn.Parameter(torch.empty(rows, hidden_size))  # (G*H, H)
        self.bias_ih = nn.Parameter(torch.empty(rows)) if bias else None  # (G*H,)
        self.bias_hh = nn.Parameter(torch.empty(rows)) if bias else None
        init_uniform_(list(self.parameters()), hidden_size)

    def _weights(self) -> tuple[torch.Tensor | None, ...]:
        return self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh

    def _zeros(self, x: torch.Tensor) -> torch.Tensor:
        """Check that x is (B, I) and return a zero state (B, H) to start from."""
        if x.dim() != 2 or x.shape[1] != self.input_size:
            raise ValueError(f"{type(self).__name__} expects input (B, {self.input_size}), "
                             f"got {tuple(x.shape)}; to run a sequence use a layer (RNN, LSTM, "
                             f"GRU) from neuralarch.sequence.recurrent")
        return x.new_zeros(x.shape[0], self.hidden_size)  # (B, H)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"


class RNNCell(_Cell):
    """An Elman RNN cell (Elman, 1990), equal to ``nn.RNNCell`` with copied weights."""

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh") -> None:
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(f"nonlinearity must be one of {NONLINEARITIES}, "
                             f"got {nonlinearity!r}")
        super().__init__(input_size, hidden_size, bias)
        self.nonlinearity = nonlinearity

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Return the next hidden state (B, H) for input x (B, I) and state h (zeros if None)."""
        zeros = self._zeros(x)
        h = zeros if h is None else h
        return rnn_cell(x, h, *self._weights(), nonlinearity=self.nonlinearity)


class LSTMCell(_Cell):
    """An LSTM cell (Hochreiter and Schmidhuber, 1997, with the forget gate of Gers et al.)."""

    gates = 4

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return the next ``(h, c)``, each (B, H), for input x (B, I) (zero state if None)."""
        zeros = self._zeros(x)
        state = (zeros, zeros) if state is None else state
        return lstm_cell(x, state, *self._weights())


class GRUCell(_Cell):
    """A gated recurrent unit (Cho et al., 2014), equal to ``nn.GRUCell`` with copied weights."""

    gates = 3

    def forward(self, x: torch.Tensor, h: torch.Tensor | None = None) -> torch.Tensor:
        """Return the next hidden state (B, H) for input x (B, I) and state h (zeros if None)."""
        zeros = self._zeros(x)
        h = zeros if h is None else h
        return gru_cell(x, h, *self._weights())
