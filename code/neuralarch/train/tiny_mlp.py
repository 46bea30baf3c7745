"""A tiny MLP trained with SGD in which every random choice derives from one seed.

Introduced in lesson 1.5 (``m01-l05``) to prove reproducibility rather than hope for it: the
weight initialisation and dropout masks come from the stream ``"model"``, the shuffle order and
the workers' randomness from the stream ``"data"`` (see :func:`~neuralarch.repro.derive_seed`),
and two runs with the same seed end with the same :func:`~neuralarch.repro.state_fingerprint`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from neuralarch.layers.mlp import MLPConfig, build_mlp
from neuralarch.repro import check_seed, derive_seed, make_loader, state_fingerprint

TINY_MLP = MLPConfig(hidden_sizes=(64,), dropout=0.1, flatten=True)
"""The default model of :func:`train_tiny_mlp`: 784–64–10 with dropout 0.1, for MNIST images."""


@dataclass
class TrainRun:
    """What :func:`train_tiny_mlp` returns: the trained model and its per-step training losses."""

    model: nn.Module
    losses: list[float]

    @property
    def fingerprint(self) -> str:
        """The :func:`~neuralarch.repro.state_fingerprint` of the trained weights."""
        return state_fingerprint(self.model)


def train_tiny_mlp(dataset: Dataset, seed: int, *, mlp: MLPConfig = TINY_MLP, epochs: int = 1,
                   batch_size: int = 64, lr: float = 0.05, momentum: float = 0.9,
                   num_workers: int = 0, device: str | torch.device = "cpu") -> TrainRun:
    """Train an MLP with SGD where init, dropout, data order and workers all derive from ``seed``.

    The global torch RNG is forked, so the caller's random state is the same afterwards.
    """
    check_seed(seed)
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be an int >= 1, got {epochs!r}")
    if not lr > 0:
        raise ValueError(f"lr must be a number > 0, got {lr!r}")
    device = torch.device(device)
    cuda_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(derive_seed(seed, "model"))  # weight init and dropout masks
        model = build_mlp(mlp).to(device)
        loader = make_loader(dataset, batch_size, derive_seed(seed, "data"), num_workers)
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        losses: list[float] = []
        model.train()
        for _ in range(epochs):
            for x, y in loader:
                x, y = x.to(device), y.to(device)  # (B, 1, 28, 28), (B,)
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
    model.eval()
    return TrainRun(model=model, losses=losses)
