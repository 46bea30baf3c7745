"""The one call at the top of every executable page: seed, style, device, quiet progress bars."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from neuralarch.device import get_device
from neuralarch.plot import use_book_style
from neuralarch.repro import seed_everything

QUIET_ENV = "NEURALARCH_QUIET"


@dataclass(frozen=True)
class PageContext:
    """What a page needs to know about its run: the seed and the device."""

    seed: int
    device: torch.device


def setup_page(seed: int = 0, quiet: bool = True) -> PageContext:
    """Seed everything, apply the figure style, pick the device, and silence progress bars."""
    if quiet:
        os.environ[QUIET_ENV] = "1"
    seed_everything(seed)
    use_book_style()
    return PageContext(seed=seed, device=get_device())


def progress_disabled() -> bool:
    """True when progress bars should be hidden (inside built book pages)."""
    return os.environ.get(QUIET_ENV, "") == "1"
