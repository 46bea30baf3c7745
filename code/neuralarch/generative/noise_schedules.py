"""Noise schedules of diffusion models: the betas, the alphas and their running product.

Introduced in lesson 7.1 (``m07-l01``). A schedule fixes how much Gaussian noise each of the
``T`` forward steps adds: the linear schedule of Ho et al. (2020) and the cosine schedule of
Nichol & Dhariwal (2021), which destroys information more evenly over the steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseSchedule:
    """The ``T`` betas of a forward process and everything derived from them (float64)."""

    betas: torch.Tensor  # (T,): beta_t, the variance added at step t = 1..T (index t - 1)

    def __post_init__(self) -> None:
        b = self.betas
        if b.ndim != 1 or len(b) < 1:
            raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {tuple(b.shape)}")
        if not bool(((b > 0) & (b < 1)).all()):
            raise ValueError("every beta must lie in (0, 1), got values in "
                             f"[{b.min().item():.3g}, {b.max().item():.3g}]")

    @property
    def steps(self) -> int:
        """``T``, the number of forward steps."""
        return len(self.betas)

    @property
    def alphas(self) -> torch.Tensor:
        """``alpha_t = 1 - beta_t``, shape (T,)."""
        return 1.0 - self.betas

    @property
    def alpha_bars(self) -> torch.Tensor:
        """``alpha_bar_t = prod_{s <= t} alpha_s``: the signal kept after t steps, shape (T,)."""
        return torch.cumprod(self.alphas, dim=0)

    @property
    def alpha_bars_prev(self) -> torch.Tensor:
        """``alpha_bar_{t-1}``, with ``alpha_bar_0 = 1`` (no noise yet), shape (T,)."""
        return torch.cat([torch.ones(1, dtype=self.betas.dtype), self.alpha_bars[:-1]])

    @property
    def posterior_variances(self) -> torch.Tensor:
        """``beta_tilde_t``, the variance of q(x_{t-1} | x_t, x_0), shape (T,)."""
        return (1.0 - self.alpha_bars_prev) / (1.0 - self.alpha_bars) * self.betas

    def snr(self) -> torch.Tensor:
        """Signal-to-noise ratio ``alpha_bar_t / (1 - alpha_bar_t)`` of x_t, shape (T,)."""
        return self.alpha_bars / (1.0 - self.alpha_bars)


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps!r}")


def linear_schedule(steps: int, beta_start: float | None = None,
                    beta_end: float | None = None) -> NoiseSchedule:
    """Betas linear from ``beta_start`` to ``beta_end`` (Ho et al., 2020).

    The defaults are the paper's 1e-4 and 0.02 for T = 1000, scaled by 1000 / T so that a
    shorter chain still ends in (almost) pure noise.
    """
    _check_steps(steps)
    scale = 1000.0 / steps
    start = 1e-4 * scale if beta_start is None else beta_start
    end = min(0.02 * scale, 0.999) if beta_end is None else beta_end
    if not 0 < start <= end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {start} and {end}")
    return NoiseSchedule(torch.linspace(start, end, steps, dtype=torch.float64))


def cosine_schedule(steps: int, offset: float = 0.008, max_beta: float = 0.999) -> NoiseSchedule:
    """``alpha_bar_t = cos^2((t/T + s) / (1 + s) * pi/2)`` (Nichol & Dhariwal, 2021)."""
    _check_steps(steps)
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if not 0 < max_beta < 1:
        raise ValueError(f"max_beta must be in (0, 1), got {max_beta}")
    t = torch.arange(steps + 1, dtype=torch.float64) / steps  # (T + 1,): 0, 1/T, ..., 1
    f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bars = f / f[0]
    betas = (1 - alpha_bars[1:] / alpha_bars[:-1]).clamp(min=1e-8, max=max_beta)
    return NoiseSchedule(betas)


def make_schedule(kind: str, steps: int) -> NoiseSchedule:
    """Return the ``"linear"`` or ``"cosine"`` schedule with ``steps`` steps."""
    if kind == "linear":
        return linear_schedule(steps)
    if kind == "cosine":
        return cosine_schedule(steps)
    raise ValueError(f"kind must be 'linear' or 'cosine', got {kind!r}")
