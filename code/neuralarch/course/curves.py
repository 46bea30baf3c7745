"""Plane curves computed with tensor operations only: the heart, roses and Lissajous figures.

Week 02's first warm-up (``w02``): every function takes a 1-D tensor of parameter values ``t``
and returns the points as an ``(N, 2)`` tensor of ``(x, y)``, using only torch operations, so the
same code runs on a GPU and can be differentiated with autograd. :func:`shoelace_area` measures
the area a closed curve encloses, which gives an exact check for each curve.
"""

from __future__ import annotations

import math

import torch


def _check_t(t: torch.Tensor) -> None:
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"t must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != 1:
        raise ValueError(f"t must be 1-D (N,), got shape {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"t must have a floating dtype, got {t.dtype}")


def _check_number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def parameter_grid(n: int, start: float = 0.0, stop: float = 2 * math.pi,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Return ``n`` evenly spaced values from ``start`` to ``stop`` inclusive: (n,)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    start, stop = _check_number(start, "start"), _check_number(stop, "stop")
    if not stop > start:
        raise ValueError(f"stop must be greater than start, got start={start}, stop={stop}")
    return torch.linspace(start, stop, n, dtype=dtype)


def polar_to_xy(r: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Convert polar coordinates (r, theta), both (N,), to points (N, 2)."""
    _check_t(theta)
    if not isinstance(r, torch.Tensor) or r.shape != theta.shape:
        shape = tuple(r.shape) if isinstance(r, torch.Tensor) else type(r).__name__
        raise ValueError(f"r must be a tensor of theta's shape {tuple(theta.shape)}, got {shape}")
    return torch.stack((r * torch.cos(theta), r * torch.sin(theta)), dim=-1)  # (N, 2)


def heart_curve(t: torch.Tensor) -> torch.Tensor:
    """The heart curve x = 16 sin^3 t, y = 13 cos t - 5 cos 2t - 2 cos 3t - cos 4t: (N, 2)."""
    _check_t(t)
    x = 16 * torch.sin(t) ** 3
    y = 13 * torch.cos(t) - 5 * torch.cos(2 * t) - 2 * torch.cos(3 * t) - torch.cos(4 * t)
    return torch.stack((x, y), dim=-1)  # (N, 2)


def rose_curve(theta: torch.Tensor, k: int = 5) -> torch.Tensor:
    """The rose r = cos(k theta) in the plane: (N, 2); k petals for odd k, 2k for even k."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    _check_t(theta)
    return polar_to_xy(torch.cos(k * theta), theta)


def lissajous_curve(t: torch.Tensor, a: int = 3, b: int = 2,
                    delta: float = math.pi / 2) -> torch.Tensor:
    """The Lissajous figure x = sin(a t + delta), y = sin(b t): (N, 2)."""
    for name, value in (("a", a), ("b", b)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    delta = _check_number(delta, "delta")
    _check_t(t)
    return torch.stack((torch.sin(a * t + delta), torch.sin(b * t)), dim=-1)  # (N, 2)


def shoelace_area(points: torch.Tensor) -> torch.Tensor:
    """Signed area enclosed by the closed polygon ``points`` (N, 2): positive if anticlockwise."""
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[-1] != 2:
        shape = tuple(points.shape) if isinstance(points, torch.Tensor) else type(points).__name__
        raise ValueError(f"points must be a tensor of shape (N, 2), got {shape}")
    if points.shape[0] < 3:
        raise ValueError(f"a polygon needs at least 3 points, got {points.shape[0]}")
    x, y = points[:, 0], points[:, 1]  # (N,), (N,)
    x_next, y_next = torch.roll(x, -1), torch.roll(y, -1)  # vertex i+1, wrapping to vertex 0
    return 0.5 * (x * y_next - x_next * y).sum()  # () a 0-d tensor
