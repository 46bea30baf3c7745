"""Normalisation layers from scratch: BatchNorm (with running statistics), LayerNorm and RMSNorm.

Introduced in lesson 3.4 (``m03-l04``). Each class matches its ``torch.nn`` namesake in outputs,
gradients, running statistics and ``state_dict`` layout, so weights load into either one. The
statistics are written with plain tensor operations and autograd supplies the backward pass.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import torch
from torch import nn

NORM_KINDS = ("none", "batch", "layer", "rms")
_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _check_positive_int(value: object, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _check_eps(eps: object, allow_none: bool = False) -> float | None:
    if eps is None and allow_none:
        return None
    if not isinstance(eps, numbers.Real) or isinstance(eps, bool) or not eps >= 0:
        allowed = "a number >= 0 or None" if allow_none else "a number >= 0"
        raise ValueError(f"eps must be {allowed}, got {eps!r}")
    return float(eps)


def _as_shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    """``normalized_shape`` as a non-empty tuple of positive ints (an int means one axis)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else normalized_shape
    if not isinstance(shape, Sequence) or len(shape) == 0 or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in shape):
        raise ValueError(f"normalized_shape must be an int >= 1 or a non-empty sequence of them, "
                         f"got {normalized_shape!r}")
    return tuple(shape)


def _check_trailing(x: torch.Tensor, shape: tuple[int, ...], layer: str) -> None:
    if x.dim() < len(shape) or tuple(x.shape[x.dim() - len(shape):]) != shape:
        raise ValueError(f"{layer} normalises over trailing dimensions {list(shape)}, but the "
                         f"input has shape {list(x.shape)}; its last {len(shape)} dimension(s) "
                         f"must equal normalized_shape")


class _BatchNorm(nn.Module):
    """BatchNorm over every axis except the channels (axis 1); subclasses fix the input rank."""

    _version = 2  # the state_dict version of torch's BatchNorm, which has num_batches_tracked
    input_dims: tuple[int, ...] = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, *, bias: bool = True,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.num_features = _check_positive_int(num_features, "num_features")
        self.eps = _check_eps(eps)
        if momentum is not None and (isinstance(momentum, bool) or not isinstance(
                momentum, numbers.Real) or not 0 <= momentum <= 1):
            raise ValueError(f"momentum must be a number in [0, 1] or None (cumulative "
                             f"average), got {momentum!r}")
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(num_features, **factory)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features, **factory)) if affine and bias \
            else None
        if track_running_stats:
            self.register_buffer("running_mean", torch.zeros(num_features, **factory))
            self.register_buffer("running_var", torch.ones(num_features, **factory))
            self.register_buffer("num_batches_tracked",
                                 torch.tensor(0, dtype=torch.long, device=device))
        else:  # registered as None, as in torch, so the attributes exist but are not saved
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        """Forget the running statistics: mean 0, variance 1, no batches seen."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics and the affine parameters (gain 1, shift 0)."""
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each channel with batch statistics (training) or running ones (eval)."""
        if x.dim() not in self.input_dims:
            ranks = " or ".join(f"{d}D" for d in self.input_dims)
            raise ValueError(f"{type(self).__name__} expects a {ranks} input (N, C, ...), got a "
                             f"{x.dim()}D input of shape {list(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}) got an input with "
                             f"{x.shape[1]} channels on axis 1 (shape {list(x.shape)})")
        dims = [0, *range(2, x.dim())]  # every axis but the channels: N and the spatial ones
        shape = [1, -1] + [1] * (x.dim() - 2)  # broadcast a (C,) vector over (N, C, ...)
        if self.training or self.running_mean is None:  # statistics of this batch
            n = x.numel() // x.shape[1]  # values per channel
            if n < 2:
                raise ValueError(f"{type(self).__name__} needs more than 1 value per channel to "
                                 f"compute batch statistics, got input shape {list(x.shape)}; "
                                 f"use a larger batch or call .eval()")
            var, mean = torch.var_mean(x, dim=dims, correction=0)  # (C,), (C,): biased
            if self.training and self.track_running_stats:
                self._update_running_stats(mean.detach(), var.detach(), n)
        else:  # eval: the population estimates gathered during training
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)  # (N, C, ...)
        if self.weight is not None:
            x_hat = x_hat * self.weight.view(shape)
        if self.bias is not None:
            x_hat = x_hat + self.bias.view(shape)
        return x_hat

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        self.num_batches_tracked += 1
        if self.momentum is None:  # cumulative average: the t-th batch gets weight 1/t
            factor = 1.0 / float(self.num_batches_tracked)
        else:  # exponential moving average
            factor = float(self.momentum)
        unbiased = var * (n / (n - 1))  # the running variance estimates the population's
        self.running_mean.mul_(1 - factor).add_(factor * mean)
        self.running_var.mul_(1 - factor).add_(factor * unbiased)

    def extra_repr(self) -> str:
        """The constructor arguments, printed as torch prints them."""
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """BatchNorm over (N, C) or (N, C, L) inputs, equal to ``torch.nn.BatchNorm1d``."""

    input_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """BatchNorm over (N, C, H, W) inputs, equal to ``torch.nn.BatchNorm2d``."""

    input_dims = (4,)


class LayerNorm(nn.Module):
    """Normalise each example over its trailing ``normalized_shape`` axes, like ``nn.LayerNorm``."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = _check_eps(eps)
        self.elementwise_affine = elementwise_affine
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.ones(self.normalized_shape, **factory)) \
            if elementwise_affine else None
        self.bias = nn.Parameter(torch.zeros(self.normalized_shape, **factory)) \
            if elementwise_affine and bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Subtract each example's mean and divide by its standard deviation, then scale."""
        _check_trailing(x, self.normalized_shape, "LayerNorm")
        dims = tuple(range(-len(self.normalized_shape), 0))  # e.g. (-1,) for (B, T, C)
        xf = x.float() if x.dtype in _LOW_PRECISION else x  # statistics in float32 at least
        var, mean = torch.var_mean(xf, dim=dims, correction=0, keepdim=True)  # (..., 1, 1)
        y = (xf - mean) * torch.rsqrt(var + self.eps)  # same shape as x
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        """The constructor arguments, printed as torch prints them."""
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")


class RMSNorm(nn.Module):
    """Divide each example by its root mean square over ``normalized_shape``, like ``nn.RMSNorm``.

    ``eps=None`` uses the machine epsilon of the computation type, as torch does: float32's for
    float16, bfloat16 and float32 inputs, float64's for float64 inputs.
    """

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.normalized_shape = _as_shape(normalized_shape)
        self.eps = _check_eps(eps, allow_none=True)
        self.elementwise_affine = elementwise_affine
        self.weight = nn.Parameter(torch.ones(self.normalized_shape, device=device, dtype=dtype)) \
            if elementwise_affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Scale each example to unit root mean square (no centring), then apply the gain."""
        _check_trailing(x, self.normalized_shape, "RMSNorm")
        dims = tuple(range(-len(self.normalized_shape), 0))
        xf = x.float() if x.dtype in _LOW_PRECISION else x
        eps = torch.finfo(xf.dtype).eps if self.eps is None else self.eps
        y = xf * torch.rsqrt(xf.pow(2).mean(dim=dims, keepdim=True) + eps)  # same shape as x
        if self.weight is not None:
            y = y * self.weight
        return y.to(x.dtype)

    def extra_repr(self) -> str:
        """The constructor arguments, printed as torch prints them."""
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}")


def make_norm(kind: str, num_features: int) -> nn.Module:
    """Return the normalisation layer ``kind`` ("none", "batch", "layer", "rms") for a width."""
    if kind not in NORM_KINDS:
        raise ValueError(f"kind must be one of {list(NORM_KINDS)}, got {kind!r}")
    if kind == "batch":
        return BatchNorm1d(num_features)
    if kind == "layer":
        return LayerNorm(num_features)
    if kind == "rms":
        return RMSNorm(num_features)
    return nn.Identity()


def build_normalized_mlp(norm: str, in_features: int = 784, hidden: Sequence[int] = (128, 128),
                         n_classes: int = 10) -> nn.Sequential:
    """Return an MLP: flatten, then (Linear, norm, ReLU) per hidden width, then a Linear head.

    The Linear before a BatchNorm has no bias: BatchNorm subtracts the per-feature batch mean,
    which removes any constant the bias adds.
    """
    if norm not in NORM_KINDS:
        raise ValueError(f"norm must be one of {list(NORM_KINDS)}, got {norm!r}")
    _check_positive_int(in_features, "in_features")
    _check_positive_int(n_classes, "n_classes")
    if isinstance(hidden, int) or len(hidden) == 0:
        raise ValueError(f"hidden must be a non-empty sequence of widths, got {hidden!r}")
    layers: list[nn.Module] = [nn.Flatten()]  # (B, 1, 28, 28) -> (B, 784)
    width = in_features
    for i, h in enumerate(hidden):
        _check_positive_int(h, f"hidden[{i}]")
        layers += [nn.Linear(width, h, bias=norm != "batch"), make_norm(norm, h), nn.ReLU()]
        width = h
    layers.append(nn.Linear(width, n_classes))  # (B, n_classes) logits
    return nn.Sequential(*layers)
