"""The Rosenbrock "banana" function and optimizer trajectories on it.

Introduced in lesson 2.3 (``m02-l03``). Rosenbrock's function has its minimum ``(a, a²)`` at the
bottom of a long, curved, flat-bottomed valley with steep walls: easy to fall into, slow to
follow. It is the classic test of whether an optimizer copes with badly conditioned curvature.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch.optim import Optimizer


def rosenbrock(xy: torch.Tensor, a: float = 1.0, b: float = 100.0) -> torch.Tensor:
    """Return ``(a - x)² + b (y - x²)²`` at points ``xy`` of shape ``(..., 2)``; shape ``(...)``."""
    if xy.shape[-1:] != (2,):
        raise ValueError(f"xy must have shape (..., 2), got {tuple(xy.shape)}")
    x, y = xy[..., 0], xy[..., 1]  # (...), (...)
    return (a - x) ** 2 + b * (y - x**2) ** 2


def rosenbrock_minimum(a: float = 1.0) -> tuple[float, float]:
    """Return the minimiser ``(a, a²)`` of :func:`rosenbrock`, where its value is 0."""
    return (a, a * a)


@dataclass
class Trajectory:
    """The points an optimizer visited on Rosenbrock's function, and the loss at each."""

    path: torch.Tensor  # (n + 1, 2): the start, then the point after each step
    losses: torch.Tensor  # (n + 1,): the loss at each point of ``path``
    diverged: bool  # True if the loss became inf or NaN (the path stops there)

    def distance_to(self, point: Sequence[float]) -> float:
        """Euclidean distance from the last point of the path to ``point``."""
        target = torch.tensor(point, dtype=self.path.dtype)
        return float(torch.linalg.vector_norm(self.path[-1] - target))


def trajectory(optimizer_factory: Callable[[list[torch.Tensor]], Optimizer],
               start: Sequence[float] = (-1.5, 2.0), steps: int = 1000, a: float = 1.0,
               b: float = 100.0, dtype: torch.dtype = torch.float64) -> Trajectory:
    """Run ``steps`` optimizer steps on Rosenbrock's function from ``start``; return the path.

    ``optimizer_factory`` receives the list of parameters (one tensor of shape ``(2,)``) and
    returns an optimizer, e.g. ``lambda params: torch.optim.Adam(params, lr=0.05)``. The run stops
    early if the loss becomes inf or NaN.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an int >= 0, got {steps!r}")
    if len(start) != 2 or not all(math.isfinite(float(s)) for s in start):
        raise ValueError(f"start must be two finite numbers (x, y), got {start!r}")
    xy = torch.tensor([float(s) for s in start], dtype=dtype, requires_grad=True)  # (2,)
    optimizer = optimizer_factory([xy])
    points, losses = [], []
    for i in range(steps + 1):
        loss = rosenbrock(xy, a, b)  # () at the current point
        points.append(xy.detach().clone())
        losses.append(loss.detach())
        if not torch.isfinite(loss):
            break  # diverged: stepping on would only produce more inf/NaN
        if i < steps:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    losses_t = torch.stack(losses)  # (n + 1,)
    return Trajectory(path=torch.stack(points), losses=losses_t,
                      diverged=not bool(torch.isfinite(losses_t[-1])))
