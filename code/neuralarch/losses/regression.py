"""Regression losses from scratch: MSE, MAE and Huber, each a negative log-likelihood.

Introduced in lesson 2.2 (``m02-l02``). MSE is the Gaussian negative log-likelihood, MAE the
Laplace one, and Huber blends the two: quadratic for small residuals, linear for large ones, so
that a few outliers cannot dominate the fit. Every function matches its ``torch.nn.functional``
counterpart (``mse_loss``, ``l1_loss``, ``huber_loss``). :func:`reduce_loss` and
:func:`check_same_shape` are shared by the classification and contrastive losses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    """Return ``reduction`` if it is one of ``"mean"``, ``"sum"``, ``"none"``; raise otherwise."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def reduce_loss(loss: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Reduce per-element losses to their mean or sum, or return them unchanged (``"none"``)."""
    check_reduction(reduction)
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def check_same_shape(input: torch.Tensor, target: torch.Tensor,
                     names: tuple[str, str] = ("input", "target")) -> None:
    """Raise a ``ValueError`` unless the two tensors have exactly the same shape.

    ``torch.nn.functional`` broadcasts mismatched shapes with only a warning; a (N, 1) prediction
    against a (N,) target then silently becomes an (N, N) loss matrix, so these losses refuse.
    """
    if input.shape != target.shape:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same shape, got {tuple(input.shape)} and "
            f"{tuple(target.shape)}; squeeze or reshape one of them (e.g. pred.squeeze(-1))"
        )


def mse_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean squared error ``(input - target)**2``, reduced; equals ``F.mse_loss``."""
    check_same_shape(input, target)
    check_reduction(reduction)
    return reduce_loss((input - target) ** 2, reduction)


def mae_loss(input: torch.Tensor, target: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Mean absolute error ``|input - target|``, reduced; equals ``F.l1_loss``."""
    check_same_shape(input, target)
    check_reduction(reduction)
    return reduce_loss((input - target).abs(), reduction)


def huber_loss(input: torch.Tensor, target: torch.Tensor, delta: float = 1.0,
               reduction: str = "mean") -> torch.Tensor:
    """Huber loss: ``r**2 / 2`` for ``|r| <= delta``, else ``delta * (|r| - delta / 2)``.

    Equals ``F.huber_loss``. Its gradient is the residual clipped to ``[-delta, delta]``, so one
    outlier pulls on the fit with force at most ``delta`` instead of its full residual.
    """
    check_same_shape(input, target)
    check_reduction(reduction)
    if not isinstance(delta, int | float) or isinstance(delta, bool) or not delta > 0:
        raise ValueError(f"delta must be a number > 0, got {delta!r}")
    residual = (input - target).abs()
    quadratic = 0.5 * residual**2  # the Gaussian core
    linear = delta * (residual - 0.5 * delta)  # the Laplace tails, joined with matching slope
    return reduce_loss(torch.where(residual <= delta, quadratic, linear), reduction)


@dataclass
class LineFit:
    """What :func:`fit_line` returns: the fitted slope and intercept and the per-step losses."""

    slope: float
    intercept: float
    losses: list[float]


def fit_line(x: torch.Tensor, y: torch.Tensor, loss_fn: Callable[..., torch.Tensor],
             steps: int = 1000, lr: float = 0.1) -> LineFit:
    """Fit ``y ≈ slope * x + intercept`` by minimising ``loss_fn(pred, y)`` with full-batch Adam.

    The learning rate decays linearly to zero, so that even the non-smooth MAE settles instead
    of oscillating around its minimum.
    """
    if x.ndim != 1:
        raise ValueError(f"x must be one-dimensional (N,), got shape {tuple(x.shape)}")
    check_same_shape(x, y, names=("x", "y"))
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    params = torch.zeros(2, dtype=x.dtype, device=x.device, requires_grad=True)  # slope, intercept
    optimizer = torch.optim.Adam([params], lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    losses = []
    for _ in range(steps):
        loss = loss_fn(params[0] * x + params[1], y)  # prediction (N,)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    slope, intercept = params.detach().tolist()
    return LineFit(slope=slope, intercept=intercept, losses=losses)
