"""Checks on the built book. They run after `make book` and read `_build/`."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# NEURALARCH_SITE points the checks at another build folder (holding html/), e.g. a copy in /tmp.
BUILD = Path(os.environ.get("NEURALARCH_SITE") or ROOT / "_build")
HTML = BUILD / "html"
sys.path.insert(0, str(ROOT / "book" / "_ext"))


@pytest.fixture(scope="session")
def html() -> Path:
    if not (HTML / "index.html").is_file():
        pytest.fail("the book is not built: run `make book` before the site checks")
    return HTML


def executable_pages() -> list[str]:
    """Docnames of the pages in the table of contents that execute code."""
    from book_pages import executable_docnames

    return executable_docnames(ROOT)


def lesson_pages() -> list[str]:
    """Docnames of the lesson pages (``NN-slug``) and week pages in the table of contents."""
    return [d for d in executable_pages()
            if Path(d).name[:2].isdigit() or Path(d).parent.name == "weeks"]


def executed_notebook_path(html: Path, docname: str) -> Path:
    """The exported notebook that holds the page's outputs: a week's solution notebook (its
    student notebook has none), else the page's reader notebook."""
    from notebooks import OUT_DIR, SOLUTIONS_DIR

    solution = html / OUT_DIR / SOLUTIONS_DIR / f"{docname}.ipynb"
    return solution if solution.is_file() else html / OUT_DIR / f"{docname}.ipynb"
