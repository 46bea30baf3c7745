"""One figure style for the whole book, so every plot reads the same."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import matplotlib as mpl

PALETTE = ["#1f5f8b", "#e07a1f", "#3a9a5b", "#c23b3b", "#7b5ea7", "#8c6d46", "#d46fa8", "#6b6b6b"]

BOOK_STYLE: dict[str, object] = {
    "figure.figsize": (6.4, 3.6),
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "legend.frameon": False,
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Apply the book's matplotlib style globally (call once at the top of a page)."""
    mpl.rcParams.update(BOOK_STYLE)


@contextmanager
def book_style() -> Iterator[None]:
    """Apply the book's style only inside a ``with`` block."""
    with mpl.rc_context(BOOK_STYLE):
        yield
