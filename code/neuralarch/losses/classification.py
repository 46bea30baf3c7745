"""Classification losses from scratch, computed from logits with the log-sum-exp trick.

Introduced in lesson 2.2 (``m02-l02``). Binary cross-entropy is the Bernoulli negative
log-likelihood, cross-entropy the categorical one, and focal loss down-weights the easy examples
that swamp an imbalanced problem. Everything is computed from logits through :func:`logsumexp`,
so logits of ±1e4 give finite losses and the same gradients as ``torch.nn.functional``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from neuralarch.losses.regression import check_reduction, check_same_shape, reduce_loss


def logsumexp(x: torch.Tensor, dim: int = -1, keepdim: bool = False) -> torch.Tensor:
    """``log(sum(exp(x)))`` along ``dim`` without overflow: shift by the maximum first.

    Equals ``torch.logsumexp``. The shift ``m`` cancels exactly, so it is detached: the gradient
    is then ``exp(x - m) / sum(exp(x - m))``, the softmax, computed from numbers <= 1.
    """
    m = x.detach().amax(dim=dim, keepdim=True)  # (..., 1, ...) the largest entry
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))  # all -inf (or +inf): no shift
    out = m + torch.log(torch.exp(x - m).sum(dim=dim, keepdim=True))  # every exp(.) is <= 1
    return out if keepdim else out.squeeze(dim)


def log_softmax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Log-probabilities ``x - logsumexp(x)`` along ``dim``; equals ``torch.log_softmax``."""
    return x - logsumexp(x, dim=dim, keepdim=True)


def log1p_exp(z: torch.Tensor) -> torch.Tensor:
    """Softplus ``log(1 + exp(z))`` as the two-term log-sum-exp of ``(0, z)``; finite for any z."""
    m = z.detach().clamp(min=0)  # the larger of the two terms 0 and z
    return m + torch.log(torch.exp(-m) + torch.exp(z - m))  # both exponents are <= 0


def _check_broadcasts(name: str, value: torch.Tensor | None, shape: torch.Size) -> None:
    if value is None:
        return
    try:
        ok = torch.broadcast_shapes(value.shape, shape) == shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(
            f"{name} of shape {tuple(value.shape)} must broadcast to the logits' shape "
            f"{tuple(shape)}"
        )


def _check_float_target(target: torch.Tensor) -> None:
    if not target.is_floating_point():
        raise ValueError(
            f"target must be a floating-point tensor of 0/1 labels or probabilities, got dtype "
            f"{target.dtype}; use target.float()"
        )


def binary_cross_entropy_with_logits(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    pos_weight: torch.Tensor | None = None,
    reduction: str = "mean",
) -> torch.Tensor:
    """Bernoulli negative log-likelihood from logits; equals ``F.binary_cross_entropy_with_logits``.

    ``-log sigmoid(x) = log(1 + e^-x)`` and ``-log(1 - sigmoid(x)) = log(1 + e^x)``, both computed
    with :func:`log1p_exp`. ``pos_weight`` multiplies the positive term (per class, broadcast along
    the last dimension); ``weight`` multiplies every element's loss.
    """
    check_same_shape(logits, target, names=("logits", "target"))
    check_reduction(reduction)
    _check_float_target(target)
    _check_broadcasts("weight", weight, logits.shape)
    _check_broadcasts("pos_weight", pos_weight, logits.shape)
    positive = log1p_exp(-logits)  # -log p,       the loss if the label is 1
    negative = log1p_exp(logits)  # -log (1 - p), the loss if the label is 0
    if pos_weight is not None:
        positive = pos_weight * positive
    loss = target * positive + (1 - target) * negative
    if weight is not None:
        loss = weight * loss
    return reduce_loss(loss, reduction)


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Categorical negative log-likelihood from logits; equals ``F.cross_entropy``.

    ``logits`` is ``(N, C)`` or ``(N, C, d1, ...)`` and ``target`` holds class indices of shape
    ``(N,)`` or ``(N, d1, ...)``. Targets equal to ``ignore_index`` contribute nothing; ``weight``
    (shape ``(C,)``) weights each class, and the mean divides by the total weight of the counted
    targets, as PyTorch does. ``label_smoothing`` mixes the one-hot target with the uniform one.
    """
    check_reduction(reduction)
    if logits.ndim < 2:
        raise ValueError(
            f"logits must have shape (N, C) or (N, C, d1, ...), got {tuple(logits.shape)}; "
            f"add a batch dimension with logits.unsqueeze(0)"
        )
    n_classes = logits.shape[1]
    expected = logits.shape[:1] + logits.shape[2:]
    if target.shape != expected:
        raise ValueError(
            f"target must have shape {tuple(expected)} for logits of shape "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )
    if target.is_floating_point() or target.dtype == torch.bool:
        raise ValueError(f"target must hold integer class indices, got dtype {target.dtype}")
    counted = target != ignore_index  # (N, *)
    bad = target[counted & ((target < 0) | (target >= n_classes))]
    if bad.numel():
        raise ValueError(
            f"target values must be in [0, {n_classes}) or equal ignore_index={ignore_index}, "
            f"got {bad[0].item()}"
        )
    if weight is not None and weight.shape != (n_classes,):
        raise ValueError(f"weight must have shape ({n_classes},), got {tuple(weight.shape)}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing!r}")

    log_probs = log_softmax(logits, dim=1)  # (N, C, *)
    safe_target = torch.where(counted, target, 0).long()  # ignored entries read class 0 ...
    nll = -log_probs.gather(1, safe_target.unsqueeze(1)).squeeze(1)  # (N, *) -log p[target]
    if weight is None:
        weight = torch.ones(n_classes, dtype=logits.dtype, device=logits.device)
    target_weight = torch.where(counted, weight[safe_target], 0)  # ... and get weight 0
    loss = (1 - label_smoothing) * target_weight * nll  # (N, *)
    if label_smoothing > 0:
        class_weight = weight.view(1, n_classes, *[1] * (logits.ndim - 2))  # (1, C, 1, ...)
        uniform = -(class_weight * log_probs).sum(dim=1)  # (N, *) loss against a uniform target
        loss = loss + label_smoothing / n_classes * torch.where(counted, uniform, 0)
    if reduction == "mean":
        return loss.sum() / target_weight.sum()
    return reduce_loss(loss, reduction)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    gamma: float = 2.0,
    alpha: float | None = 0.25,
    reduction: str = "mean",
) -> torch.Tensor:
    """Binary focal loss ``-alpha_t (1 - p_t)**gamma log p_t`` (Lin et al., 2017) from logits.

    ``p_t`` is the probability the model gives the true label. With ``gamma=0`` and
    ``alpha=None`` this is exactly binary cross-entropy. The factor ``(1 - p_t)**gamma`` is
    computed in log space, so gradients stay finite even where ``p_t`` rounds to 1.
    """
    check_same_shape(logits, target, names=("logits", "target"))
    check_reduction(reduction)
    _check_float_target(target)
    if ((target != 0) & (target != 1)).any():
        raise ValueError("focal_loss needs hard labels: every target value must be 0 or 1")
    if not isinstance(gamma, int | float) or isinstance(gamma, bool) or not gamma >= 0:
        raise ValueError(f"gamma must be a number >= 0, got {gamma!r}")
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be None or in [0, 1], got {alpha!r}")
    signed = torch.where(target > 0.5, logits, -logits)  # z, with p_t = sigmoid(z)
    ce = log1p_exp(-signed)  # -log p_t
    modulating = torch.exp(-gamma * log1p_exp(signed))  # (1 - p_t)**gamma = sigmoid(-z)**gamma
    loss = modulating * ce
    if alpha is not None:
        loss = (alpha * target + (1 - alpha) * (1 - target)) * loss  # alpha_t
    return reduce_loss(loss, reduction)


@dataclass
class LinearFit:
    """What :func:`fit_linear_classifier` returns: weights ``(D,)``, bias and per-step losses."""

    weight: torch.Tensor
    bias: float
    losses: list[float]

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``features @ weight + bias`` for features of shape ``(N, D)``."""
        return features @ self.weight + self.bias


def fit_linear_classifier(features: torch.Tensor, labels: torch.Tensor,
                          loss_fn: Callable[..., torch.Tensor], steps: int = 300,
                          lr: float = 0.1) -> LinearFit:
    """Fit a binary logistic model ``x @ w + b`` with full-batch Adam on ``loss_fn(logits, y)``."""
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"features must be (N, D) and labels (N,), got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    like = dict(dtype=features.dtype, device=features.device)
    weight = torch.zeros(features.shape[1], **like, requires_grad=True)  # (D,)
    bias = torch.zeros((), **like, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn(features @ weight + bias, labels)  # logits (N,)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return LinearFit(weight=weight.detach(), bias=bias.item(), losses=losses)
