"""DDIM sampling (Song et al., 2021), classifier-free guidance (Ho & Salimans, 2022), temperature.

Introduced in lesson 7.4 (``m07-l04``). DDIM reuses a model trained with the DDPM objective but
walks a short subsequence of the ``T`` steps. ``eta`` sets how much fresh noise each step adds:
``eta = 0`` is deterministic (the same start gives the same sample), ``eta = 1`` on the full
sequence of steps is DDPM's ancestral sampler.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from neuralarch.generative.ddpm import Denoiser, Diffusion, broadcast

StepHook = Callable[[torch.Tensor, int], torch.Tensor]  # (x at step t, t) -> x


class ClassifierFreeGuidance(nn.Module):
    """``eps = (1 + w) eps(x, t, y) - w eps(x, t, null)``: push away from the unconditional.

    ``w = 0`` is the conditional model itself; larger ``w`` trades diversity for samples that
    look more like the requested class. Both predictions come from one batched forward pass.
    """

    def __init__(self, model: Denoiser, scale: float, null_class: int) -> None:
        super().__init__()
        if scale < 0:
            raise ValueError(f"guidance scale must be >= 0, got {scale}")
        self.model, self.scale, self.null_class = model, scale, null_class

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        if y is None:
            raise ValueError("classifier-free guidance needs the requested classes y")
        if self.scale == 0:
            return self.model(x, t, y)
        null = torch.full_like(y, self.null_class)
        both = self.model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null]))
        cond, uncond = both.chunk(2)  # (B, ...) each
        return (1 + self.scale) * cond - self.scale * uncond


def ddim_timesteps(total: int, steps: int) -> list[int]:
    """``steps`` step indices out of ``0..total-1``: evenly spaced, descending, from ``total-1``."""
    if not 1 <= steps <= total:
        raise ValueError(f"steps must be in 1..{total}, got {steps}")
    grid = torch.linspace(total - 1, 0, steps).round().long().unique()
    return sorted(grid.tolist(), reverse=True)


def ddim_sigma(alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor,
               eta: float) -> torch.Tensor:
    """Std of the noise a DDIM step adds: ``eta sqrt((1-ab')/(1-ab)) sqrt(1 - ab/ab')``."""
    return eta * ((1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt() * \
        (1 - alpha_bar / alpha_bar_prev).sqrt()


def ddim_step(x: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor,
              alpha_bar_prev: torch.Tensor, eta: float, noise: torch.Tensor | None = None,
              clip: float | None = None) -> torch.Tensor:
    """One DDIM update from a step with ``alpha_bar`` to one with ``alpha_bar_prev``.

    ``x_prev = sqrt(ab') x0_hat + sqrt(1 - ab' - sigma^2) eps + sigma z``, with
    ``x0_hat = (x - sqrt(1 - ab) eps) / sqrt(ab)`` (clamped to ``[-clip, clip]`` if given).
    """
    ab, ab_prev = broadcast(alpha_bar, x), broadcast(alpha_bar_prev, x)  # (B, 1, ...)
    x0 = (x - (1 - ab).sqrt() * eps) / ab.sqrt()
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
        eps = (x - ab.sqrt() * x0) / (1 - ab).sqrt()  # the noise consistent with the clamped x0
    sigma = ddim_sigma(ab, ab_prev, eta)
    out = ab_prev.sqrt() * x0 + (1 - ab_prev - sigma**2).clamp(min=0).sqrt() * eps
    if eta > 0:
        out = out + sigma * (torch.randn_like(x) if noise is None else noise)
    return out


@torch.no_grad()
def ddim_sample(model: Denoiser, diffusion: Diffusion, shape: tuple[int, ...], steps: int,
                eta: float = 0.0, y: torch.Tensor | None = None,
                generator: torch.Generator | None = None, temperature: float = 1.0,
                x_start: torch.Tensor | None = None, start_step: int | None = None,
                clip: float | None = None, hook: StepHook | None = None) -> torch.Tensor:
    """Sample with DDIM on ``steps`` of the model's steps; return x_0 of ``shape``.

    ``temperature`` scales the starting noise and each step's fresh noise. ``x_start`` and
    ``start_step`` begin the walk from a given x at a given step instead of pure noise (SDEdit);
    ``hook(x, t)`` may edit x after each step (inpainting puts the known pixels back there).
    """
    if not 0 <= eta <= 1:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    top = diffusion.steps - 1 if start_step is None else start_step
    if not 0 <= top < diffusion.steps:
        raise ValueError(f"start_step must be in 0..{diffusion.steps - 1}, got {start_step}")
    grid = ddim_timesteps(top + 1, min(steps, top + 1))
    x = temperature * torch.randn(shape, generator=generator) if x_start is None else x_start
    for i, step in enumerate(grid):
        prev = grid[i + 1] if i + 1 < len(grid) else -1  # -1: the clean data, alpha_bar = 1
        t = torch.full((shape[0],), step, dtype=torch.long)
        ab = diffusion.alpha_bars[t]
        ab_prev = diffusion.alpha_bars[prev].expand_as(ab) if prev >= 0 else torch.ones_like(ab)
        noise = temperature * torch.randn(shape, generator=generator) if eta > 0 else None
        x = ddim_step(x, model(x, t, y), ab, ab_prev, eta, noise, clip)
        if hook is not None:
            x = hook(x, prev)
    return x
