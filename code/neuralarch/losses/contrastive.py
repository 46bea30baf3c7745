"""Contrastive losses from scratch: InfoNCE (CPC) and NT-Xent (SimCLR), plus a two-view toy.

Introduced in lesson 2.2 (``m02-l02``). InfoNCE is cross-entropy over a similarity matrix: row
``i`` must pick its own positive ``key[i]`` out of all the keys in the batch. Both losses reuse
:func:`neuralarch.losses.classification.cross_entropy`, so they inherit its log-sum-exp stability
and are checked against ``F.cross_entropy`` on the same similarity logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from neuralarch.losses.classification import cross_entropy
from neuralarch.losses.regression import check_reduction


def l2_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Scale vectors to unit length along ``dim``; equals ``F.normalize(x, dim=dim)``."""
    return x / x.norm(dim=dim, keepdim=True).clamp_min(eps)


def _check_pair(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{names[0]} and {names[1]} must be (N, D) and (M, D) with the same D, got "
            f"{tuple(a.shape)} and {tuple(b.shape)}"
        )


def _check_temperature(temperature: float) -> None:
    if not isinstance(temperature, int | float) or not temperature > 0:
        raise ValueError(f"temperature must be a number > 0, got {temperature!r}")


def similarity_logits(query: torch.Tensor, key: torch.Tensor,
                      temperature: float = 0.1) -> torch.Tensor:
    """Cosine similarities of every query with every key, divided by ``temperature``: (N, M)."""
    _check_pair(query, key, ("query", "key"))
    _check_temperature(temperature)
    return l2_normalize(query) @ l2_normalize(key).T / temperature  # (N, D) @ (D, M) -> (N, M)


def info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float = 0.1,
             reduction: str = "mean") -> torch.Tensor:
    """InfoNCE: ``key[i]`` is the positive for ``query[i]``; every other key is a negative.

    ``query`` is ``(N, D)`` and ``key`` is ``(M, D)`` with ``M >= N``; keys past the first ``N``
    are extra negatives (a memory bank). The loss is ``cross_entropy(logits, arange(N))`` on the
    cosine-similarity logits; its value at chance level is ``log M``.
    """
    check_reduction(reduction)
    _check_pair(query, key, ("query", "key"))
    if key.shape[0] < query.shape[0]:
        raise ValueError(
            f"key needs at least as many rows as query (one positive per query), got "
            f"{key.shape[0]} keys for {query.shape[0]} queries"
        )
    logits = similarity_logits(query, key, temperature)  # (N, M)
    positives = torch.arange(query.shape[0], device=query.device)  # (N,) the diagonal
    return cross_entropy(logits, positives, reduction=reduction)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5,
            reduction: str = "mean") -> torch.Tensor:
    """SimCLR's NT-Xent: each of the 2N views must find its partner among the other 2N - 1.

    ``z1[i]`` and ``z2[i]`` are two views of example ``i``. Row ``i`` of the (2N, 2N) similarity
    matrix has its positive at ``i + N`` (mod 2N); its own entry is masked with ``-inf``.
    """
    check_reduction(reduction)
    _check_pair(z1, z2, ("z1", "z2"))
    if z1.shape != z2.shape:
        raise ValueError(f"z1 and z2 must have the same shape, got {tuple(z1.shape)} and "
                         f"{tuple(z2.shape)}")
    n = z1.shape[0]
    z = torch.cat([z1, z2])  # (2N, D)
    logits = similarity_logits(z, z, temperature)  # (2N, 2N)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # a view is not its own positive
    partners = (torch.arange(2 * n, device=z.device) + n) % (2 * n)  # (2N,)
    return cross_entropy(logits, partners, reduction=reduction)


def two_views(signal: torch.Tensor, nuisance_dims: int = 12, noise: float = 0.1,
              nuisance_scale: float = 1.0,
              generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Make two augmented views ``[signal + noise, nuisance]`` of each row of ``signal`` (N, S).

    The "augmentation" jitters the signal slightly and replaces ``nuisance_dims`` extra features
    with fresh random values, so the two views agree on the signal and nothing else.
    """
    if signal.ndim != 2:
        raise ValueError(f"signal must have shape (N, S), got {tuple(signal.shape)}")
    if not isinstance(nuisance_dims, int) or nuisance_dims < 0:
        raise ValueError(f"nuisance_dims must be an int >= 0, got {nuisance_dims!r}")
    n = signal.shape[0]
    draw = partial(torch.randn, generator=generator, dtype=signal.dtype)  # on the CPU generator
    views = []
    for _ in range(2):
        jitter = noise * draw(signal.shape).to(signal.device)  # (N, S)
        nuisance = nuisance_scale * draw(n, nuisance_dims).to(signal.device)  # (N, K)
        views.append(torch.cat([signal + jitter, nuisance], dim=1))  # (N, S + K)
    return views[0], views[1]


def retrieval_accuracy(za: torch.Tensor, zb: torch.Tensor) -> float:
    """Fraction of rows ``i`` whose most cosine-similar row of ``zb`` is ``zb[i]``."""
    _check_pair(za, zb, ("za", "zb"))
    nearest = similarity_logits(za, zb, temperature=1.0).argmax(dim=1)  # (N,)
    return (nearest == torch.arange(za.shape[0], device=za.device)).float().mean().item()


@dataclass
class ContrastiveRun:
    """What :func:`train_contrastive` returns: the trained encoder and its per-step losses."""

    encoder: nn.Module
    losses: list[float]


def train_contrastive(encoder: nn.Module, signals: torch.Tensor, steps: int = 300,
                      batch_size: int = 128, temperature: float = 0.1, lr: float = 1e-2,
                      seed: int = 0, **view_kwargs: float) -> ContrastiveRun:
    """Train ``encoder`` with InfoNCE on pairs of fresh :func:`two_views` of sampled signals."""
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    if not 1 < batch_size <= signals.shape[0]:
        raise ValueError(
            f"batch_size must be in [2, {signals.shape[0]}] (the number of signals), "
            f"got {batch_size!r}"
        )
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(encoder.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        rows = torch.randperm(signals.shape[0], generator=generator)[:batch_size]  # on the CPU
        view_a, view_b = two_views(signals[rows], generator=generator, **view_kwargs)
        loss = info_nce(encoder(view_a), encoder(view_b), temperature)  # (B, E) vs (B, E)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return ContrastiveRun(encoder=encoder, losses=losses)
