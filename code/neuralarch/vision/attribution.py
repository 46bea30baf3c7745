"""Gradient attribution methods: saliency, gradient × input, SmoothGrad, integrated gradients.

Introduced in the interpretability lesson (``extra-interp``). Each method answers "which input
values does the score of one class depend on?" for a batch ``x`` (N, ...) and returns a map with
the shape of ``x``. ``target`` is one class index for every example, an (N,) tensor of indices,
or None for the predicted class. Every method runs the model in evaluation mode (so BatchNorm does
not mix the examples of a batch) and restores the modes of all submodules afterwards; parameter
gradients (``.grad``) are never touched. Grad-CAM lives in :mod:`neuralarch.vision.gradcam`, the
sanity checks in :mod:`neuralarch.vision.attribution_checks`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Target = int | torch.Tensor | None
SALIENCY_KINDS = ("abs", "gradient", "grad_x_input")
IG_METHODS = ("riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid",
              "gauss_legendre")


def check_inputs(model: nn.Module, x: torch.Tensor) -> None:
    """Raise a ValueError unless ``model`` is a module and ``x`` a non-empty float batch."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim < 2 or not len(x):
        detail = (f"shape {tuple(x.shape)}, dtype {x.dtype}" if isinstance(x, torch.Tensor)
                  else type(x).__name__)
        raise ValueError(f"x must be a non-empty float batch (N, ...), got {detail}")


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the block, then restore every submodule's own mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def select_scores(logits: torch.Tensor, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the score of the target class of each example (N,) and the classes (N,)."""
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits (N, K), got shape {tuple(logits.shape)}")
    n, k = logits.shape
    if target is None:
        classes = logits.detach().argmax(dim=1)
    elif isinstance(target, int) and not isinstance(target, bool):
        classes = torch.full((n,), target, dtype=torch.long, device=logits.device)
    elif isinstance(target, torch.Tensor) and not target.is_floating_point() \
            and target.dtype != torch.bool and target.shape == (n,):
        classes = target.to(device=logits.device, dtype=torch.long)
    else:
        shown = tuple(target.shape) if isinstance(target, torch.Tensor) else repr(target)
        raise ValueError(f"target must be an int, an integer tensor of shape ({n},) or None, "
                         f"got {shown}")
    if classes.numel() and (classes.min() < 0 or classes.max() >= k):
        raise ValueError(f"target classes must lie in [0, {k - 1}] for a model with {k} "
                         f"outputs, got {classes.unique().tolist()}")
    return logits.gather(1, classes[:, None])[:, 0], classes


def input_gradient(model: nn.Module, x: torch.Tensor,
                   target: Target = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the gradient of each example's target logit w.r.t. its input, and the classes."""
    check_inputs(model, x)
    with evaluation_mode(model), torch.enable_grad():
        x = x.detach().requires_grad_(True)
        scores, classes = select_scores(model(x), target)  # (N,)
        # the examples are independent in eval mode: d(sum)/dx_n = d(score_n)/dx_n
        (grad,) = torch.autograd.grad(scores.sum(), x)
    return grad, classes  # (N, ...), (N,)


def _check_kind(kind: str) -> None:
    if kind not in SALIENCY_KINDS:
        raise ValueError(f"kind must be one of {SALIENCY_KINDS}, got {kind!r}")


def saliency(model: nn.Module, x: torch.Tensor, target: Target = None,
             kind: str = "abs") -> torch.Tensor:
    """Return a gradient map: ``"abs"`` ``|dy/dx|``, ``"gradient"`` or ``"grad_x_input"``."""
    _check_kind(kind)
    grad, _ = input_gradient(model, x, target)
    if kind == "abs":
        return grad.abs()
    return grad if kind == "gradient" else grad * x.detach()


def smoothgrad(model: nn.Module, x: torch.Tensor, target: Target = None, samples: int = 25,
               noise: float = 0.15, generator: torch.Generator | None = None,
               kind: str = "abs") -> torch.Tensor:
    """Return the average of ``saliency(kind)`` over ``samples`` noisy copies of ``x``.

    The noise is Gaussian with standard deviation ``noise`` times each example's value range
    (max - min), as in Smilkov et al. (2017). The target class is fixed on the clean input, so a
    noisy copy that the model misclassifies still explains the same class.
    """
    check_inputs(model, x)
    _check_kind(kind)
    if not isinstance(samples, int) or isinstance(samples, bool) or samples < 1:
        raise ValueError(f"samples must be an int >= 1, got {samples!r}")
    if not isinstance(noise, (int, float)) or isinstance(noise, bool) or not noise >= 0:
        raise ValueError(f"noise must be a number >= 0 (a fraction of the value range), "
                         f"got {noise!r}")
    x = x.detach()
    with evaluation_mode(model), torch.no_grad():
        _, classes = select_scores(model(x), target)
    flat = x.flatten(1)
    spread = (flat.max(dim=1).values - flat.min(dim=1).values).view(-1, *[1] * (x.ndim - 1))
    total = torch.zeros_like(x)
    for _ in range(samples):
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device)
        noisy = x + noise * spread * eps  # (N, ...)
        total += saliency(model, noisy, classes, kind)
    return total / samples


def path_quadrature(steps: int, method: str = "riemann_trapezoid"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the points alpha (steps,) and weights of a quadrature rule on [0, 1], float64."""
    if method not in IG_METHODS:
        raise ValueError(f"method must be one of {IG_METHODS}, got {method!r}")
    minimum = 2 if method == "riemann_trapezoid" else 1
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < minimum:
        raise ValueError(f"steps must be an int >= {minimum} for {method}, got {steps!r}")
    k = torch.arange(steps, dtype=torch.float64)
    weights = torch.full((steps,), 1.0 / steps, dtype=torch.float64)
    if method == "riemann_left":
        alphas = k / steps
    elif method == "riemann_right":
        alphas = (k + 1) / steps
    elif method == "riemann_middle":
        alphas = (k + 0.5) / steps
    elif method == "riemann_trapezoid":
        alphas = k / (steps - 1)
        weights = torch.full((steps,), 1.0 / (steps - 1), dtype=torch.float64)
        weights[[0, -1]] /= 2
    else:  # Gauss-Legendre nodes on [-1, 1], mapped to [0, 1]
        nodes, gl_weights = np.polynomial.legendre.leggauss(steps)
        alphas, weights = torch.from_numpy((nodes + 1) / 2), torch.from_numpy(gl_weights / 2)
    return alphas, weights


def integrated_gradients(model: nn.Module, x: torch.Tensor, target: Target = None,
                         baseline: torch.Tensor | None = None, steps: int = 32,
                         method: str = "riemann_trapezoid", return_gap: bool = False,
                         batch_size: int = 256) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Return integrated gradients (x - b) * mean of dy/dx along the straight path b -> x.

    ``baseline`` (default zeros) is broadcast to the shape of ``x``. With ``return_gap=True``
    also return the completeness gap (N,): sum of attributions - (y(x) - y(baseline)), which is
    zero for the exact integral and measures the quadrature error. ``batch_size`` caps how many
    path points go through the model at once.
    """
    check_inputs(model, x)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    alphas, weights = path_quadrature(steps, method)
    x = x.detach()
    if baseline is None:
        baseline = torch.zeros_like(x)
    elif not isinstance(baseline, torch.Tensor):
        raise ValueError(f"baseline must be a tensor or None, got {type(baseline).__name__}")
    else:
        try:
            baseline = torch.broadcast_to(baseline.detach().to(x), x.shape)
        except RuntimeError:
            raise ValueError(f"baseline of shape {tuple(baseline.shape)} does not broadcast to "
                             f"x of shape {tuple(x.shape)}") from None
    with evaluation_mode(model), torch.no_grad():
        end_scores, classes = select_scores(model(x), target)  # (N,)
        start_scores, _ = select_scores(model(baseline), classes)
    n, delta = len(x), x - baseline  # (N, ...)
    per_batch = max(1, batch_size // n)  # path points per forward pass
    total = torch.zeros_like(x)
    for start in range(0, steps, per_batch):
        a = alphas[start:start + per_batch].to(x)  # (S,)
        w = weights[start:start + per_batch].to(x)
        shape = (-1, *[1] * x.ndim)
        points = baseline + a.view(shape) * delta  # (S, N, ...)
        grad, _ = input_gradient(model, points.flatten(0, 1), classes.repeat(len(a)))
        total += (w.view(shape) * grad.view(points.shape)).sum(dim=0)
    attributions = delta * total  # (N, ...)
    if not return_gap:
        return attributions
    gap = attributions.flatten(1).sum(dim=1) - (end_scores - start_scores)  # (N,)
    return attributions, gap


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur images (N, C, H, W) with a Gaussian of std ``sigma`` pixels (edges replicated).

    The kernel has radius round(4 sigma), like ``scipy.ndimage.gaussian_filter``; a blurred
    image is a common integrated-gradients baseline that keeps the colours but not the shapes.
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        detail = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a float batch of images (N, C, H, W), got {detail}")
    if not isinstance(sigma, (int, float)) or isinstance(sigma, bool) or not sigma > 0:
        raise ValueError(f"sigma must be a number > 0 (pixels), got {sigma!r}")
    radius = int(4.0 * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()  # (2r + 1,)
    c = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    # separable: blur the rows, then the columns, each channel on its own (groups=C)
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return out

