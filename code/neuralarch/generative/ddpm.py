"""Denoising diffusion probabilistic models (Ho et al., 2020): forward process, loss, sampling.

Introduced in lesson 7.1 (``m07-l01``). Everything here is shape-agnostic: ``x`` may be a batch
of images (B, C, H, W), of 1-D signals (B, C, L), of 2-D points (B, 2) or of latent codes (B, d);
the per-example scalars of the schedule are broadcast over the trailing axes. A denoiser is any
callable ``model(x_t, t, y)`` that returns its estimate of the noise, shaped like ``x_t``; ``t``
is a (B,) tensor of integer steps 0..T-1 (step index ``t`` is the paper's step t + 1).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import trange

from neuralarch.generative.noise_schedules import NoiseSchedule
from neuralarch.progress import progress_disabled

Denoiser = Callable[..., torch.Tensor]  # model(x_t (B, ...), t (B,), y (B,) | None) -> eps


def broadcast(values: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape per-example values (B,) to (B, 1, ..., 1) so they broadcast against ``x``."""
    return values.to(x.dtype).view(-1, *([1] * (x.ndim - 1)))


class Diffusion:
    """A DDPM forward process on one noise schedule, with its loss and its sampler.

    The schedule is a :class:`~neuralarch.generative.noise_schedules.NoiseSchedule`.
    """

    def __init__(self, schedule: NoiseSchedule) -> None:
        self.schedule = schedule
        self.steps = schedule.steps
        self.betas = schedule.betas.float()
        self.alpha_bars = schedule.alpha_bars.float()
        self.alpha_bars_prev = schedule.alpha_bars_prev.float()
        self.posterior_variances = schedule.posterior_variances.float()

    def _check_t(self, t: torch.Tensor, x: torch.Tensor) -> None:
        if t.shape != (x.shape[0],) or t.dtype != torch.long:
            raise ValueError(f"t must be a (B,) = ({x.shape[0]},) int64 tensor of steps, got "
                             f"{tuple(t.shape)} {t.dtype}")
        if bool((t < 0).any()) or bool((t >= self.steps).any()):
            raise ValueError(f"steps must lie in 0..{self.steps - 1}")

    def q_mean_std(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean ``sqrt(alpha_bar_t) x0`` and std ``sqrt(1 - alpha_bar_t)`` of q(x_t | x_0)."""
        self._check_t(t, x0)
        ab = broadcast(self.alpha_bars[t], x0)  # (B, 1, ...)
        return ab.sqrt() * x0, (1 - ab).sqrt()

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
        """Jump straight to step ``t``: ``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps``."""
        noise = torch.randn_like(x0) if noise is None else noise
        mean, std = self.q_mean_std(x0, t)
        return mean + std * noise

    def loss(self, model: Denoiser, x0: torch.Tensor, y: torch.Tensor | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """The simplified objective: ``E || eps - eps_theta(x_t, t) ||^2`` at a random step."""
        t = torch.randint(0, self.steps, (x0.shape[0],), generator=generator)  # (B,)
        noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
        return F.mse_loss(model(self.q_sample(x0, t, noise), t, y), noise)

    def predict_x0(self, x_t: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Invert the forward jump: ``x0 = (x_t - sqrt(1 - ab_t) eps) / sqrt(ab_t)``."""
        ab = broadcast(self.alpha_bars[t], x_t)
        return (x_t - (1 - ab).sqrt() * eps) / ab.sqrt()

    def posterior_mean(self, x_t: torch.Tensor, t: torch.Tensor,
                       eps: torch.Tensor) -> torch.Tensor:
        """Mean of p(x_{t-1} | x_t): ``(x_t - beta_t / sqrt(1 - ab_t) eps) / sqrt(alpha_t)``."""
        beta, ab = broadcast(self.betas[t], x_t), broadcast(self.alpha_bars[t], x_t)
        return (x_t - beta / (1 - ab).sqrt() * eps) / (1 - beta).sqrt()

    def posterior_mean_from_x0(self, x_t: torch.Tensor, t: torch.Tensor,
                               x0: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x_0): a weighted sum of the clean estimate and x_t."""
        beta, ab = broadcast(self.betas[t], x_t), broadcast(self.alpha_bars[t], x_t)
        ab_prev = broadcast(self.alpha_bars_prev[t], x_t)
        return (ab_prev.sqrt() * beta * x0 + (1 - beta).sqrt() * (1 - ab_prev) * x_t) / (1 - ab)

    @torch.no_grad()
    def sample(self, model: Denoiser, shape: tuple[int, ...], y: torch.Tensor | None = None,
               generator: torch.Generator | None = None, temperature: float = 1.0,
               return_chain: bool = False, clip: float | None = None) -> torch.Tensor:
        """Ancestral sampling: T steps of ``x_{t-1} = mean + sqrt(beta_tilde_t) z``.

        ``temperature`` scales every Gaussian draw (the start and each step's noise). ``clip``
        clamps the implied clean estimate x0_hat to ``[-clip, clip]`` (the data's range) before
        the mean is formed. With ``return_chain`` the result is ``(T + 1, *shape)``: x_T first.
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        x = temperature * torch.randn(shape, generator=generator)
        chain = [x]
        for step in reversed(range(self.steps)):
            t = torch.full((shape[0],), step, dtype=torch.long)
            eps = model(x, t, y)
            if clip is None:
                x = self.posterior_mean(x, t, eps)
            else:
                x0 = self.predict_x0(x, t, eps).clamp(-clip, clip)
                x = self.posterior_mean_from_x0(x, t, x0)
            if step > 0:  # the last step returns the mean: no noise is added to x_0
                z = torch.randn(shape, generator=generator)
                x = x + temperature * self.posterior_variances[step].sqrt() * z
            if return_chain:
                chain.append(x)
        return torch.stack(chain) if return_chain else x


def fit_denoiser(model: torch.nn.Module, diffusion: Diffusion, data: torch.Tensor,
                 steps: int, batch_size: int = 256, lr: float = 2e-3,
                 labels: torch.Tensor | None = None, seed: int = 0) -> list[float]:
    """Train ``model`` in place with :meth:`Diffusion.loss` on random batches; return the losses.

    AdamW with a cosine-decayed learning rate; batches are drawn with a generator seeded by
    ``seed``, so a run is repeatable.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError(f"steps and batch_size must be positive, got {steps}, {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(data), (batch_size,), generator=gen)
        loss = diffusion.loss(model, data[idx], None if labels is None else labels[idx], gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def train_with_ema(model: torch.nn.Module, diffusion: Diffusion, data: torch.Tensor, *,
                   steps: int, batch_size: int, lr: float, ema: float,
                   generator: torch.Generator, labels: torch.Tensor | None = None,
                   null_class: int | None = None, p_uncond: float = 0.0,
                   desc: str = "DDPM", progress: bool = True) -> list[float]:
    """The book's recipe for its cached diffusion models; return the loss of every step.

    :meth:`Diffusion.loss` on random batches of ``data``, AdamW with a one-cycle learning rate
    (5 % warm-up), and a moving average of the weights (decay ``ema``), which the model holds
    at the end: the average, not the last iterate, is what samples well. With ``labels`` and a
    ``null_class``, each label is replaced by the null class with probability ``p_uncond``, so
    that one network also learns the unconditional model classifier-free guidance needs.
    """
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps, pct_start=0.05)
    average = copy.deepcopy(model).requires_grad_(False)
    losses = []
    for _ in trange(steps, disable=not progress or progress_disabled(), desc=desc):
        idx = torch.randint(0, len(data), (batch_size,), generator=generator)
        y = None if labels is None else labels[idx].clone()
        if y is not None and null_class is not None:
            y[torch.rand(len(y), generator=generator) < p_uncond] = null_class
        loss = diffusion.loss(model, data[idx], y, generator=generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        with torch.no_grad():
            for p_avg, p in zip(average.parameters(), model.parameters(), strict=True):
                p_avg.lerp_(p, 1 - ema)
        losses.append(loss.item())
    model.load_state_dict(average.state_dict())
    return losses


def loss_summary(losses: list[float]) -> dict[str, float]:
    """Mean loss of the first and of the last 10 % of the steps."""
    tail = max(1, len(losses) // 10)
    return {"first_loss": sum(losses[:tail]) / tail, "final_loss": sum(losses[-tail:]) / tail}
