"""Anti-aliased downsampling (Zhang, 2019) and how to measure a network's shift invariance.

Introduced in lesson 4.2 (``m04-l02``). Subsampling a feature map keeps every ``s``-th value and
folds frequencies above the new Nyquist limit onto lower ones (aliasing), so the output of a
strided layer changes with a one-pixel shift of its input. :class:`BlurPool2d` low-passes each
channel with a binomial filter before it subsamples. :func:`build_downsampling_net` builds one
small CNN with a choice of downsampling (stride, max-pool, avg-pool, blur-pool), and
:func:`prediction_consistency` and :func:`feature_similarity` measure what a shift changes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from neuralarch.config import ArchConfig

PAD_MODES = ("reflect", "replicate", "zeros")
Downsampling = Literal["stride", "max", "avg", "blur", "maxblur"]


def binomial_filter(size: int) -> torch.Tensor:
    """The normalised 1-D binomial filter with ``size`` taps, e.g. [1, 2, 1] / 4 for 3: (size,)."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an int >= 1 (1 means no blur), got {size!r}")
    taps = torch.tensor([math.comb(size - 1, k) for k in range(size)], dtype=torch.float64)
    return taps / taps.sum()


class BlurPool2d(nn.Module):
    """Low-pass filter every channel with a binomial kernel, then keep every ``stride``-th pixel."""

    def __init__(self, channels: int, filter_size: int = 3, stride: int = 2,
                 pad_mode: str = "reflect") -> None:
        super().__init__()
        if channels < 1 or stride < 1:
            raise ValueError(f"channels and stride must be >= 1, got {channels} and {stride}")
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
        taps = binomial_filter(filter_size)  # (k,)
        kernel = torch.outer(taps, taps)  # (k, k), sums to 1: a weighted average
        # a constant, not a parameter: one copy of the kernel per channel, (C, 1, k, k)
        self.register_buffer("kernel", kernel.float().expand(channels, 1, -1, -1).clone(),
                             persistent=False)
        self.channels, self.filter_size, self.stride, self.pad_mode = (channels, filter_size,
                                                                       stride, pad_mode)
        self.padding = ((filter_size - 1) // 2, filter_size // 2)  # before, after (Zhang's code)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.channels:
            raise ValueError(f"expected input (N, {self.channels}, H, W), got {tuple(x.shape)}")
        before, after = self.padding
        mode = "constant" if self.pad_mode == "zeros" else self.pad_mode
        x = F.pad(x, (before, after, before, after), mode=mode)  # (N, C, H + k - 1, W + k - 1)
        return F.conv2d(x, self.kernel.to(x.dtype), stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return (f"{self.channels}, filter_size={self.filter_size}, stride={self.stride}, "
                f"pad_mode={self.pad_mode!r}")


class DownsamplingNetConfig(ArchConfig):
    """A small CNN: a stem, then one block per width that halves the resolution, pool, head."""

    in_channels: int = Field(1, gt=0, description="image channels")
    num_classes: int = Field(10, gt=0, description="outputs of the classifier head")
    widths: tuple[int, ...] = Field((8, 16, 32), description="channels of each halving block")
    downsample: Downsampling = Field(
        "stride", description="stride: strided conv; max/avg: conv then 2x2 pool; blur: conv then "
                              "BlurPool; maxblur: conv, 2x2 max-pool with stride 1, BlurPool")
    filter_size: int = Field(3, ge=1, le=7, description="taps of the binomial blur filter")

    @field_validator("widths")
    @classmethod
    def _positive(cls, widths: tuple[int, ...]) -> tuple[int, ...]:
        if not widths or min(widths) <= 0:
            raise ValueError(f"widths must be non-empty and > 0, got {widths}")
        return widths


def downsampling_block(in_channels: int, out_channels: int, kind: Downsampling,
                       filter_size: int = 3) -> nn.Sequential:
    """3x3 conv, BatchNorm, ReLU, halving the resolution in the way ``kind`` names."""
    stride = 2 if kind == "stride" else 1
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False),
                               nn.BatchNorm2d(out_channels), nn.ReLU()]
    if kind == "max":
        layers.append(nn.MaxPool2d(2))
    elif kind == "avg":
        layers.append(nn.AvgPool2d(2))
    elif kind == "maxblur":  # take the max densely, then blur and subsample
        layers += [nn.MaxPool2d(2, stride=1), BlurPool2d(out_channels, filter_size, 2)]
    elif kind == "blur":
        layers.append(BlurPool2d(out_channels, filter_size, 2))
    elif kind != "stride":
        raise ValueError(f"kind must be one of stride, max, avg, blur, maxblur; got {kind!r}")
    return nn.Sequential(*layers)


def build_downsampling_net(config: DownsamplingNetConfig | None = None) -> nn.Sequential:
    """The CNN a :class:`DownsamplingNetConfig` describes, as an ``nn.Sequential``."""
    config = config or DownsamplingNetConfig()
    width = config.widths[0]
    layers: list[nn.Module] = [nn.Conv2d(config.in_channels, width, 3, 1, 1, bias=False),
                               nn.BatchNorm2d(width), nn.ReLU()]
    for out_width in config.widths:
        layers.append(downsampling_block(width, out_width, config.downsample, config.filter_size))
        width = out_width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, config.num_classes)]
    return nn.Sequential(*layers)


def shift_images(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """Move images (N, C, H, W) ``dy`` pixels down and ``dx`` right, wrapping around the border.

    On MNIST, whose 28x28 digits have a blank margin of about 4 pixels, a circular shift of up
    to that margin equals a true translation; it loses no content and is exactly invertible.
    """
    if x.ndim != 4:
        raise ValueError(f"expected images (N, C, H, W), got shape {tuple(x.shape)}")
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def _in_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
                batch_size: int) -> torch.Tensor:
    return torch.cat([fn(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def _check_shifts(images: torch.Tensor, shifts: Sequence[tuple[int, int]]) -> None:
    if images.ndim != 4 or len(images) == 0:
        raise ValueError(f"images must be a non-empty batch (N, C, H, W), got "
                         f"{tuple(images.shape)}")
    if not shifts:
        raise ValueError("shifts must list at least one (dy, dx) pair")


def prediction_consistency(model: nn.Module, images: torch.Tensor,
                           shifts: Sequence[tuple[int, int]], batch_size: int = 500
                           ) -> torch.Tensor:
    """Per shift, the fraction of ``images`` whose predicted class the shift leaves unchanged."""
    _check_shifts(images, shifts)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        reference = _in_batches(model, images, batch_size).argmax(-1)  # (N,)
        same = [(_in_batches(model, shift_images(images, dy, dx), batch_size).argmax(-1)
                 == reference).float().mean() for dy, dx in shifts]
    model.train(was_training)
    return torch.stack(same)  # (len(shifts),)


def feature_similarity(fn: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
                       shifts: Sequence[tuple[int, int]], batch_size: int = 500) -> torch.Tensor:
    """Per shift, the mean cosine similarity of ``fn(images)`` and ``fn(shifted images)``.

    ``fn`` maps a batch to features (N, ...), e.g. a ResNet's pooled ``embed``; the features
    are flattened per image. Call it on a model in eval mode.
    """
    _check_shifts(images, shifts)
    with torch.no_grad():
        reference = _in_batches(fn, images, batch_size).flatten(1)  # (N, D)
        sims = [F.cosine_similarity(_in_batches(fn, shift_images(images, dy, dx), batch_size)
                                    .flatten(1), reference, dim=1).mean() for dy, dx in shifts]
    return torch.stack(sims)  # (len(shifts),)
