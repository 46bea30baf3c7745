"""Diffusion on 1-D signals: a family of noisy sinusoids and a small 1-D conv noise predictor.

Introduced in lesson 7.4 (``m07-l04``). The same DDPM/DDIM code that makes digits makes signals
of shape (B, 1, L); only the network changes, from 2-D to 1-D convolutions.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from neuralarch.generative.unet import ResBlock, StepEmbedding


def noisy_sinusoids(n: int, length: int = 64, noise: float = 0.05,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` signals (n, 1, length): ``a sin(2 pi f x + phi)`` plus white noise.

    Amplitude ``a`` in [0.4, 1], frequency ``f`` in [1, 3] cycles per window, phase uniform.
    """
    if n < 1 or length < 2:
        raise ValueError(f"need n >= 1 and length >= 2, got {n}, {length}")
    amp = 0.4 + 0.6 * torch.rand(n, 1, generator=generator)
    freq = 1 + 2 * torch.rand(n, 1, generator=generator)
    phase = 2 * math.pi * torch.rand(n, 1, generator=generator)
    x = torch.linspace(0, 1, length)[None, :]  # (1, L)
    clean = amp * torch.sin(2 * math.pi * freq * x + phase)  # (n, L)
    return (clean + noise * torch.randn(n, length, generator=generator)).unsqueeze(1)


def dominant_frequency(signals: torch.Tensor) -> torch.Tensor:
    """Cycles per window of the strongest non-constant Fourier component, (B, 1, L) -> (B,)."""
    spectrum = torch.fft.rfft(signals[:, 0], dim=-1).abs()  # (B, L // 2 + 1)
    return spectrum[:, 1:].argmax(dim=-1).float() + 1


class SignalDenoiser(nn.Module):
    """``eps_theta(x_t, t)`` for signals (B, C, L): 1-D residual conv blocks, no downsampling."""

    def __init__(self, channels: int = 1, width: int = 32, blocks: int = 3,
                 time_steps: int = 100, embed_dim: int = 64) -> None:
        super().__init__()
        if min(channels, width, blocks, time_steps) < 1 or width % 8:
            raise ValueError(f"channels, blocks, time_steps must be positive and width a "
                             f"multiple of 8, got {channels}, {blocks}, {time_steps}, {width}")
        self.embed = StepEmbedding(time_steps, embed_dim)
        self.inp = nn.Conv1d(channels, width, 3, padding=1)
        self.blocks = nn.ModuleList(ResBlock(width, width, embed_dim, 8, dims=1)
                                    for _ in range(blocks))
        self.norm = nn.GroupNorm(8, width)
        self.out = nn.Conv1d(width, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                y: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t)  # (B, embed_dim)
        h = self.inp(x)  # (B, width, L)
        for block in self.blocks:
            h = block(h, emb)
        return self.out(F.silu(self.norm(h)))  # (B, C, L)
