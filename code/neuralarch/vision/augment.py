"""Data augmentation on image batches, written in torch: shifts, rotations, noise, mixup, cutmix.

Introduced in lesson 4.5 (``m04-l05``). Every function takes a batch ``x`` of shape (N, C, H, W)
and an optional ``torch.Generator``; without one it draws from torch's global generator, which
:func:`neuralarch.train.loop.fit` seeds and checkpoints. Geometric transforms go through
``F.affine_grid`` + ``F.grid_sample``: build, for every output pixel, the input location to read,
then interpolate. Mixup and cutmix also mix the labels, returning soft targets of shape (N, K)
that ``F.cross_entropy`` accepts directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from scipy.special import betaincinv

Batch = tuple[torch.Tensor, torch.Tensor]


def _check_images(x: torch.Tensor) -> None:
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"expected a float batch of images (N, C, H, W), got shape "
                         f"{tuple(x.shape)} and dtype {x.dtype}")


def _uniform(n: int, low: float, high: float, x: torch.Tensor,
             generator: torch.Generator | None) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator, device=x.device,
                                           dtype=x.dtype)


def affine_matrices(degrees: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor,
                    height: int, width: int) -> torch.Tensor:
    """Return the (N, 2, 3) ``theta`` for ``F.affine_grid`` that rotates, scales and shifts.

    ``degrees`` rotates the content counter-clockwise as displayed, ``shift`` (N, 2) moves it by
    (right, down) pixels, ``scale`` > 1 enlarges it, all about the image centre. ``affine_grid``
    maps *output* to *input* coordinates in [-1, 1] units, so the matrix is the inverse of the
    forward transform, with the aspect ratio handled by converting to pixel units and back.
    """
    n = degrees.shape[0] if degrees.ndim == 1 else -1
    if n < 0 or shift.shape != (n, 2) or scale.shape != (n,):
        raise ValueError(f"need degrees (N,), shift (N, 2) and scale (N,) for one batch of N "
                         f"images, got shapes {tuple(degrees.shape)}, {tuple(shift.shape)} and "
                         f"{tuple(scale.shape)}")
    angle = torch.deg2rad(degrees)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale  # inverse map, pixel units
    tx, ty = shift[:, 0], shift[:, 1]
    aspect = height / width  # pixel -> [-1, 1] units differ along x and y for non-square images
    theta = torch.stack([
        torch.stack([cos, -sin * aspect, -2 * (cos * tx - sin * ty) / width], dim=1),
        torch.stack([sin / aspect, cos, -2 * (sin * tx + cos * ty) / height], dim=1),
    ], dim=1)  # (N, 2, 3): input (x, y) as a function of output (x, y, 1)
    return theta


def warp(x: torch.Tensor, theta: torch.Tensor, mode: str = "bilinear") -> torch.Tensor:
    """Resample ``x`` with the affine maps ``theta`` (N, 2, 3); outside pixels become 0."""
    _check_images(x)
    if theta.shape != (x.shape[0], 2, 3):
        raise ValueError(f"theta must have shape ({x.shape[0]}, 2, 3), one affine map per image, "
                         f"got {tuple(theta.shape)}")
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (N, H, W, 2)
    return F.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)


def rotate(x: torch.Tensor, degrees: float | torch.Tensor) -> torch.Tensor:
    """Rotate every image of ``x`` by ``degrees`` (a number or one angle per image)."""
    _check_images(x)
    n = x.shape[0]
    angles = torch.as_tensor(degrees, dtype=x.dtype, device=x.device).expand(n)
    zeros, ones = torch.zeros(n, 2, dtype=x.dtype, device=x.device), angles.new_ones(n)
    return warp(x, affine_matrices(angles, zeros, ones, x.shape[2], x.shape[3]))


def random_affine(x: torch.Tensor, max_degrees: float = 0.0, max_shift: float = 0.0,
                  scale: tuple[float, float] = (1.0, 1.0),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate by U(-max_degrees, max_degrees), shift up to ``max_shift`` px, zoom in ``scale``."""
    _check_images(x)
    if max_degrees < 0 or max_shift < 0 or not 0 < scale[0] <= scale[1]:
        raise ValueError(f"need max_degrees >= 0, max_shift >= 0 and 0 < scale[0] <= scale[1]; "
                         f"got {max_degrees}, {max_shift}, {scale}")
    n = x.shape[0]
    angles = _uniform(n, -max_degrees, max_degrees, x, generator)
    shift = torch.stack([_uniform(n, -max_shift, max_shift, x, generator) for _ in range(2)], 1)
    scales = _uniform(n, scale[0], scale[1], x, generator)
    return warp(x, affine_matrices(angles, shift, scales, x.shape[2], x.shape[3]))


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Zero-pad by ``padding`` pixels, then cut each image back out at a random offset.

    This is a random whole-pixel shift of up to ``padding`` in each direction, with no
    interpolation (the classic CIFAR/MNIST augmentation).
    """
    _check_images(x)
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    n, _, h, w = x.shape
    padded = F.pad(x, (padding,) * 4)
    offsets = torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=x.device)
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # (N, W)
    index = torch.arange(n, device=x.device)[:, None, None]
    return padded.permute(0, 2, 3, 1)[index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator | None = None
                   ) -> torch.Tensor:
    """Add N(0, std²) noise to every pixel."""
    _check_images(x)
    if std < 0:
        raise ValueError(f"std must be >= 0, got {std}")
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + std * noise


def soft_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Return targets as class probabilities (N, K): one-hot for labels, unchanged if soft."""
    if y.ndim == 1 and not y.is_floating_point():
        if y.numel() and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"labels must lie in [0, {num_classes}), got range "
                             f"[{int(y.min())}, {int(y.max())}]")
        return F.one_hot(y.long(), num_classes).float()  # one_hot takes int64 only
    if y.ndim == 2 and y.shape[1] == num_classes and y.is_floating_point():
        return y
    raise ValueError(f"targets must be int labels (N,) or probabilities (N, {num_classes}), "
                     f"got shape {tuple(y.shape)} and dtype {y.dtype}")


def sample_beta(alpha: float, generator: torch.Generator | None = None) -> float:
    """Draw λ ~ Beta(alpha, alpha) by inverting its CDF at a uniform draw from ``generator``."""
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    u = float(torch.rand((), generator=generator))
    return float(betaincinv(alpha, alpha, u))


def mixup(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 0.2,
          generator: torch.Generator | None = None) -> Batch:
    """Blend each example with a random partner: x = λ x_i + (1-λ) x_j, and the same for labels."""
    _check_images(x)
    targets = soft_targets(y, num_classes)
    lam = sample_beta(alpha, generator)
    partner = torch.randperm(x.shape[0], generator=generator).to(x.device)
    mixed = lam * x + (1 - lam) * x[partner]
    return mixed, lam * targets + (1 - lam) * targets[partner]


def cutmix(x: torch.Tensor, y: torch.Tensor, num_classes: int, alpha: float = 1.0,
           generator: torch.Generator | None = None) -> Batch:
    """Paste a random box from a partner image; labels are weighted by the pixels each kept.

    The box's area is about 1-λ of the image (λ ~ Beta(alpha, alpha)); boxes cut by the border
    are smaller, so the label weight is recomputed from the box that was actually pasted.
    """
    _check_images(x)
    targets = soft_targets(y, num_classes)
    n, _, h, w = x.shape
    lam = sample_beta(alpha, generator)
    partner = torch.randperm(n, generator=generator).to(x.device)
    box_h, box_w = round(h * math.sqrt(1 - lam)), round(w * math.sqrt(1 - lam))
    cy, cx = (int(torch.randint(0, size, (), generator=generator)) for size in (h, w))
    top, bottom = max(cy - box_h // 2, 0), min(cy - box_h // 2 + box_h, h)
    left, right = max(cx - box_w // 2, 0), min(cx - box_w // 2 + box_w, w)
    mixed = x.clone()
    mixed[:, :, top:bottom, left:right] = x[partner, :, top:bottom, left:right]
    kept = 1 - (bottom - top) * (right - left) / (h * w)  # fraction of pixels from image i
    return mixed, kept * targets + (1 - kept) * targets[partner]


def compose(*steps: Callable[[torch.Tensor, torch.Tensor], Batch]) -> Callable[..., Batch]:
    """Chain ``(x, y) -> (x, y)`` steps into one ``batch_transform`` for ``fit``."""

    def transform(x: torch.Tensor, y: torch.Tensor) -> Batch:
        for step in steps:
            x, y = step(x, y)
        return x, y

    return transform


def images_only(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[..., Batch]:
    """Lift an image-only transform (e.g. ``lambda x: random_crop(x, 2)``) to ``(x, y)``."""
    return lambda x, y: (fn(x), y)


def grid_of(images: Sequence[torch.Tensor] | torch.Tensor, columns: int) -> torch.Tensor:
    """Tile images (N, C, H, W) into one (C, rows*H, columns*W) picture for plotting."""
    batch = torch.stack(list(images)) if not isinstance(images, torch.Tensor) else images
    n, c, h, w = batch.shape
    rows = math.ceil(n / columns)
    canvas = batch.new_zeros(rows * columns, c, h, w)
    canvas[:n] = batch
    return canvas.view(rows, columns, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, rows * h,
                                                                              columns * w)
