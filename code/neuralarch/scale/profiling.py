"""Finding and fixing a data-loading bottleneck with ``torch.profiler`` and simple timers.

Introduced in lesson 10.5 (``m10-l05``). :class:`PerSampleAugmented` is the common slow
pattern: a ``Dataset`` that converts and augments one image at a time in Python (a small random
rotation and shift with ``affine_grid`` + ``grid_sample``, as per-image transform pipelines do).
:func:`batched_batches` is the fix: tensorise the data once, and augment a whole batch with one
call. :func:`time_training` splits a run's wall time into waiting for data and computing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def random_affine(images: torch.Tensor, max_degrees: float = 10.0, max_shift: float = 0.1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Rotate and shift each image of (B, C, H, W) by a random small amount (bilinear)."""
    b = images.shape[0]
    angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(max_degrees)  # (B,)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * max_shift  # (B, 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1),
                         torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(images, grid, align_corners=False)


class PerSampleAugmented(Dataset):
    """MNIST kept as uint8 arrays; each item is converted, normalised and augmented on its own."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images = (images * 255).round().to(torch.uint8).squeeze(1).numpy()  # (N, 28, 28)
        self.labels = labels.tolist()

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        x = torch.tensor(self.images[i], dtype=torch.float32) / 255.0  # a fresh copy per item
        x = (x - MNIST_MEAN) / MNIST_STD
        x = random_affine(x[None, None])[0]  # (1, 28, 28): one image per call
        return x, self.labels[i]


def batched_batches(images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                    generator: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield shuffled, augmented batches from pre-tensorised images: one transform per batch."""
    normalised = (images - MNIST_MEAN) / MNIST_STD  # (N, 1, 28, 28), once for all epochs
    order = torch.randperm(len(labels), generator=generator)
    for start in range(0, len(labels), batch_size):
        index = order[start:start + batch_size]
        yield random_affine(normalised[index], generator=generator), labels[index]


def small_classifier(seed: int = 0) -> nn.Module:
    """Return a small MLP for 28 x 28 digits (the compute side of the experiment)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


def time_training(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], model: nn.Module,
                  optimizer: torch.optim.Optimizer) -> dict[str, float]:
    """Train over ``batches`` once; return seconds spent waiting for data and computing."""
    data = compute = 0.0
    steps = 0
    iterator = iter(batches)
    while True:
        start = time.perf_counter()
        try:
            x, y = next(iterator)
        except StopIteration:
            break
        middle = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        data += middle - start
        compute += time.perf_counter() - middle
        steps += 1
    return {"data": data, "compute": compute, "total": data + compute, "steps": steps}


def profile_training(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], model: nn.Module,
                     optimizer: torch.optim.Optimizer, steps: int,
                     trace: Path | None = None) -> torch.profiler.profile:
    """Profile ``steps`` training steps, labelling ``data`` and ``compute``; export a trace.

    The returned profiler's ``key_averages()`` gives the operator table; ``trace`` (a
    ``.json`` path) receives a Chrome trace to open in ``chrome://tracing`` or Perfetto.
    """
    iterator = iter(batches)
    activities = [torch.profiler.ProfilerActivity.CPU]
    with torch.profiler.profile(activities=activities) as prof:
        for _ in range(steps):
            with torch.profiler.record_function("data"):
                x, y = next(iterator)
            with torch.profiler.record_function("compute"):
                loss = F.cross_entropy(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
    if trace is not None:
        trace.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace))
    return prof
