"""Execute one MyST page (or several) outside the book build and report time and errors.

Usage: python tools/run_page.py book/m01-pytorch-foundations/03-tensor-operations.md [...]
Fast feedback while writing a page; `make book` is the real check.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbclient
from myst_nb.core.read import read_myst_markdown_notebook


def run(page: Path) -> float:
    notebook = read_myst_markdown_notebook(page.read_text(encoding="utf-8"), path=page)
    start = time.perf_counter()
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(page.parent)}})
    client.execute()
    elapsed = time.perf_counter() - start
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.get("name") == "stderr":
                print(f"  stderr: {output['text'][:300]}")
    return elapsed


if __name__ == "__main__":
    failed = False
    for name in sys.argv[1:]:
        try:
            print(f"{name}: executed in {run(Path(name)):.1f} s")
        except nbclient.exceptions.CellExecutionError as error:
            failed = True
            print(f"{name}: FAILED\n{error}")
    sys.exit(1 if failed else 0)
