"""Diffusion on 2-D points: a toy data set and a small MLP noise predictor.

Introduced in lesson 7.1 (``m07-l01``): in two dimensions every step of the forward and the
reverse chain can be drawn, and a model trains in seconds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.sequence.positional import sinusoidal_table


def two_moons(n: int, noise: float = 0.06,
              generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` points (n, 2) on two interleaved half circles, standardised to mean 0, std ~1."""
    if n < 2:
        raise ValueError(f"n must be >= 2, got {n}")
    upper = torch.rand(n, generator=generator) < 0.5
    angle = torch.rand(n, generator=generator) * math.pi
    x = torch.where(upper, angle.cos(), 1 - angle.cos())
    y = torch.where(upper, angle.sin(), 0.5 - angle.sin())
    points = torch.stack([x, y], dim=1) + noise * torch.randn(n, 2, generator=generator)
    return (points - torch.tensor([0.5, 0.25])) / torch.tensor([0.87, 0.5])


class MLPDenoiser(nn.Module):
    """``eps_theta(x_t, t)`` for points (B, dim): an MLP of [x_t, embedding(t)]."""

    def __init__(self, dim: int = 2, hidden: int = 128, time_steps: int = 100,
                 embed_dim: int = 32, layers: int = 3) -> None:
        super().__init__()
        if min(dim, hidden, time_steps, layers) < 1 or embed_dim % 2:
            raise ValueError("dim, hidden, time_steps and layers must be positive and "
                             f"embed_dim even, got {dim}, {hidden}, {time_steps}, {layers}, "
                             f"{embed_dim}")
        self.register_buffer("table", sinusoidal_table(time_steps, embed_dim), persistent=False)
        self.inp = nn.Linear(dim + embed_dim, hidden)
        self.hidden = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers - 1))
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.silu(self.inp(torch.cat([x, self.table[t]], dim=1)))  # (B, hidden)
        for layer in self.hidden:
            h = h + F.silu(layer(h))  # residual MLP blocks
        return self.out(h)  # (B, dim)
