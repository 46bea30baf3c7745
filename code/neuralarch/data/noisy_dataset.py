"""A dataset wrapper that adds Gaussian noise from a random generator the dataset owns.

Introduced in lesson 1.5 (``m01-l05``) as the stand-in for any augmentation with its own
generator: copied unchanged into every ``DataLoader`` worker, such a generator repeats the same
"random" noise in each one unless :func:`~neuralarch.repro.seed_worker` reseeds it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from neuralarch.repro import check_seed


class NoisyDataset(Dataset):
    """Wrap an ``(x, y)`` dataset and add Gaussian noise from the dataset's own NumPy generator.

    A stand-in for any augmentation that owns a random generator. ``reseed`` restarts the noise
    stream; :func:`~neuralarch.repro.seed_worker` calls it so that every DataLoader worker draws
    different noise.
    """

    def __init__(self, base: torch.utils.data.Dataset, std: float, seed: int = 0) -> None:
        if not isinstance(std, int | float) or not std >= 0:  # also rejects NaN
            raise ValueError(f"std must be a number >= 0, got {std!r}")
        self.base = base
        self.std = float(std)
        self.reseed(seed)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[index]
        noise = self.rng.standard_normal(tuple(x.shape), dtype=np.float32)  # same shape as x
        return x + self.std * torch.from_numpy(noise), y

    def reseed(self, seed: int) -> None:
        """Restart the noise stream from ``seed``."""
        self.rng = np.random.default_rng(check_seed(seed))
