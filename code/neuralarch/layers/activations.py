"""Smooth gated activations from scratch: GELU (exact and tanh approximation) and SiLU (Swish).

Introduced in lesson 3.2 (``m03-l02``). Both multiply the input by a soft gate in [0, 1]: the
standard normal CDF for GELU, the logistic sigmoid for SiLU. Each equals its ``torch.nn``
counterpart, forward and backward.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_APPROXIMATIONS = ("none", "tanh")


def _check_approximate(approximate: object) -> str:
    if approximate not in _APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {list(_APPROXIMATIONS)}, "
                         f"got {approximate!r}")
    return approximate


def gelu(x: torch.Tensor, approximate: str = "none") -> torch.Tensor:
    """GELU: ``x * Phi(x)`` with the normal CDF Phi, exact (erf) or with the tanh approximation."""
    _check_approximate(approximate)
    if approximate == "tanh":
        inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)
        return 0.5 * x * (1.0 + torch.tanh(inner))
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))  # Phi(x) = (1 + erf(x / sqrt 2)) / 2


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU (Swish with beta = 1): ``x * sigmoid(x)``."""
    # torch.sigmoid, not 1 / (1 + exp(-x)): exp(-x) overflows for x < -88 in float32 and the
    # gradient of the naive formula is then inf / inf = nan.
    return x * torch.sigmoid(x)


class GELU(nn.Module):
    """A from-scratch ``nn.GELU``; ``approximate`` is ``"none"`` (erf) or ``"tanh"``."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        self.approximate = _check_approximate(approximate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply :func:`gelu` elementwise."""
        return gelu(x, self.approximate)

    def extra_repr(self) -> str:
        """Show the approximation in ``print(module)``."""
        return f"approximate={self.approximate!r}"


class SiLU(nn.Module):
    """A from-scratch ``nn.SiLU``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply :func:`silu` elementwise."""
        return silu(x)
