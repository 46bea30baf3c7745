"""A fully connected layer from scratch: ``y = x W^T + b``, initialised like ``torch.nn.Linear``.

Introduced in lesson 3.2 (``m03-l02``). A layer is two things: the parameters it owns and the
forward computation that uses them; autograd supplies the backward pass.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _check_size(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Apply ``x W^T + b`` to the last dimension of ``x``; the functional form of ``Linear``."""
    if weight.ndim != 2:
        raise ValueError(f"weight must have shape (out_features, in_features), got "
                         f"{tuple(weight.shape)}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x must have shape (..., {weight.shape[1]}) to match weight "
                         f"{tuple(weight.shape)}, got {tuple(x.shape)}")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"bias must have shape ({weight.shape[0]},), got {tuple(bias.shape)}")
    y = x @ weight.T  # (..., in) @ (in, out) -> (..., out)
    if bias is not None:
        y = y + bias  # (out,) broadcasts over every leading dimension
    return y


class Linear(nn.Module):
    """A from-scratch ``nn.Linear``: same parameters, same default initialisation, same output."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None
                 ) -> None:
        super().__init__()
        self.in_features = _check_size(in_features, "in_features")
        self.out_features = _check_size(out_features, "out_features")
        factory = {"device": device, "dtype": dtype}
        # One row per output unit: row j is the template that output j compares the input with.
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory))
        else:
            self.register_parameter("bias", None)  # a known "no bias", as nn.Linear records it
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw weight and bias from U(-1/sqrt(in_features), 1/sqrt(in_features)), like PyTorch."""
        bound = 1.0 / math.sqrt(self.in_features)
        with torch.no_grad():  # initialisation is not part of the graph
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(..., in_features)`` to ``(..., out_features)``."""
        return linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        """Describe the layer in ``print(module)`` the way ``nn.Linear`` does."""
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")
