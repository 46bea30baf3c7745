"""Project 3: a hybrid network for market signals: causal Conv1d features, a GRU or causal
self-attention over time (the book's one attention, :mod:`neuralarch.layers.attention`), and an
MLP head, built from one validated config.

Introduced in ``m03-l06``. Every layer is causal: the output at time step ``t`` depends on inputs
``<= t`` only, so ``forward_sequence`` gives a prediction for every day of a window without
peeking ahead, and ``forward`` (the prediction at the window's last day) can never see the future.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from neuralarch.config import ArchConfig
from neuralarch.layers.mlp import MLPConfig, build_mlp
from neuralarch.layers.transformer import TransformerBlock


class HybridConfig(ArchConfig):
    """Shape of a :class:`HybridSignalNet`; defaults fit a 10-channel daily market summary."""

    in_channels: int = Field(10, gt=0, description="features per day (C)")
    conv_channels: int = Field(8, gt=0, description="filters of the causal Conv1d")
    kernel_size: int = Field(5, gt=0, description="days seen by one convolution filter")
    mixer: Literal["gru", "attention"] = Field(
        "gru", description="what mixes information over time: a GRU or causal self-attention")
    hidden: int = Field(8, gt=0, description="GRU state size / attention width")
    n_heads: int = Field(2, gt=0, description="attention heads; must divide hidden")
    max_len: int = Field(64, gt=0, description="longest window (attention position table)")
    mlp_hidden: int = Field(16, gt=0, description="hidden width of the MLP head")
    out_features: int = Field(1, gt=0, description="outputs, e.g. 1 logit for a binary target")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout probability")

    @model_validator(mode="after")
    def _heads_divide_width(self) -> HybridConfig:
        if self.mixer == "attention" and self.hidden % self.n_heads:
            raise ValueError(f"hidden ({self.hidden}) must be divisible by n_heads "
                             f"({self.n_heads}) when mixer='attention'")
        return self


class CausalConv1d(nn.Conv1d):
    """A Conv1d that pads on the left only, so output ``t`` sees inputs ``t - (k-1)d .. t``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 dilation: int = 1, bias: bool = True) -> None:
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation, bias=bias)
        self.left_pad = (kernel_size - 1) * dilation  # steps of history a filter reaches back

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C_in, L)`` to ``(B, C_out, L)``, the same length, without look-ahead."""
        return super().forward(F.pad(x, (self.left_pad, 0)))  # zeros before the first step


class AttentionMixer(nn.Module):
    """Project to the attention width, add learned positions, one causal pre-norm block."""

    def __init__(self, in_features: int, width: int, n_heads: int, max_len: int,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.max_len = max_len
        self.in_proj = nn.Linear(in_features, width)
        self.pos = nn.Parameter(torch.zeros(max_len, width))  # (max_len, D)
        self.block = TransformerBlock(width, n_heads, 2 * width, dropout=dropout,
                                      activation="gelu", norm_first=True, causal=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, L, C)`` to ``(B, L, D)``; position ``t`` uses steps ``<= t`` only."""
        L = x.shape[1]
        if self.max_len < L:
            raise ValueError(f"window length {L} exceeds max_len={self.max_len}")
        return self.block(self.in_proj(x) + self.pos[:L])  # (B, L, D)


class HybridSignalNet(nn.Module):
    """Causal Conv1d -> GRU or causal self-attention -> MLP head, for (B, L, C) windows."""

    def __init__(self, config: HybridConfig | None = None) -> None:
        super().__init__()
        config = HybridConfig() if config is None else config
        if not isinstance(config, HybridConfig):
            raise ValueError(f"config must be a HybridConfig, got {type(config).__name__}")
        self.config = config
        self.conv = CausalConv1d(config.in_channels, config.conv_channels, config.kernel_size)
        self.drop = nn.Dropout(config.dropout)
        self.mixer: nn.Module
        if config.mixer == "gru":
            self.mixer = nn.GRU(config.conv_channels, config.hidden, batch_first=True)
        else:
            self.mixer = AttentionMixer(config.conv_channels, config.hidden, config.n_heads,
                                        config.max_len, config.dropout)
        self.head = build_mlp(MLPConfig(  # hidden -> mlp_hidden -> GELU -> dropout -> out
            in_features=config.hidden, hidden_sizes=(config.mlp_hidden,),
            out_features=config.out_features, activation="gelu", dropout=config.dropout))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Causal sequence features: ``(B, L, C)`` -> ``(B, L, hidden)``."""
        if x.ndim != 3 or x.shape[-1] != self.config.in_channels:
            raise ValueError(f"x must have shape (B, L, {self.config.in_channels}), "
                             f"got {tuple(x.shape)}")
        z = F.gelu(self.conv(x.transpose(1, 2))).transpose(1, 2)  # (B, L, conv_channels)
        z = self.drop(z)
        if isinstance(self.mixer, nn.GRU):
            return self.mixer(z)[0]  # (B, L, hidden) the state after every step
        return self.mixer(z)  # (B, L, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The prediction at the window's last step: ``(B, L, C)`` -> ``(B, out_features)``."""
        return self.head(self.encode(x)[:, -1])

    def forward_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """A prediction at every step, each from that step and earlier: ``(B, L, out_features)``."""
        return self.head(self.encode(x))


class LinearWindowModel(nn.Module):
    """The linear baseline: one weight per (day, channel) of a ``(B, L, C)`` window."""

    def __init__(self, lookback: int, in_channels: int, out_features: int = 1) -> None:
        super().__init__()
        for name, value in (("lookback", lookback), ("in_channels", in_channels),
                            ("out_features", out_features)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.lookback, self.in_channels = lookback, in_channels
        self.linear = nn.Linear(lookback * in_channels, out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, L, C)`` windows to ``(B, out_features)`` scores (logits for a classifier)."""
        if x.shape[1:] != (self.lookback, self.in_channels):
            raise ValueError(f"x must have shape (B, {self.lookback}, {self.in_channels}), "
                             f"got {tuple(x.shape)}")
        return self.linear(x.flatten(1))  # (B, L * C) -> (B, out)

