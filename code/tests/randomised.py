"""Seeded generators and random weights shared by the tests that compare models with torch's."""

from __future__ import annotations

import torch
from torch import nn


def generator(seed: int = 0) -> torch.Generator:
    """A CPU generator with a fixed seed."""
    return torch.Generator().manual_seed(seed)


def randomise(module: nn.Module, seed: int = 0, scale: float = 0.3,
              shift: float = 0.1) -> nn.Module:
    """Give every parameter random values of both signs and a non-zero mean, so that no test
    passes thanks to a zero, a one or a symmetry of the default initialisation."""
    gen = generator(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(scale * torch.randn(parameter.shape, generator=gen) + shift)
    return module
