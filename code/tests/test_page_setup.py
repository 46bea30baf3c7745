"""The page set-up helper and the book's figure style."""

from __future__ import annotations

import matplotlib as mpl
import torch

from neuralarch.plot import BOOK_STYLE, PALETTE, book_style, use_book_style
from neuralarch.setup_page import QUIET_ENV, progress_disabled, setup_page


def test_setup_page_seeds_styles_and_silences(monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    monkeypatch.setenv("NEURALARCH_DEVICE", "cpu")
    context = setup_page(seed=7)
    first = torch.rand(3)
    assert context.seed == 7 and context.device == torch.device("cpu")
    assert progress_disabled()
    setup_page(seed=7)
    assert torch.equal(first, torch.rand(3))
    assert mpl.rcParams["axes.spines.top"] is False


def test_setup_page_can_keep_progress_bars(monkeypatch):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    monkeypatch.setenv("NEURALARCH_DEVICE", "cpu")
    setup_page(seed=0, quiet=False)
    assert not progress_disabled()


def test_book_style_is_scoped():
    with mpl.rc_context({"lines.linewidth": 0.5}):
        with book_style():
            assert mpl.rcParams["lines.linewidth"] == BOOK_STYLE["lines.linewidth"]
        assert mpl.rcParams["lines.linewidth"] == 0.5
    use_book_style()
    colors = mpl.rcParams["axes.prop_cycle"].by_key()["color"]
    assert colors == PALETTE
