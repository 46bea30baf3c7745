"""The page set-up helper and the book's figure style."""

from __future__ import annotations

import matplotlib as mpl
import numpy as np
import torch

from neuralarch.plot import BOOK_STYLE, PALETTE, book_style, use_book_style
from neuralarch.progress import QUIET_ENV, progress_disabled
from neuralarch.setup_page import setup_page


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


def test_numpy_scalars_print_as_plain_numbers_in_ipython(monkeypatch):
    from IPython.core.interactiveshell import InteractiveShell

    from neuralarch import setup_page as module

    shell = InteractiveShell.instance()
    try:
        monkeypatch.setattr("IPython.get_ipython", lambda: shell)
        module.show_numpy_scalars_plainly()
        fmt = shell.display_formatter.format
        assert fmt(np.float64(0.25))[0]["text/plain"] == "0.25"
        assert fmt(np.int32(7))[0]["text/plain"] == "7"
        assert fmt(np.bool_(True))[0]["text/plain"] == "True"
        monkeypatch.setattr("IPython.get_ipython", lambda: None)
        module.show_numpy_scalars_plainly()  # outside IPython: nothing to do, no error
    finally:
        InteractiveShell.clear_instance()
