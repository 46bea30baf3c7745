"""The one call at the top of every executable page: seed, style, device, quiet progress bars."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuralarch.device import get_device
from neuralarch.plot import use_book_style
from neuralarch.progress import hide_progress_bars
from neuralarch.repro import seed_everything


@dataclass(frozen=True)
class PageContext:
    """What a page needs to know about its run: the seed and the device."""

    seed: int
    device: torch.device


def setup_page(seed: int = 0, quiet: bool = True) -> PageContext:
    """Seed everything, apply the figure style, pick the device, and silence progress bars."""
    if quiet:
        hide_progress_bars()
    show_numpy_scalars_plainly()
    seed_everything(seed)
    use_book_style()
    return PageContext(seed=seed, device=get_device())


def show_numpy_scalars_plainly() -> None:
    """In IPython, print NumPy scalars as plain numbers: ``0.5``, not ``np.float64(0.5)``.

    NumPy 2 made the repr of its scalars explicit; a glued ``np.float64`` then reaches the page
    as text that myst-nb cannot format as a number. Outside IPython this does nothing.
    """
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with Jupyter and the test env
        return
    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["text/plain"]
    # concrete types: IPython's own printer for float would win over one for np.floating
    kinds = {float: (np.float16, np.float32, np.float64, np.longdouble),
             int: (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                   np.uint64),
             bool: (np.bool_,)}
    for convert, types in kinds.items():
        for kind in types:
            formatter.for_type(kind, lambda value, printer, cycle, convert=convert:
                               printer.text(repr(convert(value))))
